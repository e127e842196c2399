#!/usr/bin/env python3
"""Where keyframe propagation loses accuracy: an ablation on a labelled clip (no ROS).

For every start frame s and distance d = 1 … D, the keyframe features of frame s are carried to
frame s + d in three ways and scored against the labels, next to the per-frame prediction:

* ``chain``   — warp frame by frame with DIS flow, as the ``keyframe`` strategy does (no
  correction);
* ``compose`` — compose the per-step flows and warp the keyframe features once (is the loss
  blurring from repeated resampling?);
* ``skip``    — (ESPNet family only) chain-warp the decoder's deep branch but re-run its last
  3×3 conv on the *current* frame's own high-resolution skip features (how much do fine
  details of the current frame recover?);
* ``corrected`` (with ``--corrected``) — chain-warp with the trained DMNet/CFNet correction,
  exactly as the ``keyframe`` strategy with ``keyframe_correction`` (the model's shipped modules,
  or ``--temporal-weights``);
* ``oracle_sK`` (with ``--oracle``) — an upper bound for any CFNet whose output grid is the
  feature grid pooled by K: the FCM with the current frame's own per-frame features as
  correction and the true error map (warped argmax ≠ per-frame argmax) as D, both average-pooled
  by K and upsampled back, then propagated onward like the strategy does.

Prints mIoU per distance and per-class IoU at the largest distance, and writes them as JSON
(``--out``). Example (the README figures)::

    python benchmarks/propagation_ablation.py --source ../shared/data/camvid/val \\
        --labels ../shared/data/camvid/valannot --max-distance 5 --oracle
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from vsda_ros.evaluation.metrics import ConfusionMatrix
from vsda_ros.temporal.correction import fcm
from vsda_ros.temporal.flow import DISFlow, flow_to_tensor, warp
from vsda_ros.temporal.keyframe import Keyframe

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/_common.py
from _common import open_clip, parser  # noqa: E402


def espnet_split(model, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(deep branch, skip) just before ESPNet's last decoder conv, or ``None`` for other nets.

    ``model.net.conv(cat(deep, skip))`` equals ``model.forward_features(x)``.
    """
    from vsda_ros.models.espnet import ESPNet, _fit

    net = model.net
    if not isinstance(net, ESPNet):
        return None
    o0, b1, b2, logits8 = net.encoder(model.normalize(x))
    up3 = _fit(net.up_l3(net.br(logits8)), b2)
    y = net.combine_l2_l3(torch.cat([net.level3_C(b2), up3], 1))
    skip = b1 if net.b1_skip else o0
    return _fit(net.up_l2(y), skip), skip


