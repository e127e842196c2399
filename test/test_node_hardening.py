"""segmentation_node under the faults an outside probe found (real DDS, loopback, per-run domain).

Each test failed before its fix: parameters that would not dump, names shown before remapping,
an advertised ``timing`` with timing off, startup faults that printed tracebacks, Ctrl-C /
SIGTERM with frames flowing that aborted or logged failures, 4K raw frames that never arrived,
and frames of any size being decoded whatever the memory.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

rclpy = pytest.importorskip('rclpy')
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus  # noqa: E402
from rcl_interfaces.msg import Parameter as ParameterMsg  # noqa: E402
from rcl_interfaces.msg import ParameterType, ParameterValue  # noqa: E402
from rcl_interfaces.srv import GetParameters, ListParameters, SetParameters  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.qos import QoSProfile, qos_profile_sensor_data  # noqa: E402
from sensor_msgs.msg import CompressedImage, Image  # noqa: E402

from ros_helpers import spin_until  # noqa: E402
from vsda_ros.ros.cameras import camera_layout  # noqa: E402
from vsda_ros.ros.conversions import numpy_to_image  # noqa: E402
from vsda_ros.ros.parameters import PARAMETERS  # noqa: E402

pytestmark = pytest.mark.ros
REPO = Path(__file__).resolve().parents[1]
# backend torch: these tests are about the node's hardening, not its default backend (auto)
NODE = [
    sys.executable,
    '-m',
    'vsda_ros.ros.segmentation_node',
    '--ros-args',
    '-p',
    'backend:=torch',
]


def _env() -> dict:
    env = dict(os.environ, OMP_NUM_THREADS='2', PYTHONUNBUFFERED='1')
    assert env['ROS_AUTOMATIC_DISCOVERY_RANGE'] == 'LOCALHOST' and 'ROS_DOMAIN_ID' in env
    return env


class Client:
    """A test-side rclpy node in a context of its own."""

    def __init__(self, name: str) -> None:
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node(name, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)

    def spin_until(self, predicate, timeout: float) -> bool:
        return spin_until(self.executor, predicate, timeout)

    def call(self, srv_type, name: str, request, timeout: float = 10.0):
        cli = self.node.create_client(srv_type, name)
        try:
            assert self.spin_until(cli.service_is_ready, timeout), f'{name} not available'
            future = cli.call_async(request)
            assert self.spin_until(future.done, timeout), f'{name} did not answer'
            return future.result()
        finally:
            self.node.destroy_client(cli)

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)


class NodeProcess:
    """segmentation_node as a subprocess with a log file; stopped with SIGINT on close."""

    def __init__(self, args: list[str], log: Path) -> None:
        self.log_path = log
        self.log = open(log, 'w+')
        self.proc = subprocess.Popen(
            NODE + args, env=_env(), cwd=REPO, stdout=self.log, stderr=subprocess.STDOUT
        )

    def text(self) -> str:
        self.log.flush()
        return self.log_path.read_text()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


@pytest.fixture(scope='module')
def frame(real_data) -> np.ndarray:
    path = sorted((real_data / 'camvid' / 'val').glob('*.png'))[0]
    return cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


@pytest.fixture(scope='module')
def front(real_data, tmp_path_factory):
    """(client, node process): the node in namespace /front, its image remapped to
    /camera/image_raw, timing off, outputs and /diagnostics matched."""
    log = tmp_path_factory.mktemp('front') / 'node.log'
    node = NodeProcess(
        [
            '-r',
            '__ns:=/front',
            '-r',
            'image:=/camera/image_raw',
            '-p',
            'model:=espnet-camvid',
            '-p',
            'publish_timing:=false',
        ],
        log,
    )
    client = Client('vsda_hardening_front')
    client.pub = client.node.create_publisher(Image, '/camera/image_raw', QoSProfile(depth=10))
    client.masks = {}
    client.diagnostics = []
    client.subs = [
        client.node.create_subscription(
            Image,
            '/front/mask',
            lambda m: client.masks.__setitem__((m.header.stamp.sec, m.header.stamp.nanosec), m),
            QoSProfile(depth=10),
        ),
        client.node.create_subscription(
            DiagnosticArray, '/diagnostics', client.diagnostics.append, QoSProfile(depth=10)
        ),
    ]
    try:
        up = client.spin_until(
            lambda: (
                node.proc.poll() is not None
                or (
                    client.pub.get_subscription_count() > 0
                    and client.subs[0].get_publisher_count() > 0
                )
            ),
            60.0,
        )
        if node.proc.poll() is not None or not up:
            pytest.fail(f'node did not come up (rc={node.proc.poll()}):\n{node.text()}')
        client.spin_until(lambda: 'ready:' in node.text(), 10.0)
        yield client, node
    finally:
        client.close()
        node.close()


def _set(client: Client, **values) -> None:
    req = SetParameters.Request()
    for name, value in values.items():
        pv = ParameterValue()
        if isinstance(value, bool):
            pv.type, pv.bool_value = ParameterType.PARAMETER_BOOL, value
        elif isinstance(value, int):
            pv.type, pv.integer_value = ParameterType.PARAMETER_INTEGER, value
        req.parameters.append(ParameterMsg(name=name, value=pv))
    res = client.call(SetParameters, '/front/segmentation_node/set_parameters', req)
    assert all(r.successful for r in res.results), [r.reason for r in res.results]


def test_every_parameter_dumps(front):
    """ros2 param dump = list_parameters + get_parameters for all names: every one answers."""
    client, _ = front
    names = client.call(
        ListParameters, '/front/segmentation_node/list_parameters', ListParameters.Request()
    ).result.names
    assert set(PARAMETERS) <= set(names)
    values = client.call(
        GetParameters,
        '/front/segmentation_node/get_parameters',
        GetParameters.Request(names=list(names)),
    ).values
    assert len(values) == len(names)
    got = dict(zip(names, values, strict=False))
    assert list(got['image_topics'].string_array_value) == ['image', 'image/compressed']
    assert got['keyframe_interval'].integer_value == PARAMETERS['keyframe_interval'].default
    assert all(v.type != ParameterType.PARAMETER_NOT_SET for v in values)


def test_ready_log_and_diagnostics_show_resolved_topics(front, frame):
    client, node = front
    ready = next(line for line in node.text().splitlines() if 'ready:' in line)
    assert "'/camera/image_raw'" in ready and "'/front/image/compressed'" in ready, ready
    assert (
        "outputs=['/front/mask', '/front/color_mask', '/front/overlay', '/front/confidence']"
    ) in ready, ready
    msg = numpy_to_image(frame)
    msg.header.stamp.sec = 11
    for _ in range(3):
        client.pub.publish(msg)
        if client.spin_until(lambda: (11, 0) in client.masks, 8.0):
            break

    def topic_reported():
        for arr in client.diagnostics:
            for st in arr.status:
                values = {kv.key: kv.value for kv in st.values}
                if values.get('topic') == '/camera/image_raw':
                    return int(values['publishers']) >= 1
        return False

    assert client.spin_until(topic_reported, 5.0)


def test_timing_is_advertised_only_while_enabled(front):
    client, _ = front

    def advertised() -> bool:
        return any(name == '/front/timing' for name, _ in client.node.get_topic_names_and_types())

    client.spin_until(lambda: False, 1.0)
    assert not advertised()
    _set(client, publish_timing=True)
    assert client.spin_until(advertised, 5.0)
    _set(client, publish_timing=False)
    assert client.spin_until(lambda: not advertised(), 5.0)


def test_frame_above_max_input_pixels_is_skipped_and_reported(front, frame):
    """480×360 = 172,800 px over a limit of 100,000: skipped before decoding, counted in
    bad_frames, WARN diagnostic saying why; also for a JPEG judged by its header alone."""
    client, node = front
    _set(client, max_input_pixels=100000)
    try:
        diag_start = len(client.diagnostics)
        msg = numpy_to_image(frame)
        msg.header.stamp.sec = 21
        client.pub.publish(msg)
        cpub = client.node.create_publisher(
            CompressedImage, '/front/image/compressed', QoSProfile(depth=10)
        )
        client.spin_until(lambda: cpub.get_subscription_count() > 0, 5.0)
        cmsg = CompressedImage(format='jpeg', data=cv2.imencode('.jpg', frame)[1].tobytes())
        cmsg.header.stamp.sec = 22
        cpub.publish(cmsg)

        def warned():
            return any(
                st.level == DiagnosticStatus.WARN
                and 'frame too large' in st.message
                and 'max_input_pixels' in st.message
                for a in client.diagnostics[diag_start:]
                for st in a.status
            )

        assert client.spin_until(warned, 6.0), [
            st.message for a in client.diagnostics[diag_start:] for st in a.status
        ]
        assert (21, 0) not in client.masks and (22, 0) not in client.masks
        assert node.proc.poll() is None
        assert 'frame too large' in node.text()
    finally:
        _set(client, max_input_pixels=PARAMETERS['max_input_pixels'].default)


def test_frames_too_large_for_the_transport_are_reported_not_silent(front):
    """7680×4320 rgb8 (99.5 MB) from a best-effort publisher with the 64 MB profile: DDS drops
    it (mostly: now and then one gets through fragmented), and the node says so either way —
    matched publisher and no frames for 5 s, or a frame over max_input_pixels refused."""
    client, node = front
    pub = client.node.create_publisher(Image, '/camera/image_raw', qos_profile_sensor_data)
    huge = Image(width=7680, height=4320, encoding='rgb8', step=7680 * 3)
    huge.data = bytes(7680 * 4320 * 3)
    diag_start = len(client.diagnostics)

    def warned():
        return any(
            st.level == DiagnosticStatus.WARN
            and (
                ('no frame arrived' in st.message and '/camera/image_raw' in st.message)
                or 'frame too large: 7680x4320' in st.message
            )
            for a in client.diagnostics[diag_start:]
            for st in a.status
        )

    end = time.monotonic() + 12.0
    while time.monotonic() < end and not warned():
        pub.publish(huge)
        client.spin_until(warned, 1.0)
    client.node.destroy_publisher(pub)
    assert warned(), [st.message for a in client.diagnostics[diag_start:] for st in a.status]
    assert node.proc.poll() is None  # (the log line may be throttled: the WARN diagnostic is
    # the check)


@pytest.mark.parametrize(
    'args, reason',
    [
        (['-p', 'keyframe_interval:=five'], 'keyframe_interval'),
        (['-p', 'input_size:=20000x20000'], 'too large'),
        (['-p', 'image_topics:=["/a/image", "/a/image2"]'], 'same outputs'),
    ],
)
def test_startup_faults_give_one_fatal_line(real_data, args, reason):
    res = subprocess.run(
        NODE + ['-p', 'model:=espnet-camvid'] + args,
        env=_env(),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    out = res.stdout + res.stderr
    assert res.returncode == 1, out
    assert 'Traceback' not in out and 'Error:' not in out.replace('[FATAL]', ''), out
    fatal = [line for line in out.splitlines() if 'cannot start' in line]
    assert len(fatal) == 1 and reason in fatal[0], out


@pytest.mark.parametrize('sig', [signal.SIGINT, signal.SIGTERM])
def test_signal_with_frames_flowing_exits_cleanly(real_data, frame, tmp_path, sig):
    """Frames at 30 Hz, masks flowing, then SIGINT / SIGTERM: exit 0, no traceback, nothing
    published after the context is gone, no abort."""
    node = NodeProcess(['-p', 'model:=espnet-camvid'], tmp_path / 'node.log')
    client = Client(f'vsda_signal_{sig.name.lower()}')
    stop = threading.Event()
    try:
        pub = client.node.create_publisher(Image, 'image', qos_profile_sensor_data)
        masks = []
        client.node.create_subscription(Image, 'mask', masks.append, QoSProfile(depth=10))
        assert client.spin_until(lambda: pub.get_subscription_count() > 0, 60.0), node.text()
        msg = numpy_to_image(frame)

        def publish():
            while not stop.is_set():
                msg.header.stamp = client.node.get_clock().now().to_msg()
                pub.publish(msg)
                time.sleep(1 / 30)

        thread = threading.Thread(target=publish, daemon=True)
        thread.start()
        assert client.spin_until(lambda: len(masks) >= 3, 30.0), node.text()
        node.proc.send_signal(sig)
        rc = node.proc.wait(timeout=20)
        out = node.text()
        assert rc == 0, out
        for bad in ('Traceback', 'frame failed', 'context is invalid', 'terminate called'):
            assert bad not in out, out
    finally:
        stop.set()
        client.close()
        node.close()


def test_4k_raw_frame_over_best_effort_arrives_and_matches_offline(real_data, frame, tmp_path):
    """A 3840×2160 rgb8 frame (24.9 MB) from a best-effort publisher reaches the node and its
    mask comes back at 3840×2160, equal to the offline Segmenter's (bounded post-processing)."""
    import torch

    from vsda_ros.inference import Segmenter
    from vsda_ros.models.zoo import load_model

    big = cv2.resize(frame, (3840, 2160), interpolation=cv2.INTER_LINEAR)
    node = NodeProcess(
        ['-p', 'model:=espnet-camvid', '-p', 'publish_overlay:=false'], tmp_path / 'node.log'
    )
    client = Client('vsda_4k')
    try:
        pub = client.node.create_publisher(Image, 'image', qos_profile_sensor_data)
        masks = {}
        client.node.create_subscription(
            Image, 'mask', lambda m: masks.__setitem__(m.header.stamp.sec, m), QoSProfile(depth=2)
        )
        assert client.spin_until(lambda: pub.get_subscription_count() > 0, 60.0), node.text()
        msg = numpy_to_image(big)
        msg.header.stamp.sec, msg.header.frame_id = 42, 'cam_4k'
        for _ in range(5):
            pub.publish(msg)
            if client.spin_until(lambda: 42 in masks, 6.0):
                break
        assert 42 in masks, node.text()
        out = masks[42]
        assert (out.width, out.height, out.header.frame_id) == (3840, 2160, 'cam_4k')
        torch.set_num_threads(2)
        ref = Segmenter(load_model('espnet-camvid', download=False, progress=False))
        expected = ref.segment(big).labels
        got = np.frombuffer(out.data, np.uint8).reshape(2160, 3840)
        assert np.array_equal(got, expected)
    finally:
        client.close()
        node.close()


def test_raw_and_compressed_of_one_camera_share_its_outputs():
    layout = camera_layout(['/cam/image_raw', '/cam/image_raw/compressed'])
    assert [(t, ns) for t, _, ns in layout] == [
        ('/cam/image_raw', '/cam'),
        ('/cam/image_raw/compressed', '/cam'),
    ]
    with pytest.raises(ValueError, match='same outputs'):
        camera_layout(['/cam/image_raw', '/cam/image_rect'])
    with pytest.raises(ValueError, match='twice'):
        camera_layout(['/cam/image_raw', '/cam/image_raw'])
    with pytest.raises(ValueError, match='empty'):
        camera_layout([])
