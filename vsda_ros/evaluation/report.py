"""``vsda eval``: strategies × weathers on a clip → ``report.json``, ``report.md``, PNG plots.

Report keys (stable, documented in README):
    ``model``, ``source``, ``topic``, ``mode`` (``offline``|``live``), ``frames``,
    ``frames_expected`` (what a video or bag announces; ``null`` when it does not say),
    ``frames_read``, ``input_complete``, ``input_problems`` (damage found; see
    ``--allow-truncated``), ``labelled_frames``, ``label_map``, ``temporal_modules``,
    ``keyframe_interval`` (with ``--interval A..B``: B), ``weather_temporal``, ``seed``,
    ``backend`` and ``precision`` (the inference backend and precision actually used, ``auto``
    resolved: offline this process's; live the node's, as it reports them on ``/diagnostics``,
    also in each live run, ``null`` if it reported none);
    ``runs``: one object per (weather, strategy) with ``strategy``, ``weather`` (``null`` =
    clean, else ``'fog:0.6'``, or ``'transient:rain:0.6:0.3'`` for ``--transient``),
    ``weather_kind``, ``intensity`` (0 = clean), ``weather_mode`` (``'clean'``, ``'temporal'``,
    ``'iid'`` or ``'transient'``), ``miou``,
    ``per_class_iou``, ``pixel_accuracy`` (with labels), ``agreement`` and ``agreement_miou``
    (against ``per_frame`` on the clean frames; always present), ``tc``, ``mean_ms`` (mean
    time per frame: what a frame costs on average, key frames included), ``time_vs_per_frame``
    (``mean_ms`` / the same weather's ``per_frame`` ``mean_ms``; only when ``per_frame`` is
    run), ``latency_ms`` {``p50``, ``p95``, ``p99``}, ``fps``, ``frames``, ``dropped`` (frames
    without an output; 0 offline), ``keyframe_ratio``, ``stage_ms``; transient rows also
    have ``transient_prob`` (the probability that a frame is hit), ``hit_frames`` (how many of
    the ``frames`` were hit) and ``hit_labelled_frames``, and with labels ``miou_hit`` /
    ``miou_unhit`` (mIoU over the labelled frames that were / were not hit; ``null`` when there
    are none), from the same predictions as ``miou``;
    the first run's ``miou``, ``per_class_iou``, ``tc``, ``agreement``, ``mean_ms``,
    ``latency_ms``, ``fps``, ``dropped`` repeated at the top level;
    with keyframe PDA: ``pda_range`` [A, B], ``pda`` {``keyframe``|``warp``|``per_frame``:
    {d: mIoU}} for d = 0 (the keyframe itself) and A … B, ``pda_frames``, ``pda_distortion``
    {d: mean D}, ``cost`` {``key_ms_mean``, ``nonkey_ms_mean``, ``warp_nonkey_ms_mean``,
    ``key_ms_p50``, ``nonkey_ms_p50``, ``warp_nonkey_ms_p50``, ``key_gflops``,
    ``nonkey_gflops``, ``time_ratio`` (non-key / key, of the means), ``flops_ratio``}.

Cost is compared by ``mean_ms``, not by a percentile: a keyframe strategy's p50 is the time of
a propagated frame and hides its key frames, which its mean includes.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from vsda_ros.data.integrity import ReadStats, reading
from vsda_ros.evaluation.metrics import ConfusionMatrix
from vsda_ros.evaluation.temporal import (Clip, evaluate_strategy, load_clip, pda_curve,
                                          per_frame_at_distance)
from vsda_ros.temporal.modules import load_temporal_modules


SWEEP_INTENSITIES = (0.3, 0.6, 0.9)
#: the PDA distances of ``--pda`` with a single ``--interval N``.
DEFAULT_PDA_RANGE = (1, 9)


class ClipRunner(Protocol):
    """Runs a strategy over a clip outside this process; ``vsda eval --live`` passes one to
    :func:`run_eval` (:class:`vsda_ros.ros.live_eval.LiveRunner`: through a segmentation_node
    over ROS 2). The core never imports the ROS layer: the caller injects it."""

    def run(self, strategy: str, clip: Clip, clean_images: list[np.ndarray] | None = None,
            progress: bool = True, desc: str = '') -> dict:
        """The keys of :func:`~vsda_ros.evaluation.temporal.evaluate_strategy`, plus
        ``dropped``."""


@dataclass
class EvalConfig:
    """Options of ``vsda eval`` (see its ``--help``)."""

    model: str
    source: str
    out: Path
    labels: str | None = None
    label_map: str | None = None
    strategies: list[str] = field(default_factory=lambda: ['per_frame', 'fusion', 'keyframe'])
    interval: str = '5'
    temporal_weights: str = ''
    size: str | None = None
    device: str = 'cpu'
    fps: float = 15.0
    max_frames: int | None = None
    pda: bool = False
    flow_preset: str = 'balanced'
    keyframe_correction: bool = False
    distortion_threshold: float = 0.0
    progress: bool = True
    topic: str | None = None
    weathers: list[str] = field(default_factory=list)
    transients: list[str] = field(default_factory=list)
    weather_sweep: bool = False
    weather_temporal: bool = True
    seed: int = 0
    live: bool = False
    rate: float | None = None
    attach: str | None = None
    allow_truncated: bool = False
    backend: str = 'torch'
    precision: str = 'fp32'

    def intervals(self) -> tuple[int, tuple[int, int] | None]:
        """(keyframe interval of the strategy run, PDA distance range (A, B) or ``None``).

        ``'N'``: the strategy runs at interval N; the PDA curve (only with ``pda``) covers
        distances 1 … 9 (:data:`DEFAULT_PDA_RANGE`). ``'A..B'``: the PDA curve covers A … B and
        the strategy runs at interval B, so every frame it propagates is at a distance the curve
        covers. Raises ``ValueError`` on bad text.
        """
        text = str(self.interval).strip()
        parts = text.split('..')
        if len(parts) > 2 or not all(p.strip().isdigit() for p in parts):
            raise ValueError(f'--interval must be N or A..B (integers), got {text!r}')
        if len(parts) == 2:
            a, b = int(parts[0]), int(parts[1])
            if not 1 <= a <= b:
                raise ValueError(f'--interval range must be 1 ≤ A ≤ B, got {text}')
            return b, (a, b)
        n = int(text)
        if n < 1:
            raise ValueError(f'--interval must be ≥ 1, got {n}')
        return n, (DEFAULT_PDA_RANGE if self.pda else None)

    def weather_specs(self) -> list:
        """``[None (clean), WeatherSpec, …, TransientSpec, …]`` in run order (clean, the
        ``--weather`` ones, the sweep, then the ``--transient`` ones, duplicates dropped);
        raises ``ValueError`` on bad text."""
        from vsda_ros.weather import (WEATHER_KINDS, WeatherSpec, parse_transient_list,
                                      parse_weather)
        specs: list = [None]
        for text in self.weathers:
            spec = parse_weather(text)
            if spec not in specs:
                specs.append(spec)
        if self.weather_sweep:
            for kind in WEATHER_KINDS:
                for x in SWEEP_INTENSITIES:
                    spec = WeatherSpec(kind, x)
                    if spec not in specs:
                        specs.append(spec)
        for text in self.transients:
            for spec in parse_transient_list(text):
                if spec not in specs:
                    specs.append(spec)
        return specs


def _frames_expected(stats: ReadStats | None, read: int) -> int | None:
    """What the source announced for the pass that was checked (``None``: a video or bag that
    does not say); without a checked pass (a folder, or a pass stopped at ``max_frames``) the
    frames that were read."""
    return stats.frames_expected if stats is not None else read


def _gflops(fn) -> float:
    from torch.utils.flop_counter import FlopCounterMode
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops() / 1e9


def degrade_clip(images: list[np.ndarray], spec, seed: int, temporal: bool
                 ) -> tuple[list[np.ndarray], list[bool]]:
    """The clip's frames under ``spec``, in order, and which of them were degraded ("hit").

    ``spec`` is a :class:`~vsda_ros.weather.WeatherSpec`: with ``temporal`` its parameters
    evolve smoothly from frame to frame (one :class:`~vsda_ros.weather.WeatherSequence`),
    otherwise every frame is drawn independently; every frame is hit. Or a
    :class:`~vsda_ros.weather.TransientSpec`: a seeded random subset of the frames is hit
    (:class:`~vsda_ros.weather.TransientSequence`; ``temporal`` does not apply), the others
    stay bit-identical.
    """
    from vsda_ros.weather import TransientSequence, TransientSpec, WeatherSequence
    if isinstance(spec, TransientSpec):
        seq = TransientSequence(spec, seed=seed)
        out = [seq(img) for img in images]
        return out, list(seq.hits)
    wseq = WeatherSequence(spec, seed=seed, temporal=temporal)
    return [wseq(img) for img in images], [True] * len(images)


def degrade(images: list[np.ndarray], spec, seed: int, temporal: bool) -> list[np.ndarray]:
    """The clip's frames under ``spec`` (see :func:`degrade_clip`), in order."""
    return degrade_clip(images, spec, seed, temporal)[0]