def pool_up(x: torch.Tensor, k: int) -> torch.Tensor:
    """B×C×h×w → average-pooled to ⌊h/k⌋×⌊w/k⌋ and bilinearly upsampled back to h×w."""
    h, w = x.shape[-2:]
    small = F.adaptive_avg_pool2d(x, (max(1, h // k), max(1, w // k)))
    return F.interpolate(small, size=(h, w), mode='bilinear', align_corners=False)


def main(argv: list[str] | None = None) -> int:
    ap = parser(__doc__)
    ap.add_argument('--max-distance', type=int, default=5)
    ap.add_argument('--flow-preset', default='balanced')
    ap.add_argument(
        '--corrected',
        action='store_true',
        help='also chain-warp with the trained DMNet/CFNet correction',
    )
    ap.add_argument(
        '--temporal-weights',
        default='',
        help="DMNet/CFNet checkpoint for --corrected ('' = the model's shipped ones)",
    )
    ap.add_argument(
        '--oracle',
        action='store_true',
        help='also the oracle CFNet bounds at output strides 4 and 8 (oracle_s4/s8)',
    )
    args = ap.parse_args(argv)
    if args.max_distance < 1:
        ap.error('--max-distance must be >= 1')

    model, seg, clip = open_clip(args, ap)
    n = len(clip.images)
    flow_of = DISFlow(args.flow_preset)
    with torch.inference_mode():
        xs = [seg.preprocess(im) for im in clip.images]
        split = [espnet_split(model, x) for x in xs]
        feats = [model.forward_features(x) for x in xs]
        # the frames at the feature resolution, converted as the keyframe strategy does
        smalls = [Keyframe._small_of(x, f) for x, f in zip(xs, feats, strict=False)]
        flows = [None] + [flow_to_tensor(flow_of(smalls[i - 1], smalls[i])) for i in range(1, n)]
        names = ['per_frame', 'chain', 'compose'] + (['skip'] if split[0] is not None else [])
        oracles = {f'oracle_s{k}': k for k in (4, 8)} if args.oracle else {}
        names += list(oracles)
        corrector = None
        if args.corrected:
            from vsda_ros.temporal.modules import load_temporal_modules
            from vsda_ros.temporal.strategy import StrategyConfig

            mods = load_temporal_modules(args.model, args.temporal_weights)
            if mods.dmnet is None or mods.cfnet is None:
                ap.error('--corrected needs trained DMNet/CFNet (--temporal-weights)')
            corrector = Keyframe(
                seg,
                StrategyConfig(flow_preset=args.flow_preset, correction=True),
                mods.dmnet,
                mods.cfnet,
            )
            names.append('corrected')
        cms = {
            k: {
                d: ConfusionMatrix(clip.num_classes, clip.ignore_index)
                for d in range(1, args.max_distance + 1)
            }
            for k in names
        }

        def score(name: str, d: int, t: int, feat: torch.Tensor) -> None:
            if clip.labels[t] is None:
                return
            logits = model.logits_from_features(feat, xs[t].shape[-2:])
            labels, _ = seg.postprocess(logits, clip.images[t].shape[:2])
            cms[name][d].update(clip.to_label_space(labels), clip.labels[t])

        for s in tqdm(range(n - 1), desc='starts', unit='start'):
            chain, acc = feats[s], torch.zeros_like(flows[1])
            deep = split[s][0] if split[s] is not None else None
            carried = {name: feats[s] for name in oracles}
            if corrector is not None:
                corrector._feat, corrector._small = feats[s], smalls[s]
            for d in range(1, min(args.max_distance, n - 1 - s) + 1):
                t = s + d
                step = flows[t]
                acc = step + warp(acc, step)  # key → t, composed frame by frame
                chain = warp(chain, step)
                score('per_frame', d, t, feats[t])
                score('chain', d, t, chain)
                score('compose', d, t, warp(feats[s], acc))
                if deep is not None:
                    deep = warp(deep, step)
                    score('skip', d, t, model.net.conv(torch.cat([deep, split[t][1]], 1)))
                if corrector is not None:
                    corrector._feat, _, corrector._small, _ = corrector._propagate(xs[t])
                    score('corrected', d, t, corrector._feat)
                for name, k in oracles.items():
                    warped = warp(carried[name], step)
                    wrong = (warped.argmax(1) != feats[t].argmax(1)).float()[:, None]
                    carried[name] = fcm(warped, pool_up(feats[t], k), pool_up(wrong, k))
                    score(name, d, t, carried[name])
    result = {
        'miou': {k: {d: cms[k][d].miou() * 100 for d in cms[k]} for k in names},
        'per_class_iou_at_max_distance': {
            k: dict(
                zip(
                    clip.class_names, (cms[k][args.max_distance].iou() * 100).tolist(), strict=False
                )
            )
            for k in names
        },
    }
    print('mIoU by distance d = 1 …', args.max_distance)
    for k in names:
        print(f'  {k:>9}: ' + ' '.join(f'{v:5.1f}' for v in result['miou'][k].values()))
    print(f'per-class IoU at d = {args.max_distance}: ' + ', '.join(clip.class_names))
    for k in names:
        vals = result['per_class_iou_at_max_distance'][k].values()
        print(f'  {k:>9}: ' + ' '.join(f'{v:5.1f}' for v in vals))
    if args.out:
        with open(args.out, 'w') as fh:
            json.dump(result, fh, indent=2)
        print(f'wrote {args.out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
