#!/usr/bin/env python3
"""How much temporal consistency can adjacent-frame score fusion buy, at each working scale?

An upper bound for the ``fusion`` strategy on a labelled clip (no ROS, no training): the fusion
block adds ``up(b · (aligned_prev − cur_s))`` to the current logits, computed at a working
scale s (the block's ``scale``). Here the previous scores are aligned either not at all
(``none``) or with DIS optical flow on the full frames (``flow``, which the flow-free block can at
best imitate), or the previous *fused* scores are used (``flow_rec``, recurrent). With
``--temporal-weights`` (a trained fusion block) the previous scores are also aligned by that
block's deformable steps (``learned``, at the block's own scale), and the trained block itself
runs unchanged (``block``), so a learned alignment can be compared with flow at equal blend;
a last line compares the learned alignment with the DIS flow directly (end-point error of the
centre tap's summed offsets, and how often its argmax agrees with the flow-warped previous
scores), each next to the same figure for no alignment. For each scale
and blend weight b it prints mIoU and TC (the ``vsda eval`` definition), and the median time of a
:class:`~vsda_ros.temporal.fusion_block.FusionBlock` of that scale on this machine next to the
network's own median time on the clip (measured in the same run: compare within a run).

Example (the README figures)::

    python benchmarks/fusion_upper_bound.py --source ../shared/data/camvid/val \\
        --labels ../shared/data/camvid/valannot
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from vsda_ros.evaluation.metrics import ConfusionMatrix
from vsda_ros.evaluation.temporal import temporal_consistency
from vsda_ros.temporal.flow import DISFlow, flow_to_tensor, resize_flow, warp
from vsda_ros.temporal.fusion_block import CENTRE_TAP, summed_offsets
from vsda_ros.temporal.modules import load_temporal_modules, make_module

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/_common.py
from _common import open_clip, parser  # noqa: E402

MODES = ('none', 'flow', 'flow_rec')


def block_ms(num_classes: int, scale: float, hw: tuple[int, int], repeats: int = 30) -> float:
    """Median ms of one FusionBlock forward (random weights) at ``scale`` on H×W logits."""
    block = make_module('fusion', num_classes=num_classes, scale=scale).eval()
    cur = torch.randn(1, num_classes, *hw)
    with torch.inference_mode():
        for p in block.parameters():
            p.normal_(0, 0.05)
        prev = block.shrink(torch.randn(1, num_classes, *hw))
        times = []
        for _ in range(repeats + 5):
            t0 = time.perf_counter()
            block(cur, prev, cur_small=block.shrink(cur))
            times.append((time.perf_counter() - t0) * 1e3)
    return float(np.median(times[5:]))


def alignment_vs_flow(
    block, logits: list[torch.Tensor], aligned: list, offsets: list, flows: list
) -> dict:
    """How close a trained block's alignment is to DIS flow, at the block size, over the clip.

    ``aligned[t]`` / ``offsets[t]``: the block's aligned previous scores (1×C×h×w) and its
    steps' offsets (1×18×h×w each) for the pair (t−1, t); ``flows[t]``: 1×2×H×W flow (Δx, Δy)
    into frame t−1. Returns the mean end-point error of the centre tap's offsets summed over
    the steps (what :func:`~vsda_ros.adaptation.recipes.offset_flow_loss` pulls onto the flow)
    and of zero offsets, and the % of pixels where ``argmax`` of the aligned scores and of the
    unaligned ones agree with ``argmax`` of the flow-warped previous scores.
    """
    epe, epe0, agree, agree0 = [], [], [], []
    with torch.inference_mode():
        for t in range(1, len(logits)):
            prev_s = block.shrink(logits[t - 1])
            h, w = prev_s.shape[-2:]
            flow = resize_flow(flows[t], (h, w))  # 1×2×h×w (Δx, Δy)
            ref = warp(prev_s, flow).argmax(1)
            agree.append((aligned[t].argmax(1) == ref).float().mean().item())
            agree0.append((prev_s.argmax(1) == ref).float().mean().item())
            if offsets[t]:
                centre = summed_offsets(offsets[t])[:, CENTRE_TAP]  # 1×(dy, dx)×h×w
                epe.append((centre - flow.flip(1)).norm(dim=1).mean().item())  # (dy, dx)
            epe0.append(flow.norm(dim=1).mean().item())
    return {
        'scale': block.scale,
        'blend': None,
        'align': 'learned_vs_flow',
        'epe': float(np.mean(epe)) if epe else float('nan'),
        'epe_none': float(np.mean(epe0)),
        'agree': 100 * float(np.mean(agree)),
        'agree_none': 100 * float(np.mean(agree0)),
    }


def main(argv: list[str] | None = None) -> int:
    ap = parser(__doc__)
    ap.add_argument('--scales', default='0.0833,0.25', help='comma-separated working scales')
    ap.add_argument('--blends', default='0.3,0.5', help='comma-separated blend weights b')
    ap.add_argument(
        '--temporal-weights',
        default='',
        help='checkpoint with a trained fusion block: adds the learned alignment '
        "('learned', at the block's scale) and the block as trained ('block')",
    )
    args = ap.parse_args(argv)
    try:
        scales = [float(v) for v in args.scales.split(',')]
        blends = [float(v) for v in args.blends.split(',')]
    except ValueError:
        ap.error('--scales and --blends take comma-separated numbers')
    if not all(0 < s <= 1 for s in scales) or not all(0 <= b <= 1 for b in blends):
        ap.error('scales must be in (0, 1] and blend weights in [0, 1]')

    model, seg, clip = open_clip(args, ap)
    trained = None
    if args.temporal_weights:
        # only the given file's block (not the one shipped for the model)
        trained = load_temporal_modules('', args.temporal_weights).fusion
        if trained is None:
            ap.error(f'{args.temporal_weights} has no trained fusion block')
        trained = trained.eval()
    n = len(clip.images)
    logits, net_ms = [], []
    with torch.inference_mode():
        for im in clip.images:
            x = seg.preprocess(im)
            t0 = time.perf_counter()
            logits.append(seg.logits(x))
            net_ms.append((time.perf_counter() - t0) * 1e3)
    net_p50 = float(np.median(net_ms[1:] if len(net_ms) > 1 else net_ms))
    hw = tuple(logits[0].shape[-2:])
    dis = DISFlow('medium')
    flows = [None] + [flow_to_tensor(dis(clip.images[t - 1], clip.images[t])) for t in range(1, n)]

    def score(preds: list[np.ndarray]) -> tuple[float, float]:
        cm = ConfusionMatrix(clip.num_classes, clip.ignore_index)
        for t, p in enumerate(preds):
            if clip.labels[t] is not None:
                cm.update(clip.to_label_space(p), clip.labels[t])
        return cm.miou() * 100, temporal_consistency(preds, clip.images, clip.num_classes)

    per_frame = score(
        [seg.postprocess(lg, im.shape[:2])[0] for lg, im in zip(logits, clip.images, strict=False)]
    )
    print(
        f'per_frame: mIoU {per_frame[0]:.2f}  TC {per_frame[1]:.2f}  network {net_p50:.1f} ms p50'
    )
    rows = []
    for s in scales:
        small = (max(1, round(hw[0] * s)), max(1, round(hw[1] * s)))
        ms = block_ms(len(clip.class_names), s, hw)
        print(
            f'scale {s:.4f} ({small[1]}×{small[0]}): FusionBlock {ms:.1f} ms p50 '
            f'(network + block = {1 + ms / net_p50:.2f}× the network)'
        )
        for b in blends:
            for mode in MODES:
                preds, prev = [], None
                with torch.inference_mode():
                    for t, cur in enumerate(logits):
                        cur_s = F.interpolate(cur, size=small, mode='bilinear', align_corners=False)
                        out = cur
                        if prev is not None:
                            p = prev if mode == 'none' else warp(prev, flows[t])
                            out = cur + F.interpolate(
                                b * (p - cur_s), size=hw, mode='bilinear', align_corners=False
                            )
                        prev = (
                            F.interpolate(out, size=small, mode='bilinear', align_corners=False)
                            if mode == 'flow_rec'
                            else cur_s
                        )
                        preds.append(seg.postprocess(out, clip.images[t].shape[:2])[0])
                miou, tc = score(preds)
                rows.append(
                    {
                        'scale': s,
                        'blend': b,
                        'align': mode,
                        'miou': miou,
                        'tc': tc,
                        'block_ms_p50': ms,
                    }
                )
                print(
                    f'  b {b:.2f} {mode:>8}: mIoU {miou:6.2f} ({miou - per_frame[0]:+.2f})  '
                    f'TC {tc:6.2f} ({tc - per_frame[1]:+.2f})'
                )
    if trained is not None:
        s = trained.scale
        offsets: list[list[torch.Tensor]] = [[] for _ in range(n)]
        with torch.inference_mode():  # one block forward per pair gives both (and the offsets)
            pairs = [
                trained(logits[t], logits[t - 1], return_aligned=True, offsets=offsets[t])
                for t in range(1, n)
            ]
        as_trained = [logits[0]] + [fused for fused, _ in pairs]
        aligned = [None] + [al for _, al in pairs]
        print(f'trained block {args.temporal_weights} (scale {s:.4f})')
        miou, tc = score(
            [
                seg.postprocess(out, im.shape[:2])[0]
                for out, im in zip(as_trained, clip.images, strict=False)
            ]
        )
        rows.append({'scale': s, 'blend': None, 'align': 'block', 'miou': miou, 'tc': tc})
        print(
            f'  as trained    : mIoU {miou:6.2f} ({miou - per_frame[0]:+.2f})  '
            f'TC {tc:6.2f} ({tc - per_frame[1]:+.2f})'
        )
        for b in blends:
            preds = [seg.postprocess(logits[0], clip.images[0].shape[:2])[0]]
            for t in range(1, n):
                cur_s = trained.shrink(logits[t])
                out = logits[t] + F.interpolate(
                    b * (aligned[t] - cur_s), size=hw, mode='bilinear', align_corners=False
                )
                preds.append(seg.postprocess(out, clip.images[t].shape[:2])[0])
            miou, tc = score(preds)
            rows.append({'scale': s, 'blend': b, 'align': 'learned', 'miou': miou, 'tc': tc})
            print(
                f'  b {b:.2f}  learned: mIoU {miou:6.2f} ({miou - per_frame[0]:+.2f})  '
                f'TC {tc:6.2f} ({tc - per_frame[1]:+.2f})'
            )
        rows.append(alignment_vs_flow(trained, logits, aligned, offsets, flows))
        r = rows[-1]
        print(
            f'  learned alignment vs DIS flow: end-point error {r["epe"]:.3f} block px '
            f'(no alignment {r["epe_none"]:.3f}); argmax agrees with the flow-warped '
            f'previous scores on {r["agree"]:.2f} % of block pixels '
            f'(no alignment {r["agree_none"]:.2f} %)'
        )
    if args.out:
        with open(args.out, 'w') as fh:
            json.dump(
                {
                    'per_frame': {
                        'miou': per_frame[0],
                        'tc': per_frame[1],
                        'network_ms_p50': net_p50,
                    },
                    'runs': rows,
                },
                fh,
                indent=2,
            )
        print(f'wrote {args.out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