def weather_mode(spec, temporal: bool = True) -> str:
    """``'clean'`` (``spec`` None), ``'transient'`` (a TransientSpec), else ``'temporal'`` or
    ``'iid'`` by ``temporal``: the ``weather_mode`` of a report row."""
    from vsda_ros.weather import TransientSpec
    if spec is None:
        return 'clean'
    if isinstance(spec, TransientSpec):
        return 'transient'
    return 'temporal' if temporal else 'iid'


def hit_split(preds: list[np.ndarray], clip: Clip, hits: list[bool]) -> dict:
    """The transient keys of a row: ``hit_frames``, ``hit_labelled_frames`` and, when the clip
    has labels, ``miou_hit`` / ``miou_unhit`` in percent (``None`` without labelled frames in
    that group), scored on ``preds`` (label-space masks, one per frame, as the runners return
    them) exactly like ``miou``. No predictions at all (a live run that got no mask) scores
    ``None``.

    Raises:
        ValueError: ``hits``, or non-empty ``preds``, do not have one entry per frame.
    """
    n = len(clip.images)
    if len(hits) != n or len(preds) not in (0, n):
        raise ValueError(f'{len(preds)} predictions and {len(hits)} hits for {n} frames')
    labelled = [i for i in range(n) if clip.labels[i] is not None and preds]
    out = {'hit_frames': int(sum(hits)),
           'hit_labelled_frames': sum(1 for i in range(n)
                                      if clip.labels[i] is not None and hits[i])}
    if all(label is None for label in clip.labels):
        return out
    for key, want in (('miou_hit', True), ('miou_unhit', False)):
        cm = ConfusionMatrix(clip.num_classes, clip.ignore_index)
        frames = [i for i in labelled if hits[i] == want]
        for i in frames:
            cm.update(preds[i], clip.labels[i])
        score = cm.miou() * 100 if frames and cm.matrix.sum() else None
        out[key] = None if score is None or np.isnan(score) else score
    return out


