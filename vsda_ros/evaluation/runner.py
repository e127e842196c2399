"""The ``vsda eval`` runner: strategies × weathers on a clip → ``report.json``, ``report.md``
and PNG plots (the options: :class:`~vsda_ros.evaluation.config.EvalConfig`).

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
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch

from vsda_ros.data.integrity import ReadStats, reading
from vsda_ros.evaluation.config import EvalConfig
from vsda_ros.evaluation.keyframe_studies import adaptive_keyframes, pda_study
from vsda_ros.evaluation.report import (
    agreement,
    compare_cost,
    degrade_clip,
    hit_split,
    markdown,
    run_label,
    run_row,
    weather_mode,
)
from vsda_ros.evaluation.temporal import (
    Clip,
    evaluate_strategy,
    load_clip,
)

if TYPE_CHECKING:
    from vsda_ros.temporal.strategy import Strategy

#: what :func:`run_eval` writes in ``out`` (a failed run removes those it wrote).
REPORT_FILES = (
    'report.json',
    'report.md',
    'strategies.png',
    'pda.png',
    'per_class_iou.png',
    'miou_vs_intensity.png',
    'latency_hist.png',
    'samples.png',
)


class ClipRunner(Protocol):
    """Runs a strategy over a clip outside this process; ``vsda eval --live`` passes one to
    :func:`run_eval` (:class:`vsda_ros.ros.tools.live_eval.LiveRunner`: through a segmentation_node
    over ROS 2). The core never imports the ROS layer: the caller injects it."""

    def run(
        self,
        strategy: str,
        clip: Clip,
        clean_images: list[np.ndarray] | None = None,
        progress: bool = True,
        desc: str = '',
    ) -> dict:
        """The keys of :func:`~vsda_ros.evaluation.temporal.evaluate_strategy`, plus
        ``dropped``."""


def _frames_expected(stats: ReadStats | None, read: int) -> int | None:
    """What the source announced for the pass that was checked (``None``: a video or bag that
    does not say); without a checked pass (a folder, or a pass stopped at ``max_frames``) the
    frames that were read."""
    return stats.frames_expected if stats is not None else read


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
        report['adaptive'] = adaptive_keyframes(
            ev.strategy, ev.clip, cfg.distortion_threshold, ev.interval, runs, cfg.progress
        )
    if ev.pda_range is not None and 'keyframe' in cfg.strategies:
        report.update(
            pda_study(
                ev.strategy,
                ev.clip,
                ev.pda_range,
                ev.clean_predictions.get('per_frame'),
                cfg.progress,
            )
        )
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
        raise ValueError(
            'live evaluation needs a runner (vsda eval --live passes '
            'vsda_ros.ros.tools.live_eval.LiveRunner)'
        )
    if cfg.attach is not None and len(cfg.strategies) != 1:
        raise ValueError(
            '--attach evaluates the running node with its own strategy: give '
            'exactly one --strategy (the one it runs, for the report)'
        )


class _Evaluation:
    """One ``vsda eval`` run: the pipeline, the clip (read once) and the runs over it."""

    def __init__(self, cfg: EvalConfig, runner: ClipRunner | None) -> None:
        from vsda_ros.inference import parse_size
        from vsda_ros.pipeline import PipelineConfig, build_pipeline

        self.cfg, self.runner = cfg, runner
        self.interval, self.pda_range = cfg.intervals()
        self.pipe = build_pipeline(
            PipelineConfig(  # an export folder loads like a name
                model=cfg.model,
                input_size=parse_size(cfg.size),
                device=cfg.device,
                backend=cfg.backend,
                precision=cfg.precision,
                temporal_weights=cfg.temporal_weights,
                progress=cfg.progress,
            )
        )
        with reading(allow_incomplete=cfg.allow_truncated) as reads:
            self.clip = load_clip(
                cfg.source,
                cfg.labels,
                self.pipe.meta,
                cfg.label_map,
                cfg.fps,
                cfg.max_frames,
                topic=cfg.topic,
                allow_unknown_labels=cfg.allow_unknown_labels,
            )
        self.read_stats: ReadStats | None = reads.last
        self.clean_predictions: dict[str, list[np.ndarray]] = {}
        cfg.out.mkdir(parents=True, exist_ok=True)

    def strategy(self, name: str, **kw: Any) -> Strategy:
        """A fresh in-process strategy at the run's interval, flow preset and correction
        (``kw`` overrides :class:`~vsda_ros.temporal.strategy.StrategyConfig` fields)."""
        from vsda_ros.temporal.strategy import StrategyConfig

        kw = {
            'keyframe_interval': self.interval,
            'flow_preset': self.cfg.flow_preset,
            'correction': self.cfg.keyframe_correction,
            **kw,
        }
        return self.pipe.strategy(name, StrategyConfig(**kw))

    def run(self, name: str, wclip: Clip, label: str) -> dict:
        """One strategy over ``wclip``: through the runner when there is one."""
        cfg, clip = self.cfg, self.clip
        if self.runner is not None:
            return self.runner.run(
                name, wclip, clean_images=clip.images, progress=cfg.progress, desc=label
            )
        return evaluate_strategy(
            self.strategy(name), wclip, progress=cfg.progress, desc=label, flow_images=clip.images
        )

    def run_all(self, specs: list) -> tuple[list[dict], dict, dict]:
        """Every (weather, strategy) run: (report rows, ``{(weather, strategy): latency
        samples}``, the ``samples.png`` content)."""
        cfg, clip = self.cfg, self.clip
        n = len(clip.images)
        mid = n // 2  # the sample frame of samples.png
        samples: dict[str, Any] = {
            'index': mid,
            'clean': clip.images[mid],
            'label': clip.labels[mid],
            'rows': [],
        }
        reference: list[np.ndarray] | None = None
        if 'per_frame' not in cfg.strategies:
            reference = evaluate_strategy(
                self.strategy('per_frame'), clip, cfg.progress, 'per_frame reference'
            )['predictions']
        runs, latencies = [], {}
        for spec in specs:
            hits = [False] * n
            wclip = clip
            if spec is not None:
                images, hits = degrade_clip(clip.images, spec, cfg.seed, cfg.weather_temporal)
                wclip = replace(clip, images=images)
            transient = weather_mode(spec) == 'transient'
            # per_frame first (when listed): its clean predictions are every run's reference
            order = sorted(cfg.strategies, key=lambda s: s != 'per_frame')
            for k, name in enumerate(order):
                res = self.run(name, wclip, f'{name} {spec or "clean"}')
                preds = res.pop('predictions')
                samples_ms = latencies[(str(spec or 'clean'), name)] = res.pop('latency_samples')
                if spec is None:
                    self.clean_predictions[name] = preds
                    if name == 'per_frame':
                        reference = preds
                assert reference is not None  # computed above, or per_frame's clean run first
                res.update(agreement(preds, reference, clip.num_classes))
                runs.append(
                    run_row(
                        res,
                        spec,
                        samples_ms,
                        cfg.weather_temporal,
                        hit_split(preds, clip, hits) if transient else None,
                    )
                )
                if k == 0:
                    samples['rows'].append(
                        _sample_row(runs[-1], name, wclip, clip, preds, hits, mid, transient)
                    )
        compare_cost(runs)
        return runs, latencies, samples

    def report(self, runs: list[dict]) -> dict:
        """The report's keys (without ``adaptive`` and the PDA keys) around ``runs``."""
        cfg, clip, stats, seg = self.cfg, self.clip, self.read_stats, self.pipe.segmenter
        n = len(clip.images)
        live = self.runner is not None
        report = {
            'model': self.pipe.meta.name,
            'source': str(cfg.source),
            'topic': cfg.topic,
            'mode': 'live' if live else 'offline',
            'frames': n,
            **(
                {k: runs[0].get(k) for k in ('backend', 'precision')}
                if live
                else {'backend': seg.backend, 'precision': seg.precision}
            ),
            'frames_expected': _frames_expected(stats, n),
            'frames_read': n,
            'input_complete': stats.complete if stats else True,
            'input_problems': list(stats.problems) if stats else [],
            'label_map': cfg.label_map,
            'labelled_frames': sum(x is not None for x in clip.labels),
            'unknown_label_pixels': clip.unknown_label_pixels,
            'temporal_modules': self.pipe.modules.loaded(),
            'keyframe_interval': self.interval,
            'flow_preset': cfg.flow_preset,
            'keyframe_correction': cfg.keyframe_correction,
            'weather_temporal': cfg.weather_temporal,
            'seed': cfg.seed,
            'runs': runs,
        }
        for key in (
            'miou',
            'per_class_iou',
            'tc',
            'agreement',
            'mean_ms',
            'latency_ms',
            'fps',
            'dropped',
        ):
            if key in runs[0]:
                report[key] = runs[0][key]
        return report


def _sample_row(
    run: dict,
    strategy: str,
    wclip: Clip,
    clip: Clip,
    preds: list[np.ndarray],
    hits: list[bool],
    mid: int,
    transient: bool,
) -> dict:
    """A row of ``samples.png``: the middle frame, or for a transient run the hit frame
    nearest to it (with its own clean input and label, and the frame index in the title)."""
    row: dict[str, Any] = {'weather': run_label(run), 'strategy': strategy}
    i = mid
    if transient and any(hits):
        i = min((j for j, h in enumerate(hits) if h), key=lambda j: abs(j - mid))
    if i != mid:
        row.update(clean=clip.images[i], label=clip.labels[i])
    if transient:
        row['weather'] += f' (frame {i}, {"hit" if hits[i] else "not hit"})'
    return {**row, 'image': wclip.images[i], 'prediction': preds[i]}


def _json(v: object) -> int | float | list:
    if isinstance(v, (np.floating, np.integer)):
        return v.item()
    if isinstance(v, torch.Tensor):
        return v.tolist()
    raise TypeError(type(v))
