"""``vsda eval --live``: the evaluation's frames sent through a running segmentation_node.

:class:`LiveRunner` starts ``segmentation_node`` (loopback only, a ROS domain of its own) for
each run, publishes a clip's frames on ``image`` at a fixed rate with ``header.stamp = now``,
records the ``mask`` and ``timing`` messages it publishes, and scores them exactly like the
offline runner (:func:`vsda_ros.evaluation.temporal.evaluate_strategy`), so the two reports
can be compared key by key. Latency here is end to end: mask received − header stamp.

With ``attach`` set (``vsda eval --live --attach /ns``) no node is started: the frames go to a
node that is already running (e.g. from ``ros2 launch vsda_ros segment.launch.py``) on
``/ns/image`` and its ``/ns/mask`` (and ``/ns/timing`` if it publishes timing) are recorded;
runs are then separated by a pause longer than the node's ``max_stamp_gap_s`` so its stream
guard resets the strategy between them.

The evaluation core never imports this module: ``vsda eval --live`` (:mod:`vsda_ros.apps.eval`)
builds a :class:`LiveRunner` and injects it into
:func:`vsda_ros.evaluation.runner.run_eval`, which calls :meth:`LiveRunner.run` for every run.

A frame the node dropped (it was still busy when a newer frame arrived) counts in ``dropped``
and is scored with the last mask received before it, which is what a consumer of the topic
would have had; frames before the first mask are left out of the scores.

The node is started with the evaluation's ``backend`` and ``precision`` (``vsda eval --live
--backend openvino`` runs the node on OpenVINO). Each run also returns the ``backend`` and
``precision`` the node reports it actually runs (its ``/diagnostics``; ``None`` if it reported
none), which with ``--attach`` may differ from the options given.
"""

from __future__ import annotations

import contextlib
import time

import numpy as np
from tqdm import tqdm

from vsda_ros.evaluation.metrics import percentiles_ms
from vsda_ros.evaluation.temporal import Clip, _score, temporal_consistency
from vsda_ros.ros.tools.launcher import (
    client_node,
    confine_to_loopback,
    node_process,
    prepare_compiled,
)

#: seconds a run waits after its frames for the node's /diagnostics (published at 1 Hz) when
#: none has arrived yet, for the backend and precision it reports.
DIAGNOSTICS_WAIT_S = 2.5


def node_reported(msg, ns: str) -> dict[str, str]:
    """``backend`` and ``precision`` from a segmentation_node's ``/diagnostics`` message
    (a ``diagnostic_msgs/DiagnosticArray``), for the camera whose input is ``{ns}/image`` (or
    ``{ns}/image/compressed``); ``{}`` when the message has no such camera."""
    topics = {f'{ns}/image', f'{ns}/image/compressed'}
    for status in msg.status:
        values = {kv.key: kv.value for kv in status.values}
        if values.get('topic') in topics and 'backend' in values:
            return {k: values[k] for k in ('backend', 'precision') if k in values}
    return {}


