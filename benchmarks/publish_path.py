"""Where the node's time outside inference goes, before and after the lean publish path.

Measures, per frame and interleaved (before/after alternate in one process, so a busy machine
slows both alike): decode of an incoming rgb8 message and preprocess (unchanged, for the node's
overhead outside inference), labels (logits → upsample when needed → argmax), confidence (max
softmax × 255), palette lookup (colour mask), overlay blend, ``sensor_msgs/Image``
construction of the four outputs, and ``publish()`` of the four to a subscriber in another
process over real Fast DDS (the package's shared-memory profile), p50/p95 over ``--frames``.
Logits come from the real model on a real CamVid frame at the model's input size.

"before" is today's code copied inline below (``_old_*``); "after" is the package's code.

    ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST ROS_DOMAIN_ID=95 \\
        python benchmarks/publish_path.py --frames 100
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
CASES = {
    '1024x512': ('espnetv2-cityscapes', (1024, 512), None),
    '480x360': ('espnet-camvid', (480, 360), None),
    '480x360->1024x512': ('espnet-camvid', (480, 360), (1024, 512)),
}
STAGES = ('labels', 'confidence', 'palette', 'overlay', 'messages', 'publish')
TOPICS = ('mask', 'color_mask', 'overlay', 'confidence')

_SUBSCRIBER = """
import sys, rclpy
from rclpy.node import Node
from rclpy.qos import QoSProfile
from sensor_msgs.msg import Image
rclpy.init(); node = Node('publish_path_sink'); count = [0]
for t in sys.argv[1:]:
    node.create_subscription(Image, t, lambda m: count.__setitem__(0, count[0] + 1),
                             QoSProfile(depth=10))
try:
    rclpy.spin(node)
except BaseException:
    pass
