"""Two cameras (raw + compressed) into one node running the keyframe strategy over real DDS,
plus live parameter changes through the ROS parameter services.

Each camera keeps its own strategy state, so the masks must equal the offline ``Keyframe``
strategy run per camera on the same frame order, bit for bit. Then ``keyframe_interval`` and
``publish_overlay`` are changed live and a read-only parameter change is refused.
"""

from __future__ import annotations

import os
import time

import cv2
import numpy as np
import pytest

rclpy = pytest.importorskip('rclpy')
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.parameter_client import AsyncParameterClient  # noqa: E402
from rclpy.qos import QoSProfile  # noqa: E402
from sensor_msgs.msg import CompressedImage, Image  # noqa: E402

from ros_helpers import spin_until as spin_executor_until  # noqa: E402
from vsda_ros.ros.conversions import numpy_to_image  # noqa: E402

pytestmark = pytest.mark.ros
SIZE = (240, 180)


@pytest.fixture(scope='module')
def frames(real_data):
    paths = sorted((real_data / 'camvid' / 'val').glob('*.png'))[:6]
    return [
        cv2.resize(
            cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB), SIZE, interpolation=cv2.INTER_AREA
        )
        for p in paths
    ]


@pytest.fixture(scope='module')
def system(real_data, tmp_path_factory):
    from vsda_ros.ros.tools.launcher import node_process

    assert os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] == 'LOCALHOST'
    params = {
        'model': 'espnet-camvid',
        'input_size': '240x180',
        'strategy': 'keyframe',
        'backend': 'torch',
        'keyframe_interval': 3,
        'image_topics': ['/cam_a/image_raw', '/cam_b/image_raw/compressed'],
    }
    log = open(tmp_path_factory.mktemp('mc') / 'node.log', 'w+')
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    node = rclpy.create_node('vsda_multicam_test', context=ctx)
    ex = SingleThreadedExecutor(context=ctx)
    ex.add_node(node)
    got: dict[tuple, Image] = {}
    q = QoSProfile(depth=10)
    pubs = {
        'a': node.create_publisher(Image, '/cam_a/image_raw', q),
        'b': node.create_publisher(CompressedImage, '/cam_b/image_raw/compressed', q),
    }
    subs = [
        node.create_subscription(
            Image,
            f'/cam_{c}/{o}',
            lambda m, c=c, o=o: got.__setitem__((c, o, m.header.stamp.sec), m),
            q,
        )
        for c in 'ab'
        for o in ('mask', 'overlay')
    ]

    def spin_until(pred, timeout):
        return spin_executor_until(ex, pred, timeout)

    try:
        with node_process(params, stdout=log) as proc:
            up = spin_until(
                lambda: (
                    proc.poll() is not None
                    or (
                        all(p.get_subscription_count() > 0 for p in pubs.values())
                        and all(s.get_publisher_count() > 0 for s in subs)
                    )
                ),
                40.0,
            )
            if proc.poll() is not None or not up:
                log.seek(0)
                pytest.fail(f'node did not come up:\n{log.read()}')
            spin_until(lambda: False, 0.5)
            yield node, pubs, got, spin_until, proc
    finally:
        ex.shutdown()
        node.destroy_node()
        rclpy.try_shutdown(context=ctx)
        log.close()


def _send(system, cam: str, rgb: np.ndarray, sec: int, outputs=('mask',)) -> dict:
    node, pubs, got, spin_until, _ = system
    if cam == 'a':
        msg = numpy_to_image(rgb)
    else:
        ok, png = cv2.imencode('.png', cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        msg = CompressedImage(format='png', data=png.tobytes())
    msg.header.stamp.sec, msg.header.frame_id = sec, f'cam_{cam}'
    for _ in range(3):  # best-effort input: resend until the outputs for this stamp arrive
        pubs[cam].publish(msg)
        if spin_until(lambda: all((cam, o, sec) in got for o in outputs), 8.0):
            return {o: got[(cam, o, sec)] for o in outputs}
    raise AssertionError(f'no {outputs} for camera {cam} stamp {sec}')


def _mask(msg: Image) -> np.ndarray:
    return np.frombuffer(msg.data, np.uint8).reshape(msg.height, msg.width)


def test_two_cameras_keep_their_own_keyframe_state(system, frames):
    import torch

    from vsda_ros.inference import Segmenter, SegmenterConfig
    from vsda_ros.models.zoo import load_model
    from vsda_ros.temporal.factory import build_strategy
    from vsda_ros.temporal.strategy import StrategyConfig

    torch.set_num_threads(2)
    seg = Segmenter(
        load_model('espnet-camvid', download=False, progress=False),
        SegmenterConfig(input_size=SIZE),
    )
    from vsda_ros.temporal.modules import load_temporal_modules

    modules = load_temporal_modules('espnet-camvid')  # the shipped DMNet/CFNet, as in the node
    assert modules.dmnet is not None
    offline = {
        c: build_strategy('keyframe', seg, StrategyConfig(keyframe_interval=3), modules)
        for c in 'ab'
    }
    order = [('a', 0), ('b', 5), ('a', 1), ('b', 4), ('a', 2), ('b', 3), ('a', 3)]
    for n, (cam, i) in enumerate(order):
        sec = 100 + n  # 1 s apart: below max_stamp_gap_s
        live = _mask(_send(system, cam, frames[i], sec)['mask'])
        ref = offline[cam].step(frames[i], float(sec))
        assert np.array_equal(live, ref.labels), (cam, i, ref.keyframe)
    assert system[4].poll() is None


def test_live_parameters(system, frames):
    node = system[0]
    client = AsyncParameterClient(node, 'segmentation_node')
    assert client.wait_for_services(10.0)

    def set_params(params):
        fut = client.set_parameters(params)
        assert system[3](fut.done, 10.0)
        return fut.result().results

    res = set_params(
        [Parameter('publish_overlay', value=False), Parameter('keyframe_interval', value=1)]
    )
    assert all(r.successful for r in res), res
    out = _send(system, 'a', frames[4], 200)  # interval 1: a keyframe = the per-frame answer
    time.sleep(0.5)
    system[3](lambda: False, 0.5)
    assert ('a', 'overlay', 200) not in system[2]
    from vsda_ros.inference import Segmenter, SegmenterConfig
    from vsda_ros.models.zoo import load_model

    seg = Segmenter(
        load_model('espnet-camvid', download=False, progress=False),
        SegmenterConfig(input_size=SIZE),
    )
    assert np.array_equal(_mask(out['mask']), seg.segment(frames[4]).labels)
    res = set_params([Parameter('publish_overlay', value=True)])
    assert res[0].successful
    _send(system, 'a', frames[5], 201, outputs=('mask', 'overlay'))
    refused = set_params([Parameter('model', value='espnetv2-cityscapes')])
    assert not refused[0].successful
    refused = set_params([Parameter('keyframe_interval', value=0)])  # out of range
    assert not refused[0].successful