def agreement(preds: list[np.ndarray], reference: list[np.ndarray], num_classes: int) -> dict:
    """How far ``preds`` agree with ``reference`` (the model on the clean frames), in percent.

    ``agreement``: pixels with the same class; ``agreement_miou``: mIoU of ``preds`` scored
    against ``reference`` as if it were the label. Needs no ground truth.
    """
    cm = ConfusionMatrix(num_classes, ignore_index=255)
    for p, r in zip(preds, reference):
        cm.update(p, r)
    return {'agreement': cm.pixel_accuracy() * 100, 'agreement_miou': cm.miou() * 100}


def mean_ms(samples: list[float]) -> float:
    """Mean of per-frame times in ms (NaN when empty): what a frame costs on average."""
    return float(np.mean(samples)) if len(samples) else float('nan')


def run_row(res: dict, spec, latency_samples: list[float], temporal: bool = True,
            transient: dict | None = None) -> dict:
    """One entry of the report's ``runs`` from a runner's result (``predictions`` and
    ``latency_samples`` already taken out of it): the weather keys first (``weather_mode`` by
    ``spec`` and ``temporal``; a transient spec adds ``transient_prob`` and the ``transient``
    keys of :func:`hit_split`), ``dropped``, and ``mean_ms``, the mean of the per-frame total
    times ``latency_samples``."""
    row = {'weather': None if spec is None else str(spec),
           'weather_kind': None if spec is None else spec.kind,
           'intensity': 0.0 if spec is None else spec.intensity,
           'weather_mode': weather_mode(spec, temporal)}
    if row['weather_mode'] == 'transient':
        row['transient_prob'] = spec.prob
        row.update(transient or {})
    return {**row, 'dropped': res.pop('dropped', 0), 'mean_ms': mean_ms(latency_samples),
            **res}


