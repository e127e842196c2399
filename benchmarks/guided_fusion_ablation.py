#!/usr/bin/env python3
"""Where does an image-guided fusion block's gain come from? Its parts, one at a time.

On a labelled clip, against ``per_frame`` (mIoU / TC change, the ``vsda eval`` definitions),
for a trained :class:`~vsda_ros.temporal.guided_fusion.GuidedFusionBlock`:

- ``fixed``: the previous scores aligned by ``zero`` motion, by the block's learned ``motion``
  field, or by DIS optical flow (``dis``, medium, on the full frames: what the learned motion
  imitates; the block never computes it), blended with a fixed weight b, pairwise or
  recurrent (the previous *fused* scores);
- ``block``: the block as trained (its gate), pairwise and recurrent, and with its gate's bias
  shifted by each ``--gate-shifts`` value (a lower blend everywhere trades TC for mIoU); the
  mean weight its gate gave the previous frame;
- the learned motion's end-point error against DIS at the block size (zero motion for scale).

With ``--weather KIND:INTENSITY`` every frame is degraded first (smooth temporal weather, or an
independent draw per frame with ``--iid``): the network, the block and DIS see the degraded
frames; mIoU is against the labels and TC uses the clean frames' flow, as in ``vsda eval``.
A fixed blend with a high weight then says how much averaging neighbours can give at all.

Example (docs/design/temporal.md)::

    python benchmarks/guided_fusion_ablation.py --source ../shared/data/camvid/val \\
        --labels ../shared/data/camvid/valannot --out runs/guided_ablation.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from vsda_ros.evaluation.metrics import ConfusionMatrix
from vsda_ros.evaluation.temporal import temporal_consistency
from vsda_ros.temporal.flow import DISFlow, flow_to_tensor, resize_flow, warp
from vsda_ros.temporal.modules import load_temporal_modules

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/_common.py
from _common import open_clip, parser  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = parser(__doc__)
    ap.add_argument('--map', default=None, help='label map (e.g. cityscapes-camvid)')
    ap.add_argument(
        '--temporal-weights',
        default='',
        help="checkpoint with a guided fusion block ('' = the model's shipped one)",
    )
    ap.add_argument('--blends', default='0.3,0.4', help='fixed blend weights b')
    ap.add_argument(
        '--gate-shifts',
        default='-0.6,-0.3',
        help="shifts of the gate's bias (logit) for the 'block' rows",
    )
    ap.add_argument(
        '--weather', default=None, help='degrade every frame first: KIND:INTENSITY (e.g. fog:0.6)'
    )
    ap.add_argument(
        '--iid',
        action='store_true',
        help='with --weather: an independent draw of the weather per frame',
    )
    ap.add_argument('--seed', type=int, default=0, help='weather seed')
    args = ap.parse_args(argv)
    blends = [float(v) for v in args.blends.split(',') if v.strip()]
    shifts = [float(v) for v in args.gate_shifts.split(',') if v.strip()]
    block = load_temporal_modules(args.model, args.temporal_weights).fusion
    if block is None or not getattr(block, 'uses_images', False):
        ap.error('no image-guided fusion block (pass --temporal-weights)')
    block = block.eval()
    if args.map:  # open_clip takes no label map: reload the clip with it
        from vsda_ros.evaluation.temporal import load_clip

        model, seg, _ = open_clip(args, ap)
        clip = load_clip(args.source, args.labels, model.meta, args.map, max_frames=args.max_frames)
    else:
        model, seg, clip = open_clip(args, ap)

    def score(preds: list[np.ndarray]) -> tuple[float, float]:
        preds = [clip.to_label_space(p) for p in preds]
        cm = ConfusionMatrix(clip.num_classes, clip.ignore_index)
        for t, p in enumerate(preds):
            if clip.labels[t] is not None:
                cm.update(p, clip.labels[t])
        return cm.miou() * 100, temporal_consistency(preds, clip.images, clip.num_classes)

    n = len(clip.images)
    shape = clip.images[0].shape[:2]
    images = clip.images
    if args.weather:
        from vsda_ros.weather import WeatherSequence, parse_weather

        try:
            spec = parse_weather(args.weather)
        except ValueError as exc:
            ap.error(str(exc))
        if spec is not None:  # 'clean' is no weather
            degrade = WeatherSequence(spec, seed=args.seed, temporal=not args.iid)
            images = [degrade(im) for im in clip.images]
    dis = DISFlow('medium')
    with torch.inference_mode():
        xs = [seg.preprocess(im) for im in images]
        logits = [seg.logits(x) for x in xs]
        guides = [block.guide(x) for x in xs]
        small = [block.shrink(lg) for lg in logits]
        hw = tuple(small[0].shape[-2:])
        motion = [None] + [block.motion_field(guides[t], guides[t - 1])[0] for t in range(1, n)]
        flows = [None] + [
            resize_flow(flow_to_tensor(dis(images[t - 1], images[t])), hw) for t in range(1, n)
        ]
        base = score([seg.postprocess(lg, shape)[0] for lg in logits])
        rows = [{'name': 'per_frame', 'miou': base[0], 'tc': base[1]}]
        epe = float(
            np.mean([(motion[t] - flows[t]).norm(dim=1).mean().item() for t in range(1, n)])
        )
        epe0 = float(np.mean([flows[t].norm(dim=1).mean().item() for t in range(1, n)]))
        print(
            f'per_frame: mIoU {base[0]:.2f} TC {base[1]:.2f}; learned motion vs DIS: '
            f'end-point error {epe:.3f} block px (zero motion {epe0:.3f})'
        )

        def report(name: str, preds: list[np.ndarray], **kw) -> None:
            m, tc = score(preds)
            rows.append(
                {
                    'name': name,
                    'miou': m,
                    'tc': tc,
                    'delta_miou': m - base[0],
                    'delta_tc': tc - base[1],
                    **kw,
                }
            )
            weight = f'  mean weight {kw["mean_weight"]:.3f}' if 'mean_weight' in kw else ''
            print(
                f'  {name:<34} mIoU {m:6.2f} ({m - base[0]:+.2f})  TC {tc:6.2f} '
                f'({tc - base[1]:+.2f}){weight}'
            )

        zero = [None] + [torch.zeros_like(f) for f in flows[1:]]
        for align, fields in (('zero', zero), ('motion', motion), ('dis', flows)):
            for b in blends:
                for recurrent in (False, True):
                    preds, prev = [], None
                    for t in range(n):
                        out = logits[t]
                        if prev is not None:
                            out = logits[t] + F.interpolate(
                                b * (warp(prev, fields[t]) - small[t]),
                                size=logits[t].shape[-2:],
                                mode='bilinear',
                                align_corners=False,
                            )
                        prev = block.shrink(out) if recurrent else small[t]
                        preds.append(seg.postprocess(out, shape)[0])
                    report(
                        f'fixed b {b:g} {align}{" recurrent" if recurrent else ""}',
                        preds,
                        align=align,
                        blend=b,
                        recurrent=recurrent,
                    )
        bias = block.gate[-1].bias.detach().clone()
        for shift in [0.0, *shifts]:
            block.gate[-1].bias.copy_(bias + shift)
            for recurrent in (False, True) if shift == 0 else (True,):
                preds, prev, weights = [], None, []
                for t in range(n):
                    aux: dict = {}
                    out = (
                        logits[t]
                        if prev is None
                        else block(
                            logits[t], prev, guides[t], guides[t - 1], cur_small=small[t], aux=aux
                        )
                    )
                    if aux:
                        weights.append(float(aux['gate'].mean()))
                    prev = block.shrink(out) if recurrent else small[t]
                    preds.append(seg.postprocess(out, shape)[0])
                report(
                    f'block gate {shift:+g}{" recurrent" if recurrent else ""}',
                    preds,
                    gate_shift=shift,
                    recurrent=recurrent,
                    mean_weight=float(np.mean(weights)),
                )
        block.gate[-1].bias.copy_(bias)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(
            json.dumps(
                {
                    'model': args.model,
                    'weather': args.weather,
                    'iid': args.iid,
                    'epe_motion': epe,
                    'epe_zero': epe0,
                    'rows': rows,
                },
                indent=1,
            )
        )
        print(f'wrote {args.out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
