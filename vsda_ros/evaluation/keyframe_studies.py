"""The keyframe studies of ``vsda eval`` (run by :mod:`vsda_ros.evaluation.runner` when the
keyframe strategy is evaluated): adaptive keyframes (``--distortion-threshold``) next to the
fixed interval at equal cost, and the PDA curve (``--pda``: mIoU by distance from the keyframe,
corrected, plain warping and per-frame) with the cost of a key and a propagated frame.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, cast

import numpy as np

from vsda_ros.evaluation.report import mean_ms
from vsda_ros.evaluation.temporal import (
    Clip,
    evaluate_strategy,
    pda_curve,
    per_frame_at_distance,
)

if TYPE_CHECKING:
    from vsda_ros.temporal.keyframe import Keyframe
    from vsda_ros.temporal.strategy import Strategy


def adaptive_keyframes(
    strategy: Callable[..., Strategy],
    clip: Clip,
    threshold: float,
    interval: int,
    runs: list[dict],
    progress: bool,
) -> dict:
    """Adaptive keyframes on the clean clip next to the fixed-interval keyframe run.

    The adaptive run keeps the interval as an upper bound and also makes a keyframe whenever
    DMNet's mean distortion of a propagated frame exceeds ``threshold``. To compare at equal
    cost, the fixed interval closest to the adaptive run's keyframe ratio is run too.
    ``strategy(name, **kw)`` makes a fresh in-process strategy at the run's ``interval``;
    ``runs`` are the report rows (the clean keyframe row is the fixed-interval one). Raises
    ``ValueError`` without a trained DMNet.
    """
    adaptive = cast('Keyframe', strategy('keyframe', distortion_threshold=threshold))
    if adaptive.dmnet is None:
        raise ValueError('--distortion-threshold needs a trained DMNet (--temporal-weights)')
    res = evaluate_strategy(adaptive, clip, progress, 'keyframe adaptive')
    res['mean_ms'] = mean_ms(res['latency_samples'])
    keep = ('miou', 'tc', 'keyframe_ratio', 'mean_ms', 'latency_ms')
    fixed = next(r for r in runs if r['weather'] is None and r['strategy'] == 'keyframe')
    matched_n = max(1, round(1 / max(res['keyframe_ratio'], 1e-9)))
    matched = evaluate_strategy(
        strategy('keyframe', keyframe_interval=matched_n),
        clip,
        progress,
        f'keyframe every {matched_n}',
    )
    matched['mean_ms'] = mean_ms(matched['latency_samples'])
    return {
        'threshold': threshold,
        'adaptive': {k: res.get(k) for k in keep},
        'fixed': {'interval': interval, **{k: fixed.get(k) for k in keep}},
        'fixed_matched': {'interval': matched_n, **{k: matched.get(k) for k in keep}},
    }


def pda_study(
    strategy: Callable[..., Strategy],
    clip: Clip,
    pda_range: tuple[int, int],
    pf_preds: list[np.ndarray] | None,
    progress: bool,
) -> dict:
    """The PDA curve (corrected, plain warping, per-frame on the same frames) at distances 0
    (the keyframe itself, the reference) and A … B of ``pda_range``, and the cost.

    Propagating to distance B passes through every distance below it, so the curves are
    computed for 0 … B; the distances below A are left out of the report. ``pf_preds``: the
    clean per_frame predictions (H×W uint8 each) when that run was made, else it is run here.
    """
    low, max_d = pda_range

    def kept(curve: dict) -> dict:
        return {d: v for d, v in curve.items() if d == 0 or low <= d <= max_d}

    corrected = cast('Keyframe', strategy('keyframe'))
    pda = pda_curve(corrected, clip, max_d, progress, 'pda keyframe')
    plain = pda_curve(strategy('keyframe', correction=False), clip, max_d, progress, 'pda warp')
    if pf_preds is None:
        pf_preds = evaluate_strategy(strategy('per_frame'), clip, progress, 'pda per_frame')[
            'predictions'
        ]
    out = {
        'pda_range': [low, max_d],
        'pda': {
            'keyframe': kept(pda['miou']),
            'warp': kept(plain['miou']),
            'per_frame': kept(per_frame_at_distance(pf_preds, clip, max_d)),
        },
        'pda_frames': kept(pda['frames']),
        'pda_distortion': kept(pda['distortion']),
    }
    # FLOPs of one keyframe and one propagated frame, counted by torch (DIS flow runs in
    # OpenCV and is not counted; nor are grid_sample and the final argmax).
    corrected.reset()
    key_gf = gflops(lambda: corrected.step(clip.images[0], 0.0))
    nonkey_gf = gflops(lambda: corrected.step(clip.images[1], 1 / clip.fps))
    key_ms, nonkey_ms = mean_ms(pda['key_ms']), mean_ms(pda['nonkey_ms'])
    out['cost'] = {
        'key_ms_mean': key_ms,
        'nonkey_ms_mean': nonkey_ms,
        'warp_nonkey_ms_mean': mean_ms(plain['nonkey_ms']),
        'key_ms_p50': float(np.median(pda['key_ms'])),
        'nonkey_ms_p50': float(np.median(pda['nonkey_ms'])),
        'warp_nonkey_ms_p50': float(np.median(plain['nonkey_ms'])),
        'key_gflops': key_gf,
        'nonkey_gflops': nonkey_gf,
        'time_ratio': nonkey_ms / key_ms,
        'flops_ratio': nonkey_gf / key_gf if key_gf else None,
        'corrected': corrected.corrects,
    }
    return out


def gflops(fn: Callable[[], object]) -> float:
    """GFLOPs of one call of ``fn`` as counted by torch (convs and matmuls)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops() / 1e9