def run_label(run: dict) -> str:
    """How tables and plots name a run's weather: ``'clean'``, ``'fog:0.6'``, or for a
    transient run ``'rain:0.6 transient p0.3'``."""
    if run.get('weather_mode') == 'transient':
        return f"{run['weather_kind']}:{run['intensity']:g} transient p{run['transient_prob']:g}"
    return run['weather'] or 'clean'



def compare_cost(runs: list[dict]) -> None:
    """Add ``time_vs_per_frame`` to each run: its ``mean_ms`` over the ``mean_ms`` of
    ``per_frame`` under the same weather (runs without such a reference are left as they are)."""
    reference = {run['weather']: run['mean_ms'] for run in runs if run['strategy'] == 'per_frame'}
    for run in runs:
        ref = reference.get(run['weather'])
        if ref:
            run['time_vs_per_frame'] = run['mean_ms'] / ref


def run_eval(cfg: EvalConfig, runner: ClipRunner | None = None) -> dict:
    """Evaluate every (weather, strategy) pair and write the report; returns the report dict.

    Runs are ordered clean first, then each weather; within a weather, each strategy. The
    reference of :func:`agreement` is always ``per_frame`` on the clean frames (run offline
    once if it is not among the strategies). With a ``runner`` (``cfg.live``: ``vsda eval
    --live`` injects :class:`vsda_ros.ros.live_eval.LiveRunner`) every run goes through it,
    e.g. a segmentation_node process over ROS 2, instead of the in-process strategy.

    Raises ``ValueError``/``FileNotFoundError`` for bad inputs (unknown strategy or weather,
    missing source, a label map that does not fit the model, ``cfg.live`` without a runner).
    """
    from vsda_ros.inference import Segmenter, SegmenterConfig, parse_size
    from vsda_ros.models.zoo import load_model
    from vsda_ros.temporal.strategy import STRATEGY_NAMES, StrategyConfig, build_strategy

    for s in cfg.strategies:
        if s not in STRATEGY_NAMES:
            raise ValueError(f'unknown strategy {s!r}; available: {", ".join(STRATEGY_NAMES)}')
    if cfg.live and runner is None:
        raise ValueError('live evaluation needs a runner (vsda eval --live passes '
                         'vsda_ros.ros.live_eval.LiveRunner)')
    if cfg.attach is not None and len(cfg.strategies) != 1:
        raise ValueError('--attach evaluates the running node with its own strategy: give '
                         'exactly one --strategy (the one it runs, for the report)')
    specs = cfg.weather_specs()
    interval, pda_range = cfg.intervals()
    from vsda_ros.inference.export import resolve_model
    source_model, export_dir = resolve_model(cfg.model)  # an export folder loads like a name
    model = load_model(source_model, progress=cfg.progress)
    seg = Segmenter(model, SegmenterConfig(
        input_size=parse_size(cfg.size), device=cfg.device, backend=cfg.backend,
        precision=cfg.precision, export_dir=export_dir))
    modules = load_temporal_modules(source_model, cfg.temporal_weights)
    with reading(allow_incomplete=cfg.allow_truncated) as reads:
        clip = load_clip(cfg.source, cfg.labels, model.meta, cfg.label_map, cfg.fps,
                         cfg.max_frames, topic=cfg.topic)
    read_stats = reads.last
    cfg.out.mkdir(parents=True, exist_ok=True)

    def strategy(name: str, **kw):
        kw = {'keyframe_interval': interval, 'flow_preset': cfg.flow_preset,
              'correction': cfg.keyframe_correction, **kw}
        return build_strategy(name, seg, StrategyConfig(**kw), modules)

    def run(name: str, wclip, label: str) -> dict:
        if runner is not None:
            return runner.run(name, wclip, clean_images=clip.images, progress=cfg.progress,
                              desc=label)
        return evaluate_strategy(strategy(name), wclip, progress=cfg.progress, desc=label,
                                 flow_images=clip.images)

    n = len(clip.images)
    mid = n // 2  # the sample frame of samples.png
    samples = {'index': mid, 'clean': clip.images[mid], 'label': clip.labels[mid], 'rows': []}
    reference = None
    if 'per_frame' not in cfg.strategies:
        reference = evaluate_strategy(strategy('per_frame'), clip, cfg.progress,
                                      'per_frame reference')['predictions']
    runs, clean_predictions, latencies = [], {}, {}
    for spec in specs:
        hits = [False] * n
        wclip = clip
        if spec is not None:
            images, hits = degrade_clip(clip.images, spec, cfg.seed, cfg.weather_temporal)
            wclip = replace(clip, images=images)
        transient = weather_mode(spec) == 'transient'
        for k, name in enumerate(cfg.strategies):
            res = run(name, wclip, f"{name} {spec or 'clean'}")
            preds = res.pop('predictions')
            samples_ms = latencies[(str(spec or 'clean'), name)] = res.pop('latency_samples')
            if spec is None:
                clean_predictions[name] = preds
                if name == 'per_frame':
                    reference = preds
            res.update(agreement(preds, reference, clip.num_classes))
            runs.append(run_row(res, spec, samples_ms, cfg.weather_temporal,
                                hit_split(preds, clip, hits) if transient else None))
            if k == 0:
                samples['rows'].append(_sample_row(runs[-1], name, wclip, clip, preds, hits,
                                                   mid, transient))
    compare_cost(runs)
    report = {'model': model.meta.name, 'source': str(cfg.source), 'topic': cfg.topic,
              'mode': 'live' if runner is not None else 'offline', 'frames': n,
              **({k: runs[0].get(k) for k in ('backend', 'precision')} if runner is not None
                 else {'backend': seg.backend, 'precision': seg.precision}),
              'frames_expected': _frames_expected(read_stats, n), 'frames_read': n,
              'input_complete': read_stats.complete if read_stats else True,
              'input_problems': list(read_stats.problems) if read_stats else [],
              'label_map': cfg.label_map, 'labelled_frames': sum(x is not None
                                                                 for x in clip.labels),
              'temporal_modules': modules.loaded(), 'keyframe_interval': interval,
              'flow_preset': cfg.flow_preset, 'keyframe_correction': cfg.keyframe_correction,
              'weather_temporal': cfg.weather_temporal,
              'seed': cfg.seed, 'runs': runs}
    for key in ('miou', 'per_class_iou', 'tc', 'agreement', 'mean_ms', 'latency_ms', 'fps',
                'dropped'):
        if key in runs[0]:
            report[key] = runs[0][key]

    if cfg.distortion_threshold > 0 and 'keyframe' in cfg.strategies:
        report['adaptive'] = _adaptive(strategy, clip, cfg, runs)
    if pda_range is not None and 'keyframe' in cfg.strategies:
        report.update(_pda(strategy, clip, pda_range, clean_predictions.get('per_frame'), cfg))
    (cfg.out / 'report.json').write_text(json.dumps(report, indent=2, default=_json) + '\n')
    (cfg.out / 'report.md').write_text(markdown(report))
    from vsda_ros.evaluation.plots import plot_latency, plot_report, plot_samples
    plot_report(report, cfg.out)
    plot_latency(latencies, cfg.out / 'latency_hist.png')
    plot_samples(samples, clip.palette, cfg.out / 'samples.png')
    return report


