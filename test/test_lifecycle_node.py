"""The managed (lifecycle) segmentation node over real DDS (loopback, per-run domain).

In this process: :class:`LifecycleSegmentationNode` and a client node in one context, one
executor spun by the test. Transitions go through the node's ``change_state`` service (what
``ros2 lifecycle set`` and Nav2's lifecycle manager call) or its ``trigger_*`` methods; frames
go in on ``image`` and masks, ``/diagnostics`` and ``/rosout`` are read back. The shipped model
(``espnetv2-camvid-tsl``) needs no download and synthetic frames need no data set. As a process:
``segmentation_lifecycle_node`` with a model that does not exist survives ``configure`` and
exits 0 on ``shutdown``.
"""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import weakref
from pathlib import Path

import numpy as np
import pytest

rclpy = pytest.importorskip('rclpy')
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from lifecycle_msgs.msg import Transition  # noqa: E402
from lifecycle_msgs.srv import ChangeState, GetState  # noqa: E402
from rcl_interfaces.msg import Log  # noqa: E402
from rcl_interfaces.srv import GetParameters  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.lifecycle import TransitionCallbackReturn  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSProfile  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from ros_helpers import spin_until  # noqa: E402
from vsda_ros.ros.conversions import numpy_to_image  # noqa: E402

pytestmark = pytest.mark.ros
REPO = Path(__file__).resolve().parents[1]
MODEL = 'espnetv2-camvid-tsl'  # shipped with the package: no download
PARAMS = {
    'model': MODEL,
    'input_size': '64x48',
    'publish_overlay': False,
    'backend': 'torch',
    'publish_confidence': False,
}
FRAME = (72, 96)  # height, width of the synthetic camera frames
NODE = '/segmentation_node'


class Bench:
    """The lifecycle node and a client (publisher of ``image``, reader of the outputs)."""

    def __init__(self, params: dict) -> None:
        from vsda_ros.ros.lifecycle_node import LifecycleSegmentationNode

        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = LifecycleSegmentationNode(
            context=self.context,
            parameter_overrides=[Parameter(k, value=v) for k, v in params.items()],
        )
        self.client = rclpy.create_node('lifecycle_test_client', context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        for n in (self.node, self.client):
            self.executor.add_node(n)
        c = self.client
        self.pub = c.create_publisher(Image, 'image', QoSProfile(depth=10))
        self.masks: dict[int, Image] = {}
        self.diagnostics: list[DiagnosticArray] = []
        self.logs: list[Log] = []
        self.mask_sub = c.create_subscription(
            Image, 'mask', lambda m: self.masks.__setitem__(m.header.stamp.nanosec, m), 10
        )
        c.create_subscription(DiagnosticArray, '/diagnostics', self.diagnostics.append, 10)
        c.create_subscription(
            Log,
            '/rosout',
            self.logs.append,
            QoSProfile(depth=100, durability=DurabilityPolicy.TRANSIENT_LOCAL),
        )  # lines before the match
        self.change = c.create_client(ChangeState, f'{NODE}/change_state')
        self.get = c.create_client(GetState, f'{NODE}/get_state')
        self.params = c.create_client(GetParameters, f'{NODE}/get_parameters')
        self.sent = 0

    def until(self, predicate, timeout: float) -> bool:
        return spin_until(self.executor, predicate, timeout)

    def call(self, client, request, timeout: float = 120.0):
        assert self.until(client.service_is_ready, 20.0), client.srv_name
        future = client.call_async(request)
        assert self.until(future.done, timeout), f'{client.srv_name}: no reply'
        return future.result()

    def transition(self, transition_id: int) -> bool:
        """ChangeState over DDS, as ``ros2 lifecycle set`` sends it."""
        return self.call(
            self.change, ChangeState.Request(transition=Transition(id=transition_id))
        ).success

    def state(self) -> str:
        return self.call(self.get, GetState.Request()).current_state.label

    def send(self, n: int) -> list[int]:
        """Publish ``n`` frames (one every 0.15 s); returns their stamps' nanosec."""
        stamps = []
        rng = np.random.default_rng(self.sent)
        for _ in range(n):
            self.sent += 1
            msg = numpy_to_image(rng.integers(0, 255, (*FRAME, 3), np.uint8))
            msg.header.stamp.sec, msg.header.stamp.nanosec = 100 + self.sent, self.sent
            msg.header.frame_id = 'lifecycle_cam'
            self.pub.publish(msg)
            stamps.append(self.sent)
            self.until(lambda: False, 0.15)
        return stamps

    def close(self) -> None:
        self.node.stop()
        self.executor.shutdown()
        self.client.destroy_node()
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)
        # Finalize the node's handle now: rcl maps /rosout publishers by logger name, and a
        # handle finalized later (the runtime's gc.collect() in unload) would unregister the
        # next test's node of the same name from /rosout.
        self.node = self.client = None
        gc.collect()


@pytest.fixture
def bench():
    b = Bench(PARAMS)
    yield b
    b.close()


def _image_subscribed(b: Bench) -> bool:
    return b.pub.get_subscription_count() > 0


