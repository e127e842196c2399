"""segmentation_node end to end over real DDS (loopback, per-run domain from conftest).

The node runs as a real subprocess with espnet-camvid and its **default** backend and precision
(``auto``: issue 26 item 1); this process publishes real CamVid frames and checks that the masks
are bit-identical to the pipeline ``vsda segment`` builds with its defaults, run here with the
same thread count and the same compiled-model cache (live = offline with the defaults on both
sides), that headers and resolution are kept, that a bad frame is survived, and that
``/diagnostics`` reports the counters.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

rclpy = pytest.importorskip('rclpy')
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.qos import QoSProfile  # noqa: E402
from sensor_msgs.msg import CompressedImage, Image  # noqa: E402

from ros_helpers import spin_until  # noqa: E402
from vsda_ros.ros.conversions import image_to_rgb, numpy_to_image  # noqa: E402

pytestmark = pytest.mark.ros
OUTPUTS = ('mask', 'color_mask', 'overlay', 'confidence')
THREADS = 2
#: run the node from this checkout (``-m`` puts the working directory first on sys.path).
REPO = Path(__file__).resolve().parents[1]


class Harness:
    """A test-side rclpy node that feeds ``image`` and collects the node's outputs."""

    def __init__(self) -> None:
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node('vsda_e2e_test', context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.pub = self.node.create_publisher(Image, 'image', QoSProfile(depth=10))
        self.cpub = self.node.create_publisher(
            CompressedImage, 'image/compressed', QoSProfile(depth=10)
        )
        self.received: dict[str, dict[tuple, Image]] = {k: {} for k in OUTPUTS}
        self.diagnostics: list[DiagnosticArray] = []
        self.subs = [
            self.node.create_subscription(
                Image, name, lambda m, n=name: self._store(n, m), QoSProfile(depth=10)
            )
            for name in OUTPUTS
        ]
        self.subs.append(
            self.node.create_subscription(
                DiagnosticArray, '/diagnostics', self.diagnostics.append, QoSProfile(depth=10)
            )
        )

    def _store(self, name: str, msg: Image) -> None:
        self.received[name][(msg.header.stamp.sec, msg.header.stamp.nanosec)] = msg

    def spin_until(self, predicate, timeout: float) -> bool:
        return spin_until(self.executor, predicate, timeout)

    def send_and_wait(self, msg, key: tuple, outputs=OUTPUTS, tries: int = 3) -> bool:
        """Publish until every output for ``key`` arrived (input QoS is best effort, depth 1)."""
        pub = self.cpub if isinstance(msg, CompressedImage) else self.pub
        for _ in range(tries):
            pub.publish(msg)
            if self.spin_until(lambda: all(key in self.received[o] for o in outputs), 8.0):
                return True
        return False

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)