def _sample_row(run: dict, strategy: str, wclip: Clip, clip: Clip, preds: list[np.ndarray],
                hits: list[bool], mid: int, transient: bool) -> dict:
    """A row of ``samples.png``: the middle frame, or for a transient run the hit frame
    nearest to it (with its own clean input and label, and the frame index in the title)."""
    row = {'weather': run_label(run), 'strategy': strategy}
    i = mid
    if transient and any(hits):
        i = min((j for j, h in enumerate(hits) if h), key=lambda j: abs(j - mid))
    if i != mid:
        row.update(clean=clip.images[i], label=clip.labels[i])
    if transient:
        row['weather'] += f" (frame {i}, {'hit' if hits[i] else 'not hit'})"
    return {**row, 'image': wclip.images[i], 'prediction': preds[i]}


def _adaptive(strategy, clip, cfg: EvalConfig, runs: list[dict]) -> dict:
    """Adaptive keyframes on the clean clip next to the fixed-interval keyframe run.

    The adaptive run keeps the interval as an upper bound and also makes a keyframe whenever
    DMNet's mean distortion of a propagated frame exceeds ``distortion_threshold``. To compare
    at equal cost, the fixed interval closest to the adaptive run's keyframe ratio is run too.
    """
    adaptive = strategy('keyframe', distortion_threshold=cfg.distortion_threshold)
    if adaptive.dmnet is None:
        raise ValueError('--distortion-threshold needs a trained DMNet (--temporal-weights)')
    res = evaluate_strategy(adaptive, clip, cfg.progress, 'keyframe adaptive')
    res['mean_ms'] = mean_ms(res['latency_samples'])
    keep = ('miou', 'tc', 'keyframe_ratio', 'mean_ms', 'latency_ms')
    fixed = next(r for r in runs if r['weather'] is None and r['strategy'] == 'keyframe')
    matched_n = max(1, round(1 / max(res['keyframe_ratio'], 1e-9)))
    matched = evaluate_strategy(strategy('keyframe', keyframe_interval=matched_n), clip,
                                cfg.progress, f'keyframe every {matched_n}')
    matched['mean_ms'] = mean_ms(matched['latency_samples'])
    return {'threshold': cfg.distortion_threshold,
            'adaptive': {k: res.get(k) for k in keep},
            'fixed': {'interval': cfg.intervals()[0],
                      **{k: fixed.get(k) for k in keep}},
            'fixed_matched': {'interval': matched_n, **{k: matched.get(k) for k in keep}}}