print(count[0], flush=True)
"""


# ---- before: today's code, verbatim in behaviour --------------------------------------------
def _old_postprocess(logits: torch.Tensor, out_hw: tuple[int, int]) -> tuple[np.ndarray, Any]:
    """Segmenter.postprocess before this change (k = 1)."""
    if tuple(logits.shape[-2:]) != out_hw:
        logits = F.interpolate(logits, size=out_hw, mode='bilinear', align_corners=False)
    best, labels = logits[0].max(dim=0)

    def confidence() -> np.ndarray:
        total = torch.exp(logits[0] - best).sum(dim=0)
        return total.reciprocal_().mul_(255.0).round_().to(torch.uint8).numpy()

    return np.ascontiguousarray(labels.to(torch.uint8).numpy()), confidence


def _old_image(array: np.ndarray, header: Any) -> Any:
    """conversions.numpy_to_image before this change."""
    from sensor_msgs.msg import Image

    array = np.ascontiguousarray(array)
    msg = Image()
    msg.header.stamp.sec, msg.header.stamp.nanosec = header.stamp.sec, header.stamp.nanosec
    msg.header.frame_id = header.frame_id
    msg.height, msg.width = int(array.shape[0]), int(array.shape[1])
    msg.encoding = 'mono8' if array.ndim == 2 else 'rgb8'
    msg.step = msg.width * (1 if array.ndim == 2 else 3)
    msg.data = array.tobytes()
    return msg


def _old_frame(logits, hw, rgb, lut, header, alpha) -> tuple[dict, dict]:
    """One frame the old way: stage → ms, and name → message."""
    t = [time.perf_counter()]
    with torch.inference_mode():
        labels, conf_fn = _old_postprocess(logits, hw)
        t.append(time.perf_counter())
        conf = conf_fn()
    t.append(time.perf_counter())
    color = lut[labels]
    t.append(time.perf_counter())
    blended = cv2.addWeighted(rgb, 1.0 - alpha, color, alpha, 0.0)
    t.append(time.perf_counter())
    msgs = {
        n: _old_image(a, header)
        for n, a in zip(TOPICS, (labels, color, blended, conf), strict=False)
    }
    t.append(time.perf_counter())
    return dict(zip(STAGES, np.diff(t) * 1e3, strict=False)), msgs


def _new_frame(seg, writer, logits, hw, rgb, header, alpha) -> tuple[dict, dict]:
    """One frame through Segmenter.postprocess and OutputWriter, piece by piece."""
    from vsda_ros.ros.conversions import image_message

    t = [time.perf_counter()]
    labels, conf_fn = seg.postprocess(logits, hw)
    t.append(time.perf_counter())
    conf = conf_fn()
    t.append(time.perf_counter())
    color = writer.color(labels)
    t.append(time.perf_counter())
    writer.blend(rgb, color, alpha)
    t.append(time.perf_counter())
    msgs = {
        'mask': image_message(labels.tobytes(), labels.shape, header),
        'color_mask': image_message(writer._color.raw, color.shape, header),
        'overlay': image_message(writer._overlay.raw, rgb.shape, header),
        'confidence': image_message(conf.tobytes(), conf.shape, header),
    }
    t.append(time.perf_counter())
    return dict(zip(STAGES, np.diff(t) * 1e3, strict=False)), msgs


def _case_inputs(model_name: str, net_wh: tuple[int, int], frame_wh: tuple[int, int]):
    """(segmenter, real logits at the network size, the rgb frame at frame_wh, lut, rgb8 msg)."""
    from vsda_ros.inference import Segmenter, SegmenterConfig
    from vsda_ros.models.zoo import load_model
    from vsda_ros.ros.conversions import numpy_to_image
    from vsda_ros.visualize import palette_array

    model = load_model(model_name).eval()
    seg = Segmenter(model, SegmenterConfig(input_size=net_wh))
    data = Path(os.environ.get('VSDA_DATA_DIR', ROOT.parent / 'shared' / 'data'))
    first = sorted((data / 'camvid' / 'val').glob('*.png'))[0]
    rgb = cv2.cvtColor(cv2.imread(str(first)), cv2.COLOR_BGR2RGB)
    rgb = np.ascontiguousarray(cv2.resize(rgb, frame_wh, interpolation=cv2.INTER_LINEAR))
    logits = seg.logits(seg.preprocess(rgb))
    return seg, logits, rgb, palette_array(model.meta.palette), numpy_to_image(rgb)


def _publishers(prefix: str):
    """An rclpy node with the four publishers and a subscriber process matched to them."""
    from rclpy.node import Node
    from rclpy.qos import QoSProfile
    from sensor_msgs.msg import Image

    node = Node('publish_path_bench')
    pubs = {n: node.create_publisher(Image, f'{prefix}/{n}', QoSProfile(depth=10)) for n in TOPICS}
    sink = subprocess.Popen(
        [sys.executable, '-c', _SUBSCRIBER, *(f'{prefix}/{n}' for n in TOPICS)],
        stdout=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    while any(p.get_subscription_count() == 0 for p in pubs.values()):
        if time.monotonic() > deadline:
            raise RuntimeError('the subscriber process never matched')
        time.sleep(0.05)
    return node, pubs, sink


def _publish(pubs: dict, msgs: dict) -> float:
    t0 = time.perf_counter()
    for name in TOPICS:
        pubs[name].publish(msgs[name])
    return (time.perf_counter() - t0) * 1e3


def run_case(name: str, frames: int, pubs: dict | None, alpha: float = 0.5) -> dict:
    """Before/after stage times (ms per frame) for one case, and whether outputs match."""
    from vsda_ros.data.decode import message_to_rgb
    from vsda_ros.ros.outputs import OutputWriter

    model_name, net_wh, frame_wh = CASES[name]
    frame_wh = frame_wh or net_wh
    seg, logits, rgb, lut, in_msg = _case_inputs(model_name, net_wh, frame_wh)
    hw, writer = (frame_wh[1], frame_wh[0]), OutputWriter(lut)
    times = {
        'before': {s: [] for s in (*STAGES, 'total')},
        'after': {s: [] for s in (*STAGES, 'total')},
        'context': {'decode': [], 'preprocess': []},
    }
    identical, conf_diff = True, 0
    for i in range(frames + 3):  # 3 warm-up frames
        order = ('before', 'after') if i % 2 == 0 else ('after', 'before')
        out = {}
        for which in order:
            if which == 'before':
                ms, msgs = _old_frame(logits, hw, rgb, lut, in_msg.header, alpha)
            else:
                ms, msgs = _new_frame(seg, writer, logits, hw, rgb, in_msg.header, alpha)
            ms['publish'] = _publish(pubs, msgs) if pubs else 0.0
            out[which] = msgs
            if i >= 3:
                for stage, v in ms.items():
                    times[which][stage].append(v)
                times[which]['total'].append(sum(ms.values()))
        identical &= all(
            bytes(out['before'][n].data) == bytes(out['after'][n].data)
            for n in TOPICS
            if n != 'confidence'
        )
        before, after = (
            np.frombuffer(bytes(out[w]['confidence'].data), np.uint8).astype(int)
            for w in ('before', 'after')
        )
        conf_diff = max(conf_diff, int(np.abs(before - after).max()))
        t0 = time.perf_counter()
        message_to_rgb(in_msg)
        t1 = time.perf_counter()
        seg.preprocess(rgb)
        t2 = time.perf_counter()
        if i >= 3:
            times['context']['decode'].append((t1 - t0) * 1e3)
            times['context']['preprocess'].append((t2 - t1) * 1e3)
    return {
        'case': name,
        'model': model_name,
        'network': list(net_wh),
        'frame': list(frame_wh),
        'frames': frames,
        'identical': identical,
        'confidence_max_diff': conf_diff,
        'ms': {w: {s: _pct(v) for s, v in st.items()} for w, st in times.items()},
    }


def _pct(values: list[float]) -> dict[str, float]:
    return {
        'p50': round(float(np.percentile(values, 50)), 2),
        'p95': round(float(np.percentile(values, 95)), 2),
    }


def print_table(res: dict) -> None:
    """One case as a before/after table."""
    ms = res['ms']
    print(
        f'\n{res["case"]}: {res["model"]} network {res["network"][0]}x{res["network"][1]}, '
        f'frame {res["frame"][0]}x{res["frame"][1]}, {res["frames"]} frames, mask/colour/'
        f'overlay {"bit-identical" if res["identical"] else "DIFFER"}, confidence within '
        f'{res["confidence_max_diff"]}'
    )
    print(f'{"stage":<12}{"before p50":>11}{"p95":>9}{"after p50":>11}{"p95":>9}{"x p50":>7}')
    for stage in (*STAGES, 'total'):
        b, a = ms['before'][stage], ms['after'][stage]
        ratio = b['p50'] / a['p50'] if a['p50'] > 0 else float('nan')
        print(
            f'{stage:<12}{b["p50"]:>11.2f}{b["p95"]:>9.2f}{a["p50"]:>11.2f}{a["p95"]:>9.2f}'
            f'{ratio:>7.1f}'
        )
    for stage, v in ms['context'].items():
        print(f'{stage:<12}{"(unchanged)":>20}{v["p50"]:>11.2f}{v["p95"]:>9.2f}')


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--frames', type=int, default=100)
    ap.add_argument('--cases', default=','.join(CASES), help=f'comma list of {list(CASES)}')
    ap.add_argument('--no-dds', action='store_true', help='skip publish() (no rclpy needed)')
    ap.add_argument('--out', default=None, help='write the results as JSON here')
    args = ap.parse_args(argv)
    cases = [c for c in args.cases.split(',') if c]
    if args.frames < 1 or any(c not in CASES for c in cases):
        ap.error(f'--frames must be ≥ 1 and --cases within {list(CASES)}')
    from vsda_ros.runtime import tune_allocator

    tune_allocator()  # as the node does
    results, node, sink = [], None, None
    if not args.no_dds:
        if os.environ.get('ROS_AUTOMATIC_DISCOVERY_RANGE') != 'LOCALHOST':
            ap.error('set ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST and a ROS_DOMAIN_ID')
        os.environ.setdefault(
            'FASTDDS_DEFAULT_PROFILES_FILE', str(ROOT / 'config' / 'fastdds_profile.xml')
        )
        import rclpy

        rclpy.init()
    try:
        pubs = None
        if not args.no_dds:
            node, pubs, sink = _publishers(f'/publish_path_{os.getpid()}')
        for case in cases:
            results.append(run_case(case, args.frames, pubs))
            print_table(results[-1])
    finally:
        if sink is not None:
            sink.terminate()
            print(f'\nsubscriber received {sink.communicate(timeout=10)[0].strip()} messages')
        if node is not None:
            node.destroy_node()
            import rclpy

            rclpy.try_shutdown()
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == '__main__':
    sys.exit(main())
