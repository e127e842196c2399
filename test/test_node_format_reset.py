"""An encoding change resets a camera's temporal state (issue 24 item 3).

A camera switching rgb8 → mono8 (an IR night mode) → bgr8: each switch resets the stream,
counted in ``stream_resets`` with the reason, and the first frame after it gets exactly a fresh
node's mask. Over real DDS (loopback, per-run domain), the node in this process in a context of
its own. Before the fix nothing reset and the first mono8 mask agreed only 82–86 % with a fresh
node's.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

rclpy = pytest.importorskip('rclpy')
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.qos import QoSProfile  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from ros_helpers import InProcessNode  # noqa: E402
from ros_helpers import spin_until as spin_executor_until  # noqa: E402
from vsda_ros.ros.conversions import message_to_rgb, numpy_to_image  # noqa: E402

pytestmark = pytest.mark.ros
SIZE = (160, 120)


@pytest.fixture(scope='module')
def frames(real_data):
    paths = sorted((real_data / 'camvid' / 'val').glob('*.png'))[:6]
    return [
        cv2.resize(
            cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB), SIZE, interpolation=cv2.INTER_AREA
        )
        for p in paths
    ]


def _messages(frames: list[np.ndarray]) -> list[Image]:
    """rgb8 ×4, then mono8 (night mode), then bgr8; stamps 0.1 s apart."""
    msgs = [numpy_to_image(f) for f in frames[:4]]
    msgs.append(numpy_to_image(cv2.cvtColor(frames[4], cv2.COLOR_RGB2GRAY)))
    bgr = numpy_to_image(np.ascontiguousarray(frames[5][..., ::-1]))
    bgr.encoding = 'bgr8'
    msgs.append(bgr)
    for i, m in enumerate(msgs):
        m.header.stamp.sec, m.header.stamp.nanosec = 10, i * 100_000_000
        m.header.frame_id = 'camera'
    return msgs


@pytest.mark.parametrize('strategy', ['fusion', 'keyframe'])
def test_encoding_change_resets_to_a_fresh_nodes_mask(real_data, frames, strategy):
    seg = InProcessNode(
        {
            'model': 'espnet-camvid',
            'input_size': '160x120',
            'strategy': strategy,
            'keyframe_interval': 100,
        }
    )
    context = rclpy.Context()
    rclpy.init(context=context)
    client = rclpy.create_node('format_reset_test', context=context)
    ex = SingleThreadedExecutor(context=context)
    ex.add_node(client)
    masks: dict[int, Image] = {}
    sub = client.create_subscription(
        Image, 'mask', lambda m: masks.__setitem__(m.header.stamp.nanosec, m), QoSProfile(depth=10)
    )
    warnings: list[str] = []  # /diagnostics messages (each period reports its resets once)
    client.create_subscription(
        DiagnosticArray,
        '/diagnostics',
        lambda a: warnings.extend(st.message for st in a.status),
        QoSProfile(depth=10),
    )

    def spin_until(pred, timeout):
        return spin_executor_until(ex, pred, timeout, period=0.02)

    try:
        pub = client.create_publisher(Image, 'image', QoSProfile(depth=10))
        assert spin_until(
            lambda: pub.get_subscription_count() > 0 and sub.get_publisher_count() > 0, 20.0
        )
        spin_until(lambda: False, 0.3)
        msgs = _messages(frames)
        for m in msgs:  # one at a time: every frame processed, in order
            for _ in range(5):
                pub.publish(m)
                if spin_until(lambda: m.header.stamp.nanosec in masks, 3.0):  # noqa: B023
                    break
            assert m.header.stamp.nanosec in masks, m.encoding
        node = seg.node
        for i in (4, 5):  # the first mono8 frame, the first bgr8 frame
            fresh = node.pipeline.strategy(strategy, node._strategy_config())
            ref = fresh.step(message_to_rgb(msgs[i]), 10 + i * 0.1, msgs[i].encoding).labels
            got = np.frombuffer(masks[msgs[i].header.stamp.nanosec].data, np.uint8)
            assert np.array_equal(got.reshape(ref.shape), ref), (strategy, msgs[i].encoding)

        def reported() -> bool:
            return all(
                r in ' '.join(warnings)
                for r in ('encoding rgb8 -> mono8', 'encoding mono8 -> bgr8')
            )

        assert spin_until(reported, 5.0), warnings
        cam = next(iter(node._cameras.values()))
        values = {kv.key: kv.value for kv in node.diagnostic_status(cam).values}
        assert values['stream_resets'] == '2', values
    finally:
        ex.shutdown()
        client.destroy_node()
        rclpy.try_shutdown(context=context)
        seg.close()