def _pda(strategy, clip, pda_range: tuple[int, int], pf_preds, cfg: EvalConfig) -> dict:
    """The PDA curve (corrected, plain warping, per-frame on the same frames) at distances 0
    (the keyframe itself, the reference) and A … B of ``pda_range``, and the cost.

    Propagating to distance B passes through every distance below it, so the curves are
    computed for 0 … B; the distances below A are left out of the report.
    """
    low, max_d = pda_range

    def kept(curve: dict) -> dict:
        return {d: v for d, v in curve.items() if d == 0 or low <= d <= max_d}

    corrected = strategy('keyframe')
    pda = pda_curve(corrected, clip, max_d, cfg.progress, 'pda keyframe')
    plain = pda_curve(strategy('keyframe', correction=False), clip, max_d, cfg.progress,
                      'pda warp')
    if pf_preds is None:
        pf_preds = evaluate_strategy(strategy('per_frame'), clip, cfg.progress,
                                     'pda per_frame')['predictions']
    out = {'pda_range': [low, max_d],
           'pda': {'keyframe': kept(pda['miou']), 'warp': kept(plain['miou']),
                   'per_frame': kept(per_frame_at_distance(pf_preds, clip, max_d))},
           'pda_frames': kept(pda['frames']), 'pda_distortion': kept(pda['distortion'])}
    # FLOPs of one keyframe and one propagated frame, counted by torch (DIS flow runs in
    # OpenCV and is not counted; nor are grid_sample and the final argmax).
    corrected.reset()
    key_gf = _gflops(lambda: corrected.step(clip.images[0], 0.0))
    nonkey_gf = _gflops(lambda: corrected.step(clip.images[1], 1 / clip.fps))
    key_ms, nonkey_ms = mean_ms(pda['key_ms']), mean_ms(pda['nonkey_ms'])
    out['cost'] = {'key_ms_mean': key_ms, 'nonkey_ms_mean': nonkey_ms,
                   'warp_nonkey_ms_mean': mean_ms(plain['nonkey_ms']),
                   'key_ms_p50': float(np.median(pda['key_ms'])),
                   'nonkey_ms_p50': float(np.median(pda['nonkey_ms'])),
                   'warp_nonkey_ms_p50': float(np.median(plain['nonkey_ms'])),
                   'key_gflops': key_gf, 'nonkey_gflops': nonkey_gf,
                   'time_ratio': nonkey_ms / key_ms,
                   'flops_ratio': nonkey_gf / key_gf if key_gf else None,
                   'corrected': corrected.corrects}
    return out


