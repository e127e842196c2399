"""The node's /diagnostics status as a pure function of a camera's period (no rclpy node or
context), and the camera bookkeeping behind it (mailbox, counters, scheduler)."""

from __future__ import annotations

import pytest
from diagnostic_msgs.msg import DiagnosticStatus

from vsda_ros.ros.cameras import Camera, CameraStats, Mailbox, Scheduler
from vsda_ros.ros.diagnostics import (
    SILENT_WARN_S,
    STATUS_NAME,
    CameraPeriod,
    NodeInfo,
    camera_status,
    silence_began,
    silent_seconds,
    silent_text,
    timing_status,
)

INFO = NodeInfo(
    name='segmentation_node',
    model='espnet-camvid',
    strategy='keyframe',
    device='cpu',
    backend='openvino',
    precision='bf16',
    temporal_modules='fusion,dmnet',
)


def _values(status: DiagnosticStatus) -> dict[str, str]:
    return {kv.key: kv.value for kv in status.values}


def test_healthy_period_is_ok_with_rates_ratio_and_node_info():
    prev = CameraStats(t=10.0, received=100, processed=95, dropped=5, keyframes=19)
    now = CameraStats(t=12.0, received=160, processed=155, dropped=5, keyframes=31)
    st = camera_status(
        CameraPeriod(
            '/cam/image_raw',
            now,
            prev,
            publishers=1,
            timings={'inference': [10.0, 20.0, 30.0], 'decode': []},
        ),
        INFO,
    )
    assert st.level == DiagnosticStatus.OK and st.message == 'OK'
    assert st.name == STATUS_NAME and st.hardware_id == 'segmentation_node'
    v = _values(st)
    assert v['input_hz'] == '30.00' and v['output_hz'] == '30.00'
    assert v['keyframe_ratio'] == '0.200'
    assert (v['received'], v['processed'], v['dropped']) == ('160', '155', '5')
    assert v['inference_p50_ms'] == '20.00' and v['decode_p95_ms'] == 'n/a'
    assert (
        v['model'],
        v['strategy'],
        v['device'],
        v['backend'],
        v['precision'],
        v['temporal_modules'],
    ) == ('espnet-camvid', 'keyframe', 'cpu', 'openvino', 'bf16', 'fusion,dmnet')
    assert v['topic'] == '/cam/image_raw' and v['publishers'] == '1'
    keys = list(v)
    assert keys[:11] == [
        'topic',
        'publishers',
        'received',
        'processed',
        'dropped',
        'bad_frames',
        'stream_resets',
        'keyframes',
        'keyframe_ratio',
        'input_hz',
        'output_hz',
    ]
    assert keys[-6:] == ['model', 'strategy', 'device', 'backend', 'precision', 'temporal_modules']


def test_no_frames_processed_gives_na_ratio_and_zero_rates():
    st = camera_status(CameraPeriod('image', CameraStats(t=1.0), CameraStats(t=0.0)), INFO)
    v = _values(st)
    assert st.level == DiagnosticStatus.OK
    assert v['keyframe_ratio'] == 'n/a' and v['input_hz'] == '0.00'


def test_slow_output_bad_frames_and_resets_warn_with_each_reason():
    prev = CameraStats(t=0.0, received=0, processed=0, bad_frames=1)
    now = CameraStats(t=1.0, received=30, processed=10, bad_frames=3, stream_resets=5)
    reasons = [f'camera r{i}' for i in range(5)]
    st = camera_status(
        CameraPeriod('/a/image', now, prev, reset_reasons=reasons, last_bad='frame too large'), INFO
    )
    assert st.level == DiagnosticStatus.WARN
    assert 'output rate 10.0 Hz < 50% of input rate 30.0 Hz' in st.message
    assert '2 bad frame(s) in the last period (last: frame too large)' in st.message
    assert 'stream reset ×5: camera r0; camera r1; camera r2 (+2 more)' in st.message


def test_several_cameras_name_their_topic():
    info = NodeInfo(**{**INFO.__dict__, 'cameras': 2})
    st = camera_status(CameraPeriod('/rear/image', CameraStats(t=1.0), CameraStats()), info)
    assert st.name == f'{STATUS_NAME} (/rear/image)'


