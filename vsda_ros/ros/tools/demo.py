"""``vsda demo``: the real thing end to end — segmentation_node fed over ROS 2.

Starts ``segmentation_node`` as a subprocess (loopback discovery, a domain of its own),
publishes every frame of a folder on ``image`` in time order (each frame is re-sent until its
outputs arrive, since the node's input QoS is best effort), records what the node publishes —
colour masks, overlays, label masks — plus its last ``/diagnostics``, and scores the label masks
against ground truth when a label folder is given.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from vsda_ros.ros.tools.launcher import client_node, confine_to_loopback, node_process

OUTPUTS = ('mask', 'color_mask', 'overlay')


def run_demo(
    model: str,
    frames_dir: Path,
    out: Path,
    labels_dir: Path | None = None,
    label_map: str | None = None,
    size: str = '',
    strategy: str = 'per_frame',
    backend: str = 'torch',
) -> dict:
    """Replay ``frames_dir`` through the node; write outputs under ``out``; return the summary.

    ``backend``: the node's (``torch`` by default, not the node's own default ``auto``: the
    demo shows the published weights' figures and a first run exports nothing; ``auto``
    picks what the node would).

    Raises ``RuntimeError`` if the node does not start or a frame gets no outputs.
    """
    confine_to_loopback()  # network rule, before rclpy starts
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.qos import QoSProfile
    from sensor_msgs.msg import Image

    from vsda_ros.data.sources import FrameSource, read_label
    from vsda_ros.evaluation.metrics import ConfusionMatrix
    from vsda_ros.models.zoo import CAMVID_CLASSES, CAMVID_VOID, LABEL_MAPS
    from vsda_ros.ros.conversions import image_to_rgb, numpy_to_image
    from vsda_ros.visualize import strip

    frames = list(FrameSource(frames_dir))
    for sub in ('labels', 'color', 'overlay'):
        (out / sub).mkdir(parents=True, exist_ok=True)
    params = {
        'model': model,
        'input_size': size,
        'publish_confidence': False,
        'strategy': strategy,
        'backend': backend,
    }
    tiles: list[np.ndarray] = []
    with (
        open(out / 'node.log', 'w') as log,
        node_process(params, stdout=log) as proc,
        client_node('vsda_demo') as (node, executor),
    ):
        pub = node.create_publisher(Image, 'image', QoSProfile(depth=10))
        got: dict[str, dict[int, Image]] = {k: {} for k in OUTPUTS}
        diags: list[DiagnosticArray] = []
        subs = [
            node.create_subscription(
                Image,
                name,
                lambda m, n=name: got[n].__setitem__(m.header.stamp.sec, m),
                QoSProfile(depth=10),
            )
            for name in OUTPUTS
        ]
        subs.append(
            node.create_subscription(
                DiagnosticArray, '/diagnostics', diags.append, QoSProfile(depth=10)
            )
        )

        def spin_until(pred, timeout: float) -> bool:
            end = time.monotonic() + timeout
            while time.monotonic() < end and not pred():
                executor.spin_once(timeout_sec=0.02)
            return pred()

        if (
            not spin_until(lambda: pub.get_subscription_count() > 0 or proc.poll() is not None, 120)
            or proc.poll() is not None
        ):
            raise RuntimeError(f'segmentation_node did not start; see {out / "node.log"}')
        spin_until(lambda: all(p.get_publisher_count() > 0 for p in subs[:3]), 10)
        for i, frame in enumerate(tqdm(frames, desc='demo (over ROS 2)', unit='frame')):
            msg = numpy_to_image(frame.image, None)
            msg.header.stamp.sec = 1_000_000 + i  # one second apart: a unique key per frame
            msg.header.frame_id = 'camera'
            key = msg.header.stamp.sec
            for _ in range(5):
                pub.publish(msg)
                if spin_until(lambda: all(key in got[o] for o in OUTPUTS), 10.0):  # noqa: B023
                    break
            else:
                raise RuntimeError(f'no outputs for frame {frame.name}; see {out / "node.log"}')
            stem = Path(frame.name).stem
            mask = np.frombuffer(got['mask'][key].data, np.uint8).reshape(
                got['mask'][key].height, got['mask'][key].width
            )
            cv2.imwrite(str(out / 'labels' / f'{stem}.png'), mask)
            color = image_to_rgb(got['color_mask'][key])
            blended = image_to_rgb(got['overlay'][key])
            cv2.imwrite(str(out / 'color' / f'{stem}.png'), cv2.cvtColor(color, cv2.COLOR_RGB2BGR))
            cv2.imwrite(
                str(out / 'overlay' / f'{stem}.png'), cv2.cvtColor(blended, cv2.COLOR_RGB2BGR)
            )
            if i % max(1, len(frames) // 6) == 0 and len(tiles) < 6:
                tiles.append(blended)
        spin_until(lambda: False, 1.2)  # one more diagnostics period

    cv2.imwrite(str(out / 'overlay_strip.png'), cv2.cvtColor(strip(tiles), cv2.COLOR_RGB2BGR))
    last = diags[-1].status[0] if diags else None
    summary = {
        'frames': len(frames),
        'model': model,
        'strategy': strategy,
        'backend': backend,
        'out': str(out),
        'diagnostics': (
            {
                'level': int.from_bytes(bytes(last.level), 'little')
                if isinstance(last.level, bytes)
                else int(last.level),
                'message': last.message,
                **{kv.key: kv.value for kv in last.values},
            }
            if last
            else None
        ),
    }
    if labels_dir is not None:
        mapping = np.asarray(LABEL_MAPS[label_map], np.uint8) if label_map else None
        cm = ConfusionMatrix(len(CAMVID_CLASSES), ignore_index=CAMVID_VOID)
        for frame in frames:
            pred = cv2.imread(
                str(out / 'labels' / f'{Path(frame.name).stem}.png'), cv2.IMREAD_UNCHANGED
            )
            assert pred is not None  # written for every frame above
            cm.update(
                mapping[pred] if mapping is not None else pred,
                read_label(Path(labels_dir) / frame.name),
            )
        summary['miou'] = cm.miou() * 100
    (out / 'summary.json').write_text(json.dumps(summary, indent=2) + '\n')
    return summary


#: the default demo: (folder name, model, strategy, label map for CamVid labels).
DEMO_RUNS = (
    ('source', 'espnetv2-cityscapes', 'per_frame', 'cityscapes-camvid'),
    ('adapted', 'espnetv2-camvid-tsl', 'per_frame', 'cityscapes-camvid'),
    ('keyframe', 'espnet-camvid', 'keyframe', None),
)


def _titled(image: np.ndarray, title: str) -> np.ndarray:
    """An RGB image with a black title bar above it."""
    bar = np.zeros((28, image.shape[1], 3), np.uint8)
    cv2.putText(bar, title, (6, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    return np.concatenate([bar, image], axis=0)


def side_by_side(out: Path, left: dict, right: dict, frames_dir: Path, n: int = 4) -> Path:
    """``source_vs_adapted.png``: ``n`` frames, the two runs' overlays side by side, titled with
    each model and its mIoU. Returns the path."""
    from vsda_ros.data.sources import FrameSource

    names = [Path(f.name).stem for f in FrameSource(frames_dir)]
    picks = [names[round(i * (len(names) - 1) / max(1, n - 1))] for i in range(n)]
    rows = []
    for stem in picks:
        tiles = []
        for run in (left, right):
            bgr = cv2.imread(str(Path(run['out']) / 'overlay' / f'{stem}.png'))
            assert bgr is not None  # run_demo writes an overlay for every frame
            img = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            miou = f'  clip mIoU {run["miou"]:.1f}' if 'miou' in run else ''
            tiles.append(_titled(img, f'{run["model"]}{miou}  {stem}'))
        rows.append(np.concatenate(tiles, axis=1))
    path = out / 'source_vs_adapted.png'
    cv2.imwrite(str(path), cv2.cvtColor(np.concatenate(rows, axis=0), cv2.COLOR_RGB2BGR))
    return path


def run_demo_suite(
    frames_dir: Path,
    labels_dir: Path | None,
    out: Path,
    size: str = '480x360',
    backend: str = 'torch',
) -> dict:
    """The default ``vsda demo``: the published Cityscapes model and the shipped adapted one on
    the same clip (a side-by-side overlay picture, mIoU of each), then espnet-camvid with the
    keyframe strategy (flow-propagated features between keyframes) — all through
    segmentation_node over ROS 2."""
    runs = {}
    for name, model, strategy, label_map in DEMO_RUNS:
        print(f'== {name}: {model}, strategy {strategy}', flush=True)
        runs[name] = run_demo(
            model, frames_dir, out / name, labels_dir, label_map, size, strategy, backend
        )
    picture = side_by_side(out, runs['source'], runs['adapted'], frames_dir)
    summary = {'runs': runs, 'source_vs_adapted': str(picture)}
    (out / 'summary.json').write_text(json.dumps(summary, indent=2) + '\n')
    return summary