def _json(v):
    if isinstance(v, (np.floating, np.integer)):
        return v.item()
    if isinstance(v, torch.Tensor):
        return v.tolist()
    raise TypeError(type(v))


def _f(v, nd=2) -> str:
    return 'n/a' if v is None or (isinstance(v, float) and np.isnan(v)) else f'{v:.{nd}f}'


def markdown(r: dict) -> str:
    """The report as Markdown tables."""
    lines = [f"# vsda eval: {r['model']} on {r['source']} ({r['frames']} frames, "
             f"{r['labelled_frames']} labelled, {r['mode']})", '',
             f"Temporal modules: {', '.join(r['temporal_modules']) or 'none (untrained)'}; "
             f"keyframe interval {r['keyframe_interval']}; weather "
             f"{'temporal' if r['weather_temporal'] else 'i.i.d. per frame'}, seed {r['seed']}.",
             *_incomplete_note(r), '',
             '| weather | strategy | mIoU | agreement | TC | mean ms/frame | × per_frame | '
             'latency p50 / p95 / p99 ms | fps | keyframes | dropped |',
             '|---|---|---|---|---|---|---|---|---|---|---|']
    for run in r['runs']:
        lat = run['latency_ms']
        lines.append(f"| {run_label(run)} | {run['strategy']} | "
                     f"{_f(run.get('miou'))} | {_f(run.get('agreement'))} | {_f(run['tc'])} | "
                     f"{_f(run.get('mean_ms'), 1)} | {_f(run.get('time_vs_per_frame'))} | "
                     f"{_f(lat['p50'], 1)} / {_f(lat['p95'], 1)} / {_f(lat['p99'], 1)} | "
                     f"{_f(run['fps'], 1)} | {_f(run['keyframe_ratio'])} | {run['dropped']} |")
    lines += ['', 'Cost is compared by the mean time per frame (key frames included); the '
                  "latency percentiles of a keyframe strategy are mostly its propagated frames'."]
    table = robustness_table(r)
    if table:
        lines += ['', '## Robustness (mIoU, or agreement with clean per-frame without labels)',
                  ''] + table
    table = transient_table(r)
    if table:
        lines += ['', '## Transient degradations (a random subset of frames hit)', ''] + table
    if 'adaptive' in r:
        a = r['adaptive']
        lines += ['', f"## Adaptive keyframes (distortion threshold {a['threshold']})", '',
                  '| keyframes | mIoU | TC | keyframe ratio | mean ms/frame |',
                  '|---|---|---|---|---|']
        for name, row in (('adaptive (interval ≤ ' + str(a['fixed']['interval']) + ')',
                           a['adaptive']),
                          (f"every {a['fixed']['interval']}", a['fixed']),
                          (f"every {a['fixed_matched']['interval']} (matched ratio)",
                           a['fixed_matched'])):
            lines.append(f"| {name} | {_f(row.get('miou'))} | {_f(row.get('tc'))} | "
                         f"{_f(row.get('keyframe_ratio'))} | {_f(row.get('mean_ms'), 1)} |")
    if 'pda' in r:
        ds = list(r['pda']['keyframe'])
        lines += ['', '## Propagation distance (mIoU at distance d from the keyframe)', '',
                  '| d | ' + ' | '.join(str(d) for d in ds) + ' |',
                  '|---|' + '---|' * len(ds)]
        for name, curve in r['pda'].items():
            lines.append(f'| {name} | ' + ' | '.join(_f(curve[d], 1) for d in ds) + ' |')
        c = r['cost']
        lines += ['', '## Cost', '', '| frame | mean ms | median ms | GFLOPs (torch-counted) |',
                  '|---|---|---|---|',
                  f"| key | {_f(c['key_ms_mean'], 1)} | {_f(c['key_ms_p50'], 1)} | "
                  f"{_f(c['key_gflops'])} |",
                  f"| non-key | {_f(c['nonkey_ms_mean'], 1)} | {_f(c['nonkey_ms_p50'], 1)} | "
                  f"{_f(c['nonkey_gflops'])} |",
                  f"| non-key, plain warp | {_f(c['warp_nonkey_ms_mean'], 1)} | "
                  f"{_f(c['warp_nonkey_ms_p50'], 1)} | |", '',
                  f"Non-key/key time ratio (means) {_f(c['time_ratio'], 3)}, FLOPs ratio "
                  f"{_f(c['flops_ratio'], 3)}."]
    return '\n'.join(lines) + '\n'