@pytest.fixture(scope='module')
def frames(real_data):
    paths = sorted((real_data / 'camvid' / 'val').glob('*.png'))[:5]
    assert len(paths) == 5
    return [cv2.cvtColor(cv2.imread(str(p), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB) for p in paths]


@pytest.fixture(scope='module')
def reference():
    """The segmenter ``vsda segment --model espnet-camvid`` runs with its default backend and
    precision (built first: on a fresh cache it exports and checks the graphs, which the node
    then loads)."""
    import argparse

    import torch

    from vsda_ros.apps._common import add_backend_args
    from vsda_ros.pipeline import PipelineConfig, build_pipeline

    torch.set_num_threads(THREADS)
    parser = argparse.ArgumentParser()
    add_backend_args(parser)
    defaults = parser.parse_args([])
    seg = build_pipeline(
        PipelineConfig(
            model='espnet-camvid',
            backend=defaults.backend,
            precision=defaults.precision,
            download=False,
            progress=False,
        )
    ).segmenter
    assert defaults.backend == 'auto' and seg.backend_reason.startswith('auto:')
    return seg


@pytest.fixture(scope='module')
def running(real_data, tmp_path_factory, reference):
    """(harness, node process): the node started from a params file, matched both ways."""
    params = tmp_path_factory.mktemp('params') / 'segment.yaml'
    params.write_text(
        'segmentation_node:\n  ros__parameters:\n    model: espnet-camvid\n'
        "    device: cpu\n    input_size: ''\n    strategy: per_frame\n"
    )
    env = dict(os.environ, OMP_NUM_THREADS=str(THREADS), PYTHONUNBUFFERED='1')
    assert env['ROS_AUTOMATIC_DISCOVERY_RANGE'] == 'LOCALHOST' and 'ROS_DOMAIN_ID' in env
    log = open(params.parent / 'node.log', 'w+')
    proc = subprocess.Popen(
        [
            sys.executable,
            '-m',
            'vsda_ros.ros.segmentation_node',
            '--ros-args',
            '--params-file',
            str(params),
        ],
        env=env,
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    harness = Harness()
    try:
        matched = harness.spin_until(
            lambda: (
                proc.poll() is not None
                or (
                    harness.pub.get_subscription_count() > 0
                    and all(s.get_publisher_count() > 0 for s in harness.subs)
                )
            ),
            40.0,
        )
        if proc.poll() is not None or not matched:
            log.seek(0)
            pytest.fail(f'node did not come up (rc={proc.poll()}):\n{log.read()}')
        harness.spin_until(lambda: False, 0.5)  # let discovery settle in the node too
        yield harness, proc
    finally:
        harness.close()
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()


def _image(rgb: np.ndarray, index: int) -> Image:
    msg = numpy_to_image(rgb)
    msg.header.stamp.sec, msg.header.stamp.nanosec = 1000 + index, 1000 * index + 7
    msg.header.frame_id = f'camvid_cam_{index}'
    return msg


def _array(msg: Image) -> np.ndarray:
    data = np.frombuffer(msg.data, np.uint8)
    return (
        data.reshape(msg.height, msg.width, -1).squeeze(-1)
        if msg.encoding == 'mono8'
        else image_to_rgb(msg)
    )


def test_masks_identical_to_offline_segmenter(running, frames, reference):
    from vsda_ros.visualize import colorize, palette_array

    harness, proc = running
    lut = palette_array(reference.meta.palette)
    inputs = list(frames)
    inputs[-1] = cv2.resize(frames[-1], (320, 240), interpolation=cv2.INTER_AREA)  # non-native
    for i, rgb in enumerate(inputs):
        msg = _image(rgb, i)
        key = (msg.header.stamp.sec, msg.header.stamp.nanosec)
        assert harness.send_and_wait(msg, key), f'no outputs for frame {i}'
        ref = reference.segment(rgb)
        for name in OUTPUTS:
            out = harness.received[name][key]
            assert out.header.frame_id == f'camvid_cam_{i}'
            assert (out.height, out.width) == rgb.shape[:2], name
        mask = _array(harness.received['mask'][key])
        assert harness.received['mask'][key].encoding == 'mono8'
        assert np.array_equal(mask, ref.labels), f'frame {i}: {np.mean(mask != ref.labels):.2%}'
        assert np.array_equal(_array(harness.received['confidence'][key]), ref.confidence)
        assert np.array_equal(
            _array(harness.received['color_mask'][key]), colorize(ref.labels, lut)
        )
        assert _array(harness.received['overlay'][key]).shape == rgb.shape
    assert proc.poll() is None


def test_compressed_input(running, frames, reference):
    harness, _ = running
    ok, png = cv2.imencode('.png', cv2.cvtColor(frames[1], cv2.COLOR_RGB2BGR))
    msg = CompressedImage(format='png')
    msg.data = png.tobytes()
    msg.header.stamp.sec, msg.header.stamp.nanosec, msg.header.frame_id = 2000, 1, 'png_cam'
    # One camera, one transport (transport auto): while a raw publisher is matched the node
    # uses raw and ignores image/compressed, so the camera sends compressed only here.
    harness.node.destroy_publisher(harness.pub)
    try:
        harness.spin_until(lambda: False, 0.5)
        assert harness.send_and_wait(msg, (2000, 1), outputs=('mask',))
    finally:
        harness.pub = harness.node.create_publisher(Image, 'image', QoSProfile(depth=10))
    out = harness.received['mask'][(2000, 1)]
    assert out.header.frame_id == 'png_cam'
    assert np.array_equal(_array(out), reference.segment(frames[1]).labels)
    raw = _image(frames[1], 60)  # a raw publisher again: the node goes back to raw
    key = (raw.header.stamp.sec, raw.header.stamp.nanosec)
    assert harness.spin_until(lambda: harness.pub.get_subscription_count() > 0, 5.0)
    assert harness.send_and_wait(raw, key, outputs=('mask',))


def test_bad_frame_is_survived_and_diagnostics_report_it(running, frames):
    harness, proc = running
    bad = _image(frames[0], 50)
    bad.step += 1  # step×height no longer matches the data
    harness.pub.publish(bad)
    harness.spin_until(lambda: False, 0.5)
    good = _image(frames[2], 51)
    assert harness.send_and_wait(good, (1051, 51 * 1000 + 7), outputs=('mask',))
    assert (1050, 50 * 1000 + 7) not in harness.received['mask']
    assert proc.poll() is None

    def latest():
        for arr in reversed(harness.diagnostics):
            for st in arr.status:
                if st.name == 'vsda_ros: segmentation':
                    return st
        return None

    def counted():
        st = latest()
        if st is None:
            return False
        values = {kv.key: kv.value for kv in st.values}
        return int(values['bad_frames']) >= 1 and int(values['processed']) >= 7

    assert harness.spin_until(counted, 5.0), 'no /diagnostics with bad_frames ≥ 1 and processed ≥ 7'
    st = latest()
    values = {kv.key: kv.value for kv in st.values}
    assert st.hardware_id == 'segmentation_node'
    for key in (
        'received',
        'processed',
        'dropped',
        'bad_frames',
        'input_hz',
        'output_hz',
        'inference_p50_ms',
        'inference_p95_ms',
        'end_to_end_p95_ms',
        'decode_p50_ms',
        'preprocess_p50_ms',
        'postprocess_p50_ms',
        'publish_p95_ms',
    ):
        assert key in values, key
    assert (values['model'], values['strategy'], values['device']) == (
        'espnet-camvid',
        'per_frame',
        'cpu',
    )
    received, processed = int(values['received']), int(values['processed'])
    dropped, bad_n = int(values['dropped']), int(values['bad_frames'])
    assert processed >= 7 and bad_n >= 1
    assert received == processed + dropped + bad_n
    assert float(values['inference_p50_ms']) > 0
    # the period with the bad frame is reported as WARN
    from diagnostic_msgs.msg import DiagnosticStatus

    assert any(
        s.level == DiagnosticStatus.WARN and 'bad frame' in s.message
        for a in harness.diagnostics
        for s in a.status
    )


def test_startup_error_exits_nonzero(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS='1')
    res = subprocess.run(
        [
            sys.executable,
            '-m',
            'vsda_ros.ros.segmentation_node',
            '--ros-args',
            '-p',
            'model:=no-such-model',
        ],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode != 0
    assert 'unknown model' in res.stdout + res.stderr


def test_stream_break_resets_and_is_reported(running, frames):
    """A resolution change and a stamp going backwards on one camera: masks still come, the
    resets are counted, and /diagnostics goes WARN naming the reason."""
    from diagnostic_msgs.msg import DiagnosticStatus

    harness, proc = running
    small = cv2.resize(frames[0], (320, 240), interpolation=cv2.INTER_AREA)
    for (sec, nsec), rgb in [((3000, 0), frames[0]), ((3000, 100), small), ((2999, 0), small)]:
        msg = numpy_to_image(rgb, None)
        msg.header.stamp.sec, msg.header.stamp.nanosec = sec, nsec
        msg.header.frame_id = 'reset_cam'
        assert harness.send_and_wait(msg, (sec, nsec), outputs=('mask',))
    assert proc.poll() is None

    def reported():
        for arr in harness.diagnostics:
            for st in arr.status:
                values = {kv.key: kv.value for kv in st.values}
                if int(values.get('stream_resets', 0)) >= 2:
                    return True
        return False

    assert harness.spin_until(reported, 5.0), 'no /diagnostics with stream_resets ≥ 2'

    def warned(text):
        return any(
            s.level == DiagnosticStatus.WARN
            and 'stream reset' in s.message
            and 'reset_cam' in s.message
            and text in s.message
            for a in harness.diagnostics
            for s in a.status
        )

    assert harness.spin_until(lambda: warned('resolution changed') and warned('backwards'), 5.0), [
        s.message for a in harness.diagnostics for s in a.status
    ]