def test_transitions_over_dds(bench):
    b, node = bench, bench.node
    # unconfigured: parameters answer, nothing loaded or subscribed
    assert b.state() == 'unconfigured'
    reply = b.call(b.params, GetParameters.Request(names=['model', 'input_size']))
    assert [v.string_value for v in reply.values] == [MODEL, '64x48']
    assert node.runtime.segmenter is None and not b.until(lambda: _image_subscribed(b), 1.0)

    # configure: model loaded, publishers there, still no subscription and no masks
    assert b.transition(Transition.TRANSITION_CONFIGURE)
    assert b.state() == 'inactive'
    assert node.runtime.segmenter is not None
    assert b.until(lambda: b.mask_sub.get_publisher_count() == 1, 10.0)
    b.send(3)
    assert not _image_subscribed(b) and not b.until(lambda: b.masks, 1.0)

    # activate: masks for frames, input header and size
    assert b.transition(Transition.TRANSITION_ACTIVATE)
    assert b.state() == 'active'
    assert b.until(lambda: _image_subscribed(b), 10.0)
    stamps = b.send(4)
    assert b.until(lambda: b.masks, 30.0), 'no mask while active'
    for stamp, mask in b.masks.items():
        assert stamp in stamps and mask.header.frame_id == 'lifecycle_cam'
        assert (mask.height, mask.width, mask.encoding) == (*FRAME, 'mono8')
    assert b.until(lambda: b.diagnostics, 5.0), 'no /diagnostics while active'
    status = b.diagnostics[-1].status[0]
    assert status.hardware_id == 'segmentation_node'
    assert {kv.key: kv.value for kv in status.values}['model'] == MODEL

    # deactivate: not subscribed, frames not processed, no diagnostics, model kept
    node.trigger_deactivate()
    assert b.state() == 'inactive' and node.runtime.segmenter is not None
    assert b.until(lambda: not _image_subscribed(b), 10.0)
    b.until(lambda: False, 0.5)  # anything already in flight arrives now
    seen, diags = set(b.masks), len(b.diagnostics)
    b.send(4)
    assert not b.until(lambda: set(b.masks) != seen, 2.0), 'a mask while inactive'
    assert len(b.diagnostics) == diags, '/diagnostics while inactive'

    # activate again: served again
    assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
    assert b.until(lambda: _image_subscribed(b), 10.0)
    later = b.send(4)
    assert b.until(lambda: set(later) & set(b.masks), 30.0), 'no mask after re-activation'

    # deactivate + cleanup: model freed, publishers gone
    ref = weakref.ref(node.runtime.segmenter)
    assert b.transition(Transition.TRANSITION_DEACTIVATE)
    assert b.transition(Transition.TRANSITION_CLEANUP)
    assert b.state() == 'unconfigured'
    gc.collect()
    assert node.runtime.segmenter is None and ref() is None, 'the model is still referenced'
    assert b.until(lambda: b.mask_sub.get_publisher_count() == 0, 10.0)

    # configure again works; shutdown ends in finalized with everything freed
    assert b.transition(Transition.TRANSITION_CONFIGURE)
    assert b.transition(Transition.TRANSITION_INACTIVE_SHUTDOWN)
    assert node.finished.is_set() and node.runtime.segmenter is None
    assert b.state() == 'finalized'


def test_bad_model_fails_configure_not_the_node(tmp_path, monkeypatch):
    monkeypatch.setenv('VSDA_CACHE_DIR', str(tmp_path))
    b = Bench({**PARAMS, 'model': 'no-such-model'})
    try:
        assert b.until(lambda: b.change.service_is_ready(), 20.0)
        assert not b.transition(Transition.TRANSITION_CONFIGURE)
        assert b.state() == 'unconfigured' and b.node.runtime.segmenter is None
        assert 'no-such-model' in b.node.last_failure
        assert b.until(
            lambda: any(
                'configure failed' in m.msg and 'no-such-model' in m.msg and m.level == Log.ERROR
                for m in b.logs
            ),
            10.0,
        ), [m.msg for m in b.logs]
        # the node still serves: its state, another attempt, parameters
        assert b.node.trigger_configure() == TransitionCallbackReturn.FAILURE
        assert b.state() == 'unconfigured'
    finally:
        b.close()


def test_process_survives_a_bad_configure_and_exits_0_on_shutdown(tmp_path):
    """``segmentation_lifecycle_node`` as a process: a model that cannot load fails
    ``configure`` with the reason in its log, the process lives on, ``shutdown`` ends it 0."""
    env = dict(
        os.environ, VSDA_CACHE_DIR=str(tmp_path), PYTHONUNBUFFERED='1', RCUTILS_COLORIZED_OUTPUT='0'
    )
    cmd = [
        sys.executable,
        '-c',
        'import sys; from vsda_ros.ros.segmentation_node import '
        'lifecycle_main; sys.exit(lifecycle_main())',
        '--ros-args',
        '-r',
        '__node:=lifecycle_process_node',
        '-p',
        'model:=no-such-model',
    ]
    log = (tmp_path / 'node.log').open('w')
    proc = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    context = rclpy.Context()
    rclpy.init(context=context)
    client = rclpy.create_node('lifecycle_process_client', context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(client)
    try:
        # a name of its own: nothing left of the in-process nodes above can answer for it
        change = client.create_client(ChangeState, '/lifecycle_process_node/change_state')
        assert spin_until(executor, change.service_is_ready, 60.0), 'no change_state service'
        for transition, expected in (
            (Transition.TRANSITION_CONFIGURE, False),
            (Transition.TRANSITION_UNCONFIGURED_SHUTDOWN, True),
        ):
            assert proc.poll() is None, (tmp_path / 'node.log').read_text()
            future = change.call_async(ChangeState.Request(transition=Transition(id=transition)))
            assert spin_until(executor, future.done, 60.0)
            assert future.result().success is expected, transition
        rc = proc.wait(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        executor.shutdown()
        client.destroy_node()
        rclpy.try_shutdown(context=context)
    text = (tmp_path / 'node.log').read_text()
    assert rc == 0, text
    assert 'configure failed' in text and 'no-such-model' in text, text
    assert 'Traceback' not in text, text