def _incomplete_note(r: dict) -> list[str]:
    """A Markdown line when the input was incomplete (``--allow-truncated``), else nothing."""
    if r.get('input_complete', True):
        return []
    problems = '; '.join(r.get('input_problems') or [])
    return ['', f"**Incomplete input:** {r.get('frames_read')} of {r.get('frames_expected')} "
                f"frames read{': ' + problems if problems else ''}."]


def robustness_table(r: dict) -> list[str]:
    """Rows weather (:func:`run_label`: 'fog:0.6', 'rain:0.6 transient p0.3') × columns
    strategy (Markdown lines); [] with no weather runs."""
    if all(run['weather'] is None for run in r['runs']):
        return []
    key = 'miou' if r['runs'][0].get('miou') is not None else 'agreement'
    strategies = list(dict.fromkeys(run['strategy'] for run in r['runs']))
    cell = {(run_label(run), run['strategy']): run.get(key) for run in r['runs']}
    weathers = list(dict.fromkeys(run_label(run) for run in r['runs']))
    lines = ['| weather | ' + ' | '.join(strategies) + ' |',
             '|---|' + '---|' * len(strategies)]
    for w in weathers:
        lines.append(f'| {w} | ' + ' | '.join(_f(cell.get((w, s))) for s in strategies) + ' |')
    return lines


def transient_table(r: dict) -> list[str]:
    """The transient runs (Markdown lines; [] without any): per run the frames hit and the
    metric over all frames, over the hit and over the un-hit labelled frames, next to the
    same strategy's clean run."""
    rows = [run for run in r['runs'] if run.get('weather_mode') == 'transient']
    if not rows:
        return []
    clean = {run['strategy']: run for run in r['runs'] if run['weather'] is None}
    if rows[0].get('miou') is None:
        lines = ['| weather | strategy | frames hit | agreement | clean agreement |',
                 '|---|---|---|---|---|']
        for run in rows:
            lines.append(f"| {run_label(run)} | {run['strategy']} | "
                         f"{run['hit_frames']}/{run['frames']} | {_f(run.get('agreement'))} | "
                         f"{_f(clean.get(run['strategy'], {}).get('agreement'))} |")
        return lines
    lines = ['| weather | strategy | frames hit (labelled) | mIoU | mIoU hit | mIoU not hit | '
             'clean mIoU |', '|---|---|---|---|---|---|---|']
    for run in rows:
        lines.append(f"| {run_label(run)} | {run['strategy']} | {run['hit_frames']}/"
                     f"{run['frames']} ({run['hit_labelled_frames']}) | {_f(run.get('miou'))} | "
                     f"{_f(run.get('miou_hit'))} | {_f(run.get('miou_unhit'))} | "
                     f"{_f(clean.get(run['strategy'], {}).get('miou'))} |")
    return lines