class LiveRunner:
    """Runs strategies over clips through segmentation_node processes (a fresh one per run,
    so runs share no temporal state).

    Args:
        cfg: the :class:`~vsda_ros.evaluation.runner.EvalConfig` (model, size, device,
            temporal weights, rate).
        interval: keyframe interval for the ``keyframe`` strategy.
    """

    def __init__(
        self, cfg, interval: int, attach: str | None = None, attach_gap_s: float = 1.5
    ) -> None:
        self.cfg = cfg
        self.interval = interval
        self.attach = attach.rstrip('/') if attach else None
        self.attach_gap_s = attach_gap_s
        self._runs = 0

    def node_params(self, strategy: str) -> dict:
        """The ``ros__parameters`` a started node gets for a run of ``strategy``: the
        evaluation's model, device, size, temporal weights, backend and precision, only the
        outputs the runner records."""
        return {
            'model': self.cfg.model,
            'strategy': strategy,
            'device': self.cfg.device,
            'backend': self.cfg.backend,
            'precision': self.cfg.precision,
            'input_size': self.cfg.size or '',
            'temporal_weights': self.cfg.temporal_weights,
            'keyframe_interval': int(self.interval),
            'publish_color_mask': False,
            'publish_overlay': False,
            'publish_confidence': False,
            'publish_timing': True,
        }

    def run(
        self,
        strategy: str,
        clip: Clip,
        clean_images: list[np.ndarray] | None = None,
        progress: bool = True,
        desc: str = '',
    ) -> dict:
        """Publish ``clip`` to a node running ``strategy``; same keys as ``evaluate_strategy``
        plus ``dropped``, ``backend`` and ``precision`` (what the node reports it runs).

        Raises ``RuntimeError`` when the node does not come up within 60 s or exits.
        """
        confine_to_loopback()  # network rule, before rclpy starts
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.qos import QoSProfile
        from sensor_msgs.msg import Image

        from vsda_ros.ros.conversions import mono8_to_array, numpy_to_image

        rate = float(self.cfg.rate or clip.fps)
        masks: dict[tuple, tuple[np.ndarray, float]] = {}
        stages: dict[tuple, dict] = {}
        reported: dict[str, str] = {}  # the node's backend / precision, from /diagnostics
        if self.attach is not None and self._runs:
            time.sleep(self.attach_gap_s)  # a stamp gap: the node's stream guard resets
        self._runs += 1
        ns = self.attach or ''
        # once, before the first node: a first export would outlast its start deadline, and
        # the later runs' nodes load the same cache entry
        if self.attach is None and self._runs == 1:
            prepare_compiled(self.node_params(strategy))
        with (
            (
                contextlib.nullcontext()
                if self.attach is not None
                else node_process(self.node_params(strategy))
            ) as proc,
            client_node('vsda_eval_live') as (node, executor),
        ):
            now_s = lambda: node.get_clock().now().nanoseconds * 1e-9  # noqa: E731

            def on_mask(msg: Image) -> None:
                key = (msg.header.stamp.sec, msg.header.stamp.nanosec)
                masks[key] = (mono8_to_array(msg), now_s())

            def on_timing(msg: DiagnosticArray) -> None:
                if msg.status:
                    key = (msg.header.stamp.sec, msg.header.stamp.nanosec)
                    stages[key] = {kv.key: float(kv.value) for kv in msg.status[0].values}

            def on_diagnostics(msg: DiagnosticArray) -> None:
                reported.update(node_reported(msg, ns))

            pub = node.create_publisher(Image, f'{ns}/image', QoSProfile(depth=10))
            subs = [
                node.create_subscription(Image, f'{ns}/mask', on_mask, QoSProfile(depth=50)),
                node.create_subscription(
                    DiagnosticArray, f'{ns}/timing', on_timing, QoSProfile(depth=50)
                ),
                node.create_subscription(
                    DiagnosticArray, '/diagnostics', on_diagnostics, QoSProfile(depth=10)
                ),
            ]
            deadline = time.monotonic() + (30 if self.attach is not None else 60)
            while pub.get_subscription_count() == 0 or subs[0].get_publisher_count() == 0:
                if (proc is not None and proc.poll() is not None) or time.monotonic() > deadline:
                    raise RuntimeError(
                        f'no segmentation_node on {ns or "/"}image → {ns}/mask (is it running '
                        f'in this ROS_DOMAIN_ID?)'
                        if self.attach is not None
                        else f'segmentation_node ({strategy}) did not start'
                    )
                executor.spin_once(timeout_sec=0.1)
            # Matching is seen from our side first; give the node's side a moment too, or the
            # first (best-effort) frame can be lost.
            settle = time.monotonic() + 1.0
            while time.monotonic() < settle:
                executor.spin_once(timeout_sec=0.05)
            sent: list[tuple[tuple, float]] = []
            t0 = time.monotonic()
            for i, img in enumerate(
                tqdm(
                    clip.images,
                    desc=desc or strategy,
                    unit='frame',
                    disable=not progress,
                    leave=False,
                )
            ):
                while (wait := t0 + i / rate - time.monotonic()) > 0:
                    executor.spin_once(timeout_sec=min(wait, 0.005))
                msg = numpy_to_image(img, None, 'rgb8')
                stamp = node.get_clock().now()
                msg.header.stamp = stamp.to_msg()
                msg.header.frame_id = 'camera'
                pub.publish(msg)
                sent.append(
                    ((msg.header.stamp.sec, msg.header.stamp.nanosec), stamp.nanoseconds * 1e-9)
                )
            end = time.monotonic() + 3.0  # the last frames are still in the node
            while time.monotonic() < end and (
                sent[-1][0] not in masks or (self.attach is None and sent[-1][0] not in stages)
            ):
                executor.spin_once(timeout_sec=0.02)
            wall = time.monotonic() - t0
            end = time.monotonic() + DIAGNOSTICS_WAIT_S  # the node reports once a second
            while time.monotonic() < end and 'backend' not in reported:
                executor.spin_once(timeout_sec=0.05)
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(
                    f'segmentation_node ({strategy}) exited with code {proc.returncode}'
                )
        out = self._score(strategy, clip, sent, masks, stages, wall, clean_images)
        out.update(backend=reported.get('backend'), precision=reported.get('precision'))
        return out

    @staticmethod
    def _score(strategy: str, clip: Clip, sent, masks, stages, wall: float, clean_images) -> dict:
        preds, latency, keys, dropped = [], [], 0, 0
        stage_lists: dict[str, list[float]] = {}
        cm = clip.confusion_matrix()
        last, scored_images = None, []
        for i, (key, stamp) in enumerate(sent):
            if key in masks:
                mask, received = masks[key]
                last = clip.to_label_space(mask)
                latency.append((received - stamp) * 1e3)
                for k, v in stages.get(key, {}).items():
                    stage_lists.setdefault(k, []).append(v)
                keys += int(stages.get(key, {}).get('keyframe', 1.0) > 0.5)
            else:
                dropped += 1
            if last is None:
                continue
            preds.append(last)
            scored_images.append((clean_images or clip.images)[i])
            label = clip.labels[i]
            if label is not None:
                cm.update(last, label)
        received = len(sent) - dropped
        out = {
            'strategy': strategy,
            'frames': len(sent),
            'dropped': dropped,
            'latency_ms': percentiles_ms(latency, (50, 95, 99)),
            'stage_ms': {
                k: percentiles_ms(v, (50, 95)) for k, v in stage_lists.items() if k != 'keyframe'
            },
            'fps': received / wall if wall > 0 else None,
            'keyframe_ratio': keys / max(1, received),
            'latency_samples': latency,
            'tc': temporal_consistency(preds, scored_images, clip.num_classes),
        }
        if cm.matrix.sum():
            out.update(_score(cm, clip.class_names))
        # align with the clip for the caller (agreement, samples): hold the first mask back
        out['predictions'] = [preds[0]] * (len(sent) - len(preds)) + preds if preds else []
        return out
