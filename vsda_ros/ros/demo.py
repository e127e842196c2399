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

from vsda_ros.ros.launcher import client_node, confine_to_loopback, node_process

OUTPUTS = ('mask', 'color_mask', 'overlay')


def run_demo(model: str, frames_dir: Path, out: Path, labels_dir: Path | None = None,
             label_map: str | None = None, size: str = '') -> dict:
    """Replay ``frames_dir`` through the node; write outputs under ``out``; return the summary."""
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
    params = {'model': model, 'input_size': size, 'publish_confidence': False}
    tiles: list[np.ndarray] = []
    with open(out / 'node.log', 'w') as log, node_process(params, stdout=log) as proc, \
            client_node('vsda_demo') as (node, executor):
        pub = node.create_publisher(Image, 'image', QoSProfile(depth=10))
        got: dict[str, dict[int, Image]] = {k: {} for k in OUTPUTS}
        diags: list[DiagnosticArray] = []
        subs = [node.create_subscription(
            Image, name, lambda m, n=name: got[n].__setitem__(m.header.stamp.sec, m),
            QoSProfile(depth=10)) for name in OUTPUTS]
        subs.append(node.create_subscription(DiagnosticArray, '/diagnostics', diags.append,
                                             QoSProfile(depth=10)))

        def spin_until(pred, timeout: float) -> bool:
            end = time.monotonic() + timeout
            while time.monotonic() < end and not pred():
                executor.spin_once(timeout_sec=0.02)
            return pred()

        if not spin_until(lambda: pub.get_subscription_count() > 0 or proc.poll() is not None,
                          120) or proc.poll() is not None:
            raise RuntimeError(f'segmentation_node did not start; see {out / "node.log"}')
        spin_until(lambda: all(p.get_publisher_count() > 0 for p in subs[:3]), 10)
        for i, frame in enumerate(tqdm(frames, desc='demo (over ROS 2)', unit='frame')):
            msg = numpy_to_image(frame.image, None)
            msg.header.stamp.sec = 1_000_000 + i  # one second apart: a unique key per frame
            msg.header.frame_id = 'camera'
            key = msg.header.stamp.sec
            for _ in range(5):
                pub.publish(msg)
                if spin_until(lambda: all(key in got[o] for o in OUTPUTS), 10.0):
                    break
            else:
                raise RuntimeError(f'no outputs for frame {frame.name}; see {out / "node.log"}')
            stem = Path(frame.name).stem
            mask = np.frombuffer(got['mask'][key].data, np.uint8).reshape(
                got['mask'][key].height, got['mask'][key].width)
            cv2.imwrite(str(out / 'labels' / f'{stem}.png'), mask)
            color = image_to_rgb(got['color_mask'][key])
            blended = image_to_rgb(got['overlay'][key])
            cv2.imwrite(str(out / 'color' / f'{stem}.png'), cv2.cvtColor(color, cv2.COLOR_RGB2BGR))
            cv2.imwrite(str(out / 'overlay' / f'{stem}.png'),
                        cv2.cvtColor(blended, cv2.COLOR_RGB2BGR))
            if i % max(1, len(frames) // 6) == 0 and len(tiles) < 6:
                tiles.append(blended)
        spin_until(lambda: False, 1.2)  # one more diagnostics period

    cv2.imwrite(str(out / 'overlay_strip.png'), cv2.cvtColor(strip(tiles), cv2.COLOR_RGB2BGR))
    last = diags[-1].status[0] if diags else None
    summary = {'frames': len(frames), 'model': model, 'out': str(out),
               'diagnostics': ({'level': int.from_bytes(bytes(last.level), 'little')
                                if isinstance(last.level, bytes) else int(last.level),
                                'message': last.message,
                                **{kv.key: kv.value for kv in last.values}} if last else None)}
    if labels_dir is not None:
        mapping = np.asarray(LABEL_MAPS[label_map], np.uint8) if label_map else None
        cm = ConfusionMatrix(len(CAMVID_CLASSES), ignore_index=CAMVID_VOID)
        for frame in frames:
            pred = cv2.imread(str(out / 'labels' / f'{Path(frame.name).stem}.png'),
                              cv2.IMREAD_UNCHANGED)
            cm.update(mapping[pred] if mapping is not None else pred,
                      read_label(Path(labels_dir) / frame.name))
        summary['miou'] = cm.miou() * 100
    (out / 'summary.json').write_text(json.dumps(summary, indent=2) + '\n')
    return summary