def test_silent_publishers_warn_after_the_limit_and_log_once():
    prev = CameraStats(t=0.0, received=7)
    silent = 0.0
    began = []
    for step in range(1, 9):  # 1 s periods, a publisher matched, no frame
        now = CameraStats(t=float(step), received=7)
        silent = silent_seconds(silent, 1, now, prev)
        period = CameraPeriod('/cam/image', now, prev, publishers=1, silent_s=silent)
        began.append(silence_began(period))
        st = camera_status(period, INFO)
        assert (st.level == DiagnosticStatus.WARN) == (silent >= SILENT_WARN_S), step
        prev = now
    assert began.count(True) == 1
    assert 'no frame arrived for 8 s' in silent_text(period)
    # a frame arriving, or no publisher, ends the episode
    assert silent_seconds(8.0, 1, CameraStats(t=9.0, received=8), prev) == 0.0
    assert silent_seconds(8.0, 0, CameraStats(t=9.0, received=7), prev) == 0.0


def test_timing_status_has_stage_times_and_keyframe_last():
    st = timing_status({'queue_wait': 0.5, 'decode': 1.25, 'publish': 3.0}, True, 'n')
    assert st.name == f'{STATUS_NAME} timing' and st.hardware_id == 'n'
    assert [(kv.key, kv.value) for kv in st.values] == [
        ('queue_wait', '0.500'),
        ('decode', '1.250'),
        ('publish', '3.000'),
        ('keyframe', '1.000'),
    ]


# ---- cameras: mailbox, counters, scheduling ---------------------------------------------------
def test_mailbox_keeps_the_newest_and_counts_overwrites():
    cam = Camera(key='', pubs={}, strategy=None)
    cam.arrive('f1', 1.0)
    cam.arrive('f2', 2.0)  # f1 never taken: dropped
    assert (cam.received, cam.dropped) == (2, 1)
    assert cam.mailbox.take() == ('f2', 2.0) and cam.mailbox.take() is None
    cam.record({'decode': 1.0, 'end_to_end': 5.0}, keyframe=True)
    cam.bad('broken')
    cam.bad(None)
    s = cam.stats(3.0)
    assert s == CameraStats(t=3.0, received=2, processed=1, dropped=1, bad_frames=2, keyframes=1)
    assert cam.last_bad == 'broken' and list(cam.timings['end_to_end']) == [5.0]


def test_mailbox_waited():
    box = Mailbox()
    assert not box and box.waited(5.0) is None
    assert box.put('m', 1.0) is False and box.put('n', 2.0) is True
    assert box and box.waited(5.0) == pytest.approx(3.0)


def test_scheduler_serves_cameras_round_robin():
    cams = {k: Camera(key=k, pubs={}, strategy=None) for k in ('/a', '/b', '/c')}
    sched = Scheduler(cams)
    assert sched.order == ['/a', '/b', '/c'] and sched.take(0.0) is None
    for k in ('/a', '/b', '/c'):
        cams[k].arrive(f'{k}1', 0.0)
    served = [sched.take(0.1)[0].key for _ in range(3)]
    assert served == ['/a', '/b', '/c'] and sched.take(0.1) is None
    cams['/a'].arrive('a2', 1.0)
    cams['/c'].arrive('c2', 1.0)
    assert sched.take(1.1)[0].key == '/a'  # after /c comes /a again
    cams['/a'].arrive('a3', 1.2)
    assert sched.take(1.3)[0].key == '/c'  # /a was served last: /c first


def test_scheduler_latency_mode_drops_frames_that_waited_too_long():
    cams = {k: Camera(key=k, pubs={}, strategy=None) for k in ('/a', '/b')}
    sched = Scheduler(cams)
    cams['/a'].arrive('old', 0.0)
    cams['/b'].arrive('fresh', 0.95)
    cam, msg, arrival = sched.take(1.0, limit_s=0.5)
    assert (cam.key, msg, arrival) == ('/b', 'fresh', 0.95)
    assert cams['/a'].dropped == 1 and not cams['/a'].mailbox
    assert sched.take(1.0, limit_s=0.5) is None
    cams['/a'].arrive('late', 0.0)
    assert sched.take(100.0)[1] == 'late'  # limit 0 = off: always the newest frame
