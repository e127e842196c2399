#!/usr/bin/env python3
"""How well does a fusion block's alignment follow the motion, clean and in weather?

For every consecutive pair of a clip, the reference motion is DIS optical flow (``medium``) on
the *clean* full-size frames, resized to the block's working size. Against it, at the block
size (end-point error in block pixels, mean over pixels and pairs; and the share of pixels off
by more than one block pixel):

- ``zero``: no alignment at all (what the unaligned previous scores assume);
- ``dis``: DIS flow itself computed on the *degraded* pair (what a flow-based fusion would use
  at run time in that weather); 0 on the clean pair by definition;
- ``block``: the trained block's own displacement on the (clean or degraded) pair — for the
  image-guided block its motion field, for the score-only block the centre tap's offsets summed
  over its deformable steps. Neither block computes optical flow at run time.

Conditions: ``clean``, each weather kind at ``--intensity`` as temporal (smooth) weather on both
frames, and ``transient`` (only the current frame degraded, every kind, averaged).

Example (docs/design/temporal.md)::

    python benchmarks/fusion_alignment.py --source ../shared/data/camvid/val \\
        --labels ../shared/data/camvid/valannot --temporal-weights runs/fg1_espnet-camvid.pt \\
        --out runs/fusion_alignment.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from vsda_ros.temporal.flow import DISFlow, flow_to_tensor, resize_flow
from vsda_ros.temporal.fusion_block import CENTRE_TAP, summed_offsets
from vsda_ros.temporal.modules import load_temporal_modules
from vsda_ros.weather import WEATHER_KINDS, WeatherSequence, WeatherSpec, apply_weather

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/_common.py
from _common import open_clip, parser  # noqa: E402


def block_displacement(block, seg, prev_img: np.ndarray, cur_img: np.ndarray) -> torch.Tensor:
    """1×2×h×w (Δx, Δy) displacement of ``block`` for the pair, at its working size."""
    with torch.inference_mode():
        xp, xc = seg.preprocess(prev_img), seg.preprocess(cur_img)
        if getattr(block, 'uses_images', False):
            motion, _ = block.motion_field(block.guide(xc), block.guide(xp))
            return motion
        offsets: list[torch.Tensor] = []
        block(seg.logits(xc), seg.logits(xp), offsets=offsets)
        if not offsets:  # no deformable steps: no displacement
            lg = block.shrink(seg.logits(xc))
            return torch.zeros(1, 2, *lg.shape[-2:])
        return summed_offsets(offsets)[:, CENTRE_TAP].flip(1)  # (dy, dx) → (Δx, Δy)


def epe(a: torch.Tensor, b: torch.Tensor) -> tuple[float, float]:
    """(mean end-point error, share of pixels with error > 1) of two B×2×h×w fields."""
    err = (a - b).norm(dim=1)
    return float(err.mean()), float((err > 1.0).float().mean())


def alignment_study(
    block,
    seg,
    images: list[np.ndarray],
    intensity: float = 0.6,
    seed: int = 0,
    progress: bool = True,
) -> dict:
    """The table of the module docstring: ``{condition: {'zero'|'dis'|'block': {'epe',
    'over1'}}}`` (means over the pairs), plus ``block_size``."""
    dis = DISFlow('medium')
    pairs = list(range(1, len(images)))
    hw = None
    refs = {}
    for t in pairs:
        ref = flow_to_tensor(dis(images[t - 1], images[t]))
        disp = block_displacement(block, seg, images[t - 1], images[t])
        hw = tuple(disp.shape[-2:])
        refs[t] = resize_flow(ref, hw)
    conditions = ['clean', *WEATHER_KINDS, 'transient']
    acc: dict[str, dict[str, list]] = {c: {'zero': [], 'dis': [], 'block': []} for c in conditions}
    bar = tqdm(total=len(conditions) * len(pairs), desc='alignment', disable=not progress)
    for cond in conditions:
        kinds = WEATHER_KINDS if cond == 'transient' else [cond]
        for k, kind in enumerate(kinds):
            if cond == 'clean':
                frames = images
            elif cond == 'transient':
                frames = None
            else:
                seq = WeatherSequence(WeatherSpec(kind, intensity), seed=seed, temporal=True)
                frames = [seq(im) for im in images]
            for t in pairs:
                if cond == 'transient':
                    prev = images[t - 1]
                    cur = apply_weather(images[t], WeatherSpec(kind, intensity), seed=seed + t)
                else:
                    prev, cur = frames[t - 1], frames[t]
                ref = refs[t]
                acc[cond]['zero'].append(epe(torch.zeros_like(ref), ref))
                acc[cond]['dis'].append(epe(resize_flow(flow_to_tensor(dis(prev, cur)), hw), ref))
                acc[cond]['block'].append(epe(block_displacement(block, seg, prev, cur), ref))
                if k == 0:
                    bar.update(1)
    bar.close()
    out = {'block_size': list(hw), 'intensity': intensity}
    for cond, rows in acc.items():
        out[cond] = {
            name: {
                'epe': float(np.mean([v[0] for v in vals])),
                'over1': 100 * float(np.mean([v[1] for v in vals])),
            }
            for name, vals in rows.items()
        }
    return out


def main(argv: list[str] | None = None) -> int:
    ap = parser(__doc__)
    ap.add_argument(
        '--temporal-weights',
        required=True,
        help='checkpoint with a trained fusion block (scores or guided)',
    )
    ap.add_argument('--intensity', type=float, default=0.6)
    ap.add_argument('--seed', type=int, default=0)
    args = ap.parse_args(argv)
    block = load_temporal_modules('', args.temporal_weights).fusion
    if block is None:
        ap.error(f'{args.temporal_weights} has no trained fusion block')
    _, seg, clip = open_clip(args, ap)
    block = block.eval()
    res = alignment_study(block, seg, clip.images, args.intensity, args.seed)
    res.update(
        model=args.model,
        temporal_weights=args.temporal_weights,
        variant=block.vsda_args.get('variant', 'scores'),
        frames=len(clip.images),
    )
    print(
        f'block size {res["block_size"][1]}×{res["block_size"][0]}, variant '
        f'{res["variant"]}: end-point error against clean DIS flow (block px; % over 1 px)'
    )
    print(f'{"condition":>10} | {"zero":>14} | {"DIS on it":>14} | {"block":>14}')
    for cond in ['clean', *WEATHER_KINDS, 'transient']:
        r = res[cond]
        print(
            f'{cond:>10} | '
            + ' | '.join(
                f'{r[n]["epe"]:6.3f} ({r[n]["over1"]:4.1f} %)' for n in ('zero', 'dis', 'block')
            )
        )
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(res, indent=1))
        print(f'wrote {args.out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
