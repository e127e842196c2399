"""One camera published raw and compressed (issue 24 item 2): ``X`` and ``X/compressed`` are
one camera with one transport in use at a time (``transport``: raw, compressed, auto), never two
outputs for one (camera, stamp).

The node runs in this process in a context of its own; frames and masks go over real DDS
(loopback, the per-run domain from conftest). Before the fix the default ``image_topics``
processed both copies: 10 stamps gave up to 20 masks.
"""

from __future__ import annotations

from collections import Counter

import cv2
import numpy as np
import pytest
from sensor_msgs.msg import CompressedImage, Image

from ros_helpers import InProcessNode, spin_until
from vsda_ros.ros.cameras import Camera, camera_inputs, camera_layout

SIZE = (160, 120)


# ---- the pure parts ---------------------------------------------------------------------------
def test_transport_picks_the_topics_to_subscribe():
    pair = camera_layout(['/cam/image_raw', '/cam/image_raw/compressed'])
    assert camera_inputs(pair, 'auto') == {
        '/cam': [
            ('/cam/image_raw', Image, 'raw'),
            ('/cam/image_raw/compressed', CompressedImage, 'compressed'),
        ]
    }
    assert camera_inputs(pair, 'raw') == {'/cam': [('/cam/image_raw', Image, 'raw')]}
    only_c = camera_layout(['/b/image/compressed'])
    assert camera_inputs(only_c, 'auto') == {
        '/b': [('/b/image/compressed', CompressedImage, 'compressed')]
    }
    assert camera_inputs(only_c, 'raw') == {'/b': [('/b/image', Image, 'raw')]}
    with pytest.raises(ValueError, match='transport must be one of'):
        camera_inputs(pair, 'theora')


def test_camera_uses_one_transport_and_one_output_per_stamp():
    cam = Camera(key='', pubs={}, strategy=None, transports=('raw', 'compressed'))
    assert cam.select({'raw': 1, 'compressed': 1}) and cam.transport == 'raw'
    assert cam.admit('raw', 5) and not cam.admit('compressed', 5)
    assert not cam.admit('compressed', 6)  # not the transport in use
    assert cam.admit('raw', 5) and cam.admit('raw', 0) and cam.admit('raw', 0)  # repeats pass
    assert cam.select({'raw': 0, 'compressed': 1}) and cam.transport == 'compressed'
    assert not cam.admit('compressed', 5)  # stamp 5 already came raw: no second output
    assert cam.admit('compressed', 7) and cam.ignored_other_transport == 3
    assert not cam.select({'raw': 0, 'compressed': 0})  # nobody: keep the last decision


# ---- over DDS -----------------------------------------------------------------------------------
rclpy = pytest.importorskip('rclpy')
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.qos import QoSProfile  # noqa: E402

from vsda_ros.ros.conversions import numpy_to_image  # noqa: E402


class Client:
    """The test side: a node of its own that publishes frames and collects masks."""

    def __init__(self) -> None:
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node('transport_test', context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.masks: list[int] = []  # stamp (ns) of every mask received
        self.sub = self.node.create_subscription(
            Image,
            'mask',
            lambda m: self.masks.append(m.header.stamp.sec * 10**9 + m.header.stamp.nanosec),
            QoSProfile(depth=50),
        )

    def spin_until(self, predicate, timeout: float) -> bool:
        return spin_until(self.executor, predicate, timeout, period=0.02)

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)


@pytest.fixture(scope='module')
def frames(real_data):
    paths = sorted((real_data / 'camvid' / 'val').glob('*.png'))[:10]
    return [
        cv2.resize(
            cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB), SIZE, interpolation=cv2.INTER_AREA
        )
        for p in paths
    ]


def _pair(rgb: np.ndarray, sec: int) -> tuple[Image, CompressedImage]:
    raw = numpy_to_image(rgb)
    ok, jpg = cv2.imencode('.jpg', cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    comp = CompressedImage(format='rgb8; jpeg compressed bgr8', data=jpg.tobytes())
    for m in (raw, comp):
        m.header.stamp.sec, m.header.frame_id = sec, 'camera'
    return raw, comp


def _status(node) -> dict[str, str]:
    cam = next(iter(node._cameras.values()))
    return {kv.key: kv.value for kv in node.diagnostic_status(cam).values}


def test_raw_and_compressed_copies_give_one_mask_per_stamp(real_data, frames):
    seg = InProcessNode({'model': 'espnet-camvid', 'input_size': '160x120'})
    cli = Client()
    try:
        q = QoSProfile(depth=10)
        raw_pub = cli.node.create_publisher(Image, 'image', q)
        comp_pub = cli.node.create_publisher(CompressedImage, 'image/compressed', q)
        assert cli.spin_until(
            lambda: (
                raw_pub.get_subscription_count() > 0
                and comp_pub.get_subscription_count() > 0
                and cli.sub.get_publisher_count() > 0
            ),
            20.0,
        )
        cli.spin_until(lambda: False, 0.5)
        for i, rgb in enumerate(frames):  # as image_transport sends them: both, one stamp
            raw, comp = _pair(rgb, 100 + i)
            comp_pub.publish(comp)
            cli.spin_until(lambda: False, 0.15)  # the copies need not arrive together
            raw_pub.publish(raw)
            cli.spin_until(lambda: Counter(cli.masks)[(100 + i) * 10**9] > 1, 0.5)  # noqa: B023
        cli.spin_until(lambda: False, 0.5)
        per_stamp = Counter(cli.masks)
        assert per_stamp and max(per_stamp.values()) == 1, per_stamp
        assert len(per_stamp) >= 8  # best-effort input: almost all stamps get their mask
        v = _status(seg.node)
        assert v['transport'] == 'raw' and int(v['ignored_other_transport']) >= 8, v
        assert int(v['received']) <= 10, v  # ignored copies are not received
        assert int(v['received']) == (
            int(v['processed']) + int(v['dropped']) + int(v['bad_frames'])
        ), v
        # the raw publisher goes away: auto falls back to compressed, still one mask a stamp
        cli.node.destroy_publisher(raw_pub)
        for i, rgb in enumerate(frames[:5]):
            _, comp = _pair(rgb, 200 + i)
            for _ in range(20):
                comp_pub.publish(comp)
                if cli.spin_until(lambda: (200 + i) * 10**9 in cli.masks, 0.5):  # noqa: B023
                    break
        assert (204 * 10**9) in cli.masks
        assert max(Counter(cli.masks).values()) == 1
        assert _status(seg.node)['transport'] == 'compressed'
    finally:
        cli.close()
        seg.close()
