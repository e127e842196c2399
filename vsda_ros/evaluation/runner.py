"""The ``vsda eval`` runner: strategies × weathers on a clip → ``report.json``, ``report.md``
and PNG plots.

The report's keys are documented in :mod:`vsda_ros.evaluation.report` (which also builds its
rows and Markdown); this module runs them: it loads the pipeline and the clip, runs every
(weather, strategy) pair in process or through an injected :class:`ClipRunner` (``vsda eval
--live``: :class:`vsda_ros.ros.tools.live_eval.LiveRunner`, which the command imports only
when it runs; this module never imports the ROS layer), and writes the report and the plots.
The command line is :mod:`vsda_ros.apps.eval`.

Cost is compared by ``mean_ms``, not by a percentile: a keyframe strategy's p50 is the time of
a propagated frame and hides its key frames, which its mean includes.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from vsda_ros.data.integrity import ReadStats, reading
from vsda_ros.evaluation.report import (
    agreement,
    compare_cost,
    degrade_clip,
    hit_split,
    markdown,
    mean_ms,
    run_label,
    run_row,
    weather_mode,
)
from vsda_ros.evaluation.temporal import (
    Clip,
    evaluate_strategy,
    load_clip,
    pda_curve,
    per_frame_at_distance,
)

SWEEP_INTENSITIES = (0.3, 0.6, 0.9)
#: the PDA distances of ``--pda`` with a single ``--interval N``.
DEFAULT_PDA_RANGE = (1, 9)
#: what :func:`run_eval` writes in ``out`` (a failed run removes those it wrote).
REPORT_FILES = ('report.json', 'report.md', 'strategies.png', 'pda.png', 'per_class_iou.png',
                'miou_vs_intensity.png', 'latency_hist.png', 'samples.png')

class ClipRunner(Protocol):
    """Runs a strategy over a clip outside this process; ``vsda eval --live`` passes one to
    :func:`run_eval` (:class:`vsda_ros.ros.tools.live_eval.LiveRunner`: through a segmentation_node
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
    allow_unknown_labels: bool = False

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
        from vsda_ros.weather import (
            WEATHER_KINDS,
            WeatherSpec,
            parse_transient_list,
            parse_weather,
        )
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


def run_eval(cfg: EvalConfig, runner: ClipRunner | None = None) -> dict:
    """Evaluate every (weather, strategy) pair and write the report; returns the report dict.

    Runs are ordered clean first, then each weather; within a weather, each strategy. The
    reference of :func:`agreement` is always ``per_frame`` on the clean frames (run offline
    once if it is not among the strategies). With a ``runner`` (``cfg.live``: ``vsda eval
    --live`` injects :class:`vsda_ros.ros.tools.live_eval.LiveRunner`) every run goes through
    it, e.g. a segmentation_node process over ROS 2, instead of the in-process strategy.

    Label ids that are neither a class nor an ignore value are an error
    (:class:`~vsda_ros.evaluation.metrics.LabelError` naming the frame, the label folder and
    the values) unless ``cfg.allow_unknown_labels``: then they are scored as ignored and the
    report counts them (``unknown_label_pixels``). A run that fails removes the report files
    it wrote and the folders it created (when empty).

    Raises ``ValueError``/``FileNotFoundError`` for bad inputs (unknown strategy or weather,
    missing source, a label map that does not fit the model, ``cfg.live`` without a runner,
    unknown label ids), ``OSError`` when ``cfg.out`` cannot be written.
    """
    _check(cfg, runner)
    specs = cfg.weather_specs()
    out = Path(cfg.out)
    created = [p for p in (out, *out.parents) if not p.exists()]  # deepest first
    started = time.time()
    try:
        return _evaluate(cfg, runner, specs)
    except BaseException:
        _take_back(out, created, started)
        raise


def _take_back(out: Path, created: list[Path], started: float) -> None:
    """Remove the :data:`REPORT_FILES` written in ``out`` since ``started`` and the folders
    of ``created`` that are empty."""
    for name in REPORT_FILES:
        f = out / name
        try:
            if f.is_file() and f.stat().st_mtime >= started:
                f.unlink()
        except OSError:
            pass
    for d in created:
        try:
            d.rmdir()
        except OSError:  # not empty, or never made
            pass


def _evaluate(cfg: EvalConfig, runner: ClipRunner | None, specs: list) -> dict:
    """:func:`run_eval` without the clean-up."""
    ev = _Evaluation(cfg, runner)
    runs, latencies, samples = ev.run_all(specs)
    report = ev.report(runs)
    if cfg.distortion_threshold > 0 and 'keyframe' in cfg.strategies:
        report['adaptive'] = _adaptive(ev.strategy, ev.clip, cfg, runs)
    if ev.pda_range is not None and 'keyframe' in cfg.strategies:
        report.update(_pda(ev.strategy, ev.clip, ev.pda_range,
                           ev.clean_predictions.get('per_frame'), cfg))
    (cfg.out / 'report.json').write_text(json.dumps(report, indent=2, default=_json) + '\n')
    (cfg.out / 'report.md').write_text(markdown(report))
    from vsda_ros.evaluation.plots import plot_latency, plot_report, plot_samples
    plot_report(report, cfg.out)
    plot_latency(latencies, cfg.out / 'latency_hist.png')
    plot_samples(samples, ev.clip.palette, cfg.out / 'samples.png')
    return report


def _check(cfg: EvalConfig, runner: ClipRunner | None) -> None:
    """``ValueError`` for an unknown strategy, ``live`` without a runner, or ``attach`` with
    more than one strategy."""
    from vsda_ros.temporal.strategy import STRATEGY_NAMES

    for s in cfg.strategies:
        if s not in STRATEGY_NAMES:
            raise ValueError(f'unknown strategy {s!r}; available: {", ".join(STRATEGY_NAMES)}')
    if cfg.live and runner is None:
        raise ValueError('live evaluation needs a runner (vsda eval --live passes '
                         'vsda_ros.ros.tools.live_eval.LiveRunner)')
    if cfg.attach is not None and len(cfg.strategies) != 1:
        raise ValueError('--attach evaluates the running node with its own strategy: give '
                         'exactly one --strategy (the one it runs, for the report)')


class _Evaluation:
    """One ``vsda eval`` run: the pipeline, the clip (read once) and the runs over it."""

    def __init__(self, cfg: EvalConfig, runner: ClipRunner | None) -> None:
        from vsda_ros.inference import parse_size
        from vsda_ros.pipeline import PipelineConfig, build_pipeline

        self.cfg, self.runner = cfg, runner
        self.interval, self.pda_range = cfg.intervals()
        self.pipe = build_pipeline(PipelineConfig(  # an export folder loads like a name
            model=cfg.model, input_size=parse_size(cfg.size), device=cfg.device,
            backend=cfg.backend, precision=cfg.precision,
            temporal_weights=cfg.temporal_weights, progress=cfg.progress))
        with reading(allow_incomplete=cfg.allow_truncated) as reads:
            self.clip = load_clip(cfg.source, cfg.labels, self.pipe.meta, cfg.label_map,
                                  cfg.fps, cfg.max_frames, topic=cfg.topic,
                                  allow_unknown_labels=cfg.allow_unknown_labels)
        self.read_stats: ReadStats | None = reads.last
        self.clean_predictions: dict[str, list[np.ndarray]] = {}
        cfg.out.mkdir(parents=True, exist_ok=True)

    def strategy(self, name: str, **kw):
        """A fresh in-process strategy at the run's interval, flow preset and correction
        (``kw`` overrides :class:`~vsda_ros.temporal.strategy.StrategyConfig` fields)."""
        from vsda_ros.temporal.strategy import StrategyConfig

        kw = {'keyframe_interval': self.interval, 'flow_preset': self.cfg.flow_preset,
              'correction': self.cfg.keyframe_correction, **kw}
        return self.pipe.strategy(name, StrategyConfig(**kw))

    def run(self, name: str, wclip: Clip, label: str) -> dict:
        """One strategy over ``wclip``: through the runner when there is one."""
        cfg, clip = self.cfg, self.clip
        if self.runner is not None:
            return self.runner.run(name, wclip, clean_images=clip.images,
                                   progress=cfg.progress, desc=label)
        return evaluate_strategy(self.strategy(name), wclip, progress=cfg.progress, desc=label,
                                 flow_images=clip.images)

    def run_all(self, specs: list) -> tuple[list[dict], dict, dict]:
        """Every (weather, strategy) run: (report rows, ``{(weather, strategy): latency
        samples}``, the ``samples.png`` content)."""
        cfg, clip = self.cfg, self.clip
        n = len(clip.images)
        mid = n // 2  # the sample frame of samples.png
        samples = {'index': mid, 'clean': clip.images[mid], 'label': clip.labels[mid],
                   'rows': []}
        reference = None
        if 'per_frame' not in cfg.strategies:
            reference = evaluate_strategy(self.strategy('per_frame'), clip, cfg.progress,
                                          'per_frame reference')['predictions']
        runs, latencies = [], {}
        for spec in specs:
            hits = [False] * n
            wclip = clip
            if spec is not None:
                images, hits = degrade_clip(clip.images, spec, cfg.seed, cfg.weather_temporal)
                wclip = replace(clip, images=images)
            transient = weather_mode(spec) == 'transient'
            for k, name in enumerate(cfg.strategies):
                res = self.run(name, wclip, f"{name} {spec or 'clean'}")
                preds = res.pop('predictions')
                samples_ms = latencies[(str(spec or 'clean'), name)] = res.pop('latency_samples')
                if spec is None:
                    self.clean_predictions[name] = preds
                    if name == 'per_frame':
                        reference = preds
                res.update(agreement(preds, reference, clip.num_classes))
                runs.append(run_row(res, spec, samples_ms, cfg.weather_temporal,
                                    hit_split(preds, clip, hits) if transient else None))
                if k == 0:
                    samples['rows'].append(_sample_row(runs[-1], name, wclip, clip, preds,
                                                       hits, mid, transient))
        compare_cost(runs)
        return runs, latencies, samples

    def report(self, runs: list[dict]) -> dict:
        """The report's keys (without ``adaptive`` and the PDA keys) around ``runs``."""
        cfg, clip, stats, seg = self.cfg, self.clip, self.read_stats, self.pipe.segmenter
        n = len(clip.images)
        live = self.runner is not None
        report = {'model': self.pipe.meta.name, 'source': str(cfg.source), 'topic': cfg.topic,
                  'mode': 'live' if live else 'offline', 'frames': n,
                  **({k: runs[0].get(k) for k in ('backend', 'precision')} if live
                     else {'backend': seg.backend, 'precision': seg.precision}),
                  'frames_expected': _frames_expected(stats, n), 'frames_read': n,
                  'input_complete': stats.complete if stats else True,
                  'input_problems': list(stats.problems) if stats else [],
                  'label_map': cfg.label_map,
                  'labelled_frames': sum(x is not None for x in clip.labels),
                  'unknown_label_pixels': clip.unknown_label_pixels,
                  'temporal_modules': self.pipe.modules.loaded(),
                  'keyframe_interval': self.interval,
                  'flow_preset': cfg.flow_preset, 'keyframe_correction': cfg.keyframe_correction,
                  'weather_temporal': cfg.weather_temporal,
                  'seed': cfg.seed, 'runs': runs}
        for key in ('miou', 'per_class_iou', 'tc', 'agreement', 'mean_ms', 'latency_ms', 'fps',
                    'dropped'):
            if key in runs[0]:
                report[key] = runs[0][key]
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
