#!/usr/bin/env python3
"""Keyframe strategies on the fast path: non-key/key cost per backend, flow resolution, and
keyframes in the background (issue 26 items 2 and 3). No ROS; about 3 minutes on 2 cores.

Three tables, all on the CamVid val clip (15 Hz):

1. **non-key/key ratio** — ``keyframe`` (plain warping, interval 5) stepped over the clip for
   each model × backend (torch fp32, openvino fp32, openvino bf16): median whole-step ms of key
   frames and of non-key frames (flow + warp + head + postprocess), their ratio, and the
   non-key stages. Key and non-key frames alternate in one run, so the ratio is robust to load
   on a shared machine; absolute ms are not.
2. **flow resolution** — DIS (``balanced``) at the feature resolution divided by 1, 2, 4
   (timed interleaved on the same frame pairs) and the clip mIoU of ``keyframe`` with it
   (interval 5), plus the background-key simulation (``AsyncKeyframe``,
   ``key_delay_frames = d``) at the delay the measured key cost implies at 15 Hz.
3. **keyframes in the background** — ``AsyncKeyframe`` (real thread) fed at the camera's pace
   (15 Hz) with torch intra-op threads 1 (one per thread: key + foreground) and 2, for torch and
   openvino bf16: per-kind step latency p50/p95 (key / propagated / pending / reanchored), the
   background key's wall time, and whether output kept the camera's pace.

Example (the figures in docs/design/temporal.md, *Real time*)::

    .venv/bin/python benchmarks/nonkey_ratio.py --source $D/camvid/val \\
        --labels $D/camvid/valannot --out runs/nonkey_ratio.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from vsda_ros.evaluation.temporal import Clip, evaluate_strategy, load_clip
from vsda_ros.inference.backends import installed
from vsda_ros.models.zoo import load_model
from vsda_ros.pipeline import Pipeline, PipelineConfig, build_pipeline
from vsda_ros.runtime import tune_allocator
from vsda_ros.temporal.async_keyframe import AsyncKeyframe
from vsda_ros.temporal.flow import DISFlow
from vsda_ros.temporal.keyframe import Keyframe
from vsda_ros.temporal.strategy import StrategyConfig

MODELS = {
    'espnet-camvid': ((480, 360), None),
    'espnetv2-cityscapes': ((1024, 512), 'cityscapes-camvid'),
}
BACKENDS = (('torch', 'fp32'), ('openvino', 'fp32'), ('openvino', 'bf16'))
FPS = 15.0


def pipeline(model: str, backend: str, precision: str) -> Pipeline:
    """The model at its benchmark size on one backend, warmed up twice."""
    size = MODELS[model][0]
    return build_pipeline(
        PipelineConfig(
            model=model,
            input_size=size,
            backend=backend,
            precision=precision,
            download=False,
            progress=False,
            temporal_weights='none',
            warmup=2,
        )
    )


def p50(v: list[float]) -> float | None:
    return float(statistics.median(v)) if v else None


def ratio_run(pipe: Pipeline, images: list[np.ndarray]) -> dict:
    """``keyframe`` (interval 5) over ``images``: median key / non-key step ms and stages."""
    s = Keyframe(pipe.segmenter, StrategyConfig(keyframe_interval=5, correction=False))
    key, nonkey, stages = [], [], {}
    for i, img in enumerate(images):
        t0 = time.perf_counter()
        seg = s.step(img, i / FPS)
        ms = (time.perf_counter() - t0) * 1e3
        if i < 2:
            continue  # the first key and first propagation warm up
        (key if seg.keyframe else nonkey).append(ms)
        if not seg.keyframe:
            for k, v in seg.timings_ms.items():
                stages.setdefault(k, []).append(v)
    k, n = p50(key), p50(nonkey)
    return {
        'key_ms': k,
        'nonkey_ms': n,
        'ratio': n / k,
        'nonkey_stages_ms': {kk: p50(v) for kk, v in stages.items()},
    }


def flow_timing(pipe: Pipeline, images: list[np.ndarray], scales=(1, 2, 4), reps: int = 3) -> dict:
    """DIS ``balanced`` ms (median) on consecutive frame pairs at the feature resolution / k,
    the scales interleaved pair by pair."""
    seg = pipe.segmenter
    with torch.inference_mode():
        x = seg.preprocess(images[0])
        feat = seg.model.forward_features(x)
    smalls = [Keyframe._small_of(seg.preprocess(img), feat) for img in images]
    h, w = smalls[0].shape[:2]
    flows = {k: DISFlow('balanced', None if k == 1 else (w // k, h // k)) for k in scales}
    times: dict[int, list[float]] = {k: [] for k in scales}
    for _ in range(reps):
        for a, b in zip(smalls, smalls[1:], strict=False):
            for k in scales:
                t0 = time.perf_counter()
                flows[k](a, b)
                times[k].append((time.perf_counter() - t0) * 1e3)
    return {'feature_size': f'{w}x{h}', 'ms': {k: p50(v) for k, v in times.items()}}


def miou_runs(pipe: Pipeline, clip: Clip, delays: tuple[int, ...], scales=(1, 2, 4)) -> dict:
    """Clip mIoU of ``keyframe`` (interval 5) per flow downscale, and of the background-key
    simulation (``AsyncKeyframe``, ``key_delay_frames`` = d, flow at the full feature
    resolution) per delay d: deterministic, whatever the load on the machine."""
    cfg = dict(keyframe_interval=5, correction=False)
    out: dict = {'flow_downscale': {}, 'async_delay': {}}
    for k in scales:
        s = Keyframe(pipe.segmenter, StrategyConfig(**cfg), flow_downscale=k)
        out['flow_downscale'][k] = evaluate_strategy(s, clip, progress=False)['miou']
    for d in delays:
        s = AsyncKeyframe(pipe.segmenter, StrategyConfig(**cfg), key_delay_frames=d)
        out['async_delay'][d] = evaluate_strategy(s, clip, progress=False)['miou']
    return out


def paced_run(pipe: Pipeline, images: list[np.ndarray], interval: int = 5) -> dict:
    """``AsyncKeyframe`` (background thread) fed at 15 Hz: per-kind step ms, key wall ms."""
    period = 1.0 / FPS
    kinds: dict[str, list[float]] = {}
    key_bg: list[float] = []
    late = 0
    with AsyncKeyframe(
        pipe.segmenter, StrategyConfig(keyframe_interval=interval, correction=False)
    ) as s:
        t_next = time.perf_counter()
        for i, img in enumerate(images):
            t0 = time.perf_counter()
            seg = s.step(img, i / FPS)
            ms = (time.perf_counter() - t0) * 1e3
            if i > 0:  # frame 0: the stream's in-line key
                kinds.setdefault(seg.kind, []).append(ms)
                late += ms > period * 1e3
            if 'key_background' in seg.timings_ms:
                key_bg.append(seg.timings_ms['key_background'])
            t_next += period
            time.sleep(max(0.0, t_next - time.perf_counter()))
        keys = s.keys_started
    pct = {
        k: {'p50': float(np.percentile(v, 50)), 'p95': float(np.percentile(v, 95)), 'n': len(v)}
        for k, v in kinds.items()
    }
    return {
        'kinds_ms': pct,
        'key_background_ms': p50(key_bg),
        'keys_started': keys,
        'frames_over_period': late,
        'frames': len(images) - 1,
    }


def backends() -> list[tuple[str, str]]:
    return [(b, p) for b, p in BACKENDS if installed(b)]


def part_ratio_and_flow(args: argparse.Namespace, clips: dict[str, Clip]) -> dict:
    """Tables 1 and 2: per model × backend the ratio; per model the flow and mIoU study."""
    out: dict = {}
    for model in args.models:
        images = clips[model].images[: args.ratio_frames]
        res = out.setdefault(model, {'ratio': {}})
        for backend, precision in backends():
            pipe = pipeline(model, backend, precision)
            res['ratio'][f'{backend}/{precision}'] = ratio_run(pipe, images)
            print(model, backend, precision, res['ratio'][f'{backend}/{precision}'], flush=True)
            if (backend, precision) == args.miou_backend:
                res['flow'] = flow_timing(pipe, images)
                if not args.no_miou:
                    res['miou'] = miou_runs(pipe, clips[model], args.delays)
                    res['miou']['backend'] = f'{backend}/{precision}'
                print(model, 'flow', res.get('flow'), 'miou', res.get('miou'), flush=True)
            del pipe
    return out


def part_threads(args: argparse.Namespace, clips: dict[str, Clip], saved: int) -> dict:
    """Table 3: the paced background-key run per model × (torch, openvino bf16) × threads."""
    out: dict = {}
    pairs = [bp for bp in (('torch', 'fp32'), ('openvino', 'bf16')) if installed(bp[0])]
    for model in args.models:
        images = clips[model].images[: args.paced_frames]
        for backend, precision in pairs:
            for threads in (1, 2):
                torch.set_num_threads(threads)  # process-wide; compiled graphs take it now
                pipe = pipeline(model, backend, precision)
                r = paced_run(pipe, images)
                out[f'{model} {backend}/{precision} threads={threads}'] = r
                print(model, backend, precision, threads, r, flush=True)
                del pipe
    torch.set_num_threads(saved)
    return out


def print_tables(res: dict) -> None:
    """The three tables as Markdown."""
    print('\n| model | backend | key ms | non-key ms | non-key/key | non-key stages ms |')
    print('| --- | --- | --- | --- | --- | --- |')
    for model, r in res['models'].items():
        for b, v in r['ratio'].items():
            st = ', '.join(f'{k} {x:.1f}' for k, x in v['nonkey_stages_ms'].items())
            print(
                f'| {model} | {b} | {v["key_ms"]:.1f} | {v["nonkey_ms"]:.1f} | '
                f'{v["ratio"]:.3f} | {st} |'
            )
    print(
        '\n| model | feature grid | DIS ms /1, /2, /4 | mIoU flow /1, /2, /4 | '
        'mIoU background keys, delay d frames |'
    )
    print('| --- | --- | --- | --- | --- |')
    for model, r in res['models'].items():
        if 'flow' not in r:
            continue
        f = r['flow']
        ms = ', '.join(f'{v:.2f}' for v in f['ms'].values())
        m = r.get('miou')
        mi = ', '.join(f'{v:.2f}' for v in m['flow_downscale'].values()) if m else '-'
        am = ', '.join(f'd={d}: {v:.2f}' for d, v in m['async_delay'].items()) if m else '-'
        print(f'| {model} | {f["feature_size"]} | {ms} | {mi} | {am} |')
    print(
        '\n| run (paced at 15 Hz) | kind: p50 / p95 ms (n) | key in background ms | '
        'keys | frames over 66.7 ms |'
    )
    print('| --- | --- | --- | --- | --- |')
    for name, r in res['threads'].items():
        kinds = '; '.join(
            f'{k}: {v["p50"]:.1f} / {v["p95"]:.1f} ({v["n"]})'
            for k, v in sorted(r['kinds_ms'].items())
        )
        kb = r['key_background_ms']
        print(
            f'| {name} | {kinds} | {kb if kb is None else round(kb, 1)} | '
            f'{r["keys_started"]} | {r["frames_over_period"]}/{r["frames"]} |'
        )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0],
        epilog=__doc__.split('\n\n', 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument('--source', required=True, help='labelled frame folder (CamVid val)')
    ap.add_argument('--labels', required=True, help='label folder (CamVid valannot)')
    ap.add_argument('--models', nargs='+', default=list(MODELS), choices=list(MODELS))
    ap.add_argument(
        '--ratio-frames',
        type=int,
        default=22,
        help='frames per ratio run (interval 5: keys at 0, 5, 10, …)',
    )
    ap.add_argument('--paced-frames', type=int, default=46, help='frames per paced run')
    ap.add_argument(
        '--miou-backend',
        default='openvino/fp32',
        help='backend/precision of the flow and mIoU study (torch/fp32 when openvino is missing)',
    )
    ap.add_argument('--no-miou', action='store_true', help='skip the clip mIoU runs')
    ap.add_argument(
        '--delays',
        default='1,2,4',
        help='key delays (frames) of the simulated background keys, comma-separated'
        ' (a key of K ms at 15 Hz lands after ⌈K / 66.7⌉ frames)',
    )
    ap.add_argument('--skip-threads', action='store_true', help='skip table 3')
    ap.add_argument('--out', default=None, help='write the results as JSON here')
    args = ap.parse_args(argv)
    args.miou_backend = tuple(args.miou_backend.split('/'))
    args.delays = tuple(int(d) for d in args.delays.split(','))
    if not installed(args.miou_backend[0]):
        args.miou_backend = ('torch', 'fp32')
    tune_allocator()
    saved = torch.get_num_threads()
    clips = {}
    for model in args.models:
        meta = load_model(model, download=False, progress=False).meta
        clips[model] = load_clip(args.source, args.labels, meta, label_map=MODELS[model][1])
    t0 = time.perf_counter()
    res = {'torch_threads': saved, 'models': part_ratio_and_flow(args, clips)}
    res['threads'] = {} if args.skip_threads else part_threads(args, clips, saved)
    res['seconds'] = time.perf_counter() - t0
    print_tables(res)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)  # runs/ is not in a clone
        with open(args.out, 'w') as fh:
            json.dump(res, fh, indent=1, default=str)
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
