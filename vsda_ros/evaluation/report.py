"""The ``vsda eval`` report: its rows (weather keys, agreement, hit split, cost comparison) and
its Markdown tables. The runner that fills it is :mod:`vsda_ros.evaluation.runner`; the plots are
:mod:`vsda_ros.evaluation.plots`.

Report keys (stable, documented in README):
    ``model``, ``source``, ``topic``, ``mode`` (``offline``|``live``), ``frames``,
    ``frames_expected`` (what a video or bag announces; ``null`` when it does not say),
    ``frames_read``, ``input_complete``, ``input_problems`` (damage found; see
    ``--allow-truncated``), ``labelled_frames``, ``unknown_label_pixels`` (label pixels with an
    id that is neither a class nor an ignore value, scored as ignored; non-zero only with
    ``--allow-unknown-labels``), ``label_map``, ``temporal_modules``,
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

from typing import TYPE_CHECKING, cast

import numpy as np

from vsda_ros.evaluation.metrics import ConfusionMatrix
from vsda_ros.evaluation.temporal import Clip

if TYPE_CHECKING:
    from vsda_ros.weather import TransientSpec, WeatherSpec


def degrade_clip(
    images: list[np.ndarray], spec: WeatherSpec | TransientSpec, seed: int, temporal: bool
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


def degrade(
    images: list[np.ndarray], spec: WeatherSpec | TransientSpec, seed: int, temporal: bool
) -> list[np.ndarray]:
    """The clip's frames under ``spec`` (see :func:`degrade_clip`), in order."""
    return degrade_clip(images, spec, seed, temporal)[0]


def weather_mode(spec: WeatherSpec | TransientSpec | None, temporal: bool = True) -> str:
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
    out: dict[str, float | None] = {
        'hit_frames': int(sum(hits)),
        'hit_labelled_frames': sum(1 for i in range(n) if clip.labels[i] is not None and hits[i]),
    }
    if all(label is None for label in clip.labels):
        return out
    for key, want in (('miou_hit', True), ('miou_unhit', False)):
        cm = clip.confusion_matrix()  # the clip's ignore rule and unknown-id policy
        frames = [i for i in labelled if hits[i] == want]
        for i in frames:
            label = clip.labels[i]
            if label is not None:  # always: ``labelled`` holds only labelled frames
                cm.update(preds[i], label)
        score = cm.miou() * 100 if frames and cm.matrix.sum() else None
        out[key] = None if score is None or np.isnan(score) else score
    return out


def agreement(preds: list[np.ndarray], reference: list[np.ndarray], num_classes: int) -> dict:
    """How far ``preds`` agree with ``reference`` (the model on the clean frames), in percent.

    ``agreement``: pixels with the same class; ``agreement_miou``: mIoU of ``preds`` scored
    against ``reference`` as if it were the label. Needs no ground truth.
    """
    cm = ConfusionMatrix(num_classes, ignore_index=255)
    for p, r in zip(preds, reference, strict=False):
        cm.update(p, r)
    return {'agreement': cm.pixel_accuracy() * 100, 'agreement_miou': cm.miou() * 100}


def mean_ms(samples: list[float]) -> float:
    """Mean of per-frame times in ms (NaN when empty): what a frame costs on average."""
    return float(np.mean(samples)) if len(samples) else float('nan')


def run_row(
    res: dict,
    spec: WeatherSpec | TransientSpec | None,
    latency_samples: list[float],
    temporal: bool = True,
    transient: dict | None = None,
) -> dict:
    """One entry of the report's ``runs`` from a runner's result (``predictions`` and
    ``latency_samples`` already taken out of it): the weather keys first (``weather_mode`` by
    ``spec`` and ``temporal``; a transient spec adds ``transient_prob`` and the ``transient``
    keys of :func:`hit_split`), ``dropped``, and ``mean_ms``, the mean of the per-frame total
    times ``latency_samples``."""
    row = {
        'weather': None if spec is None else str(spec),
        'weather_kind': None if spec is None else spec.kind,
        'intensity': 0.0 if spec is None else spec.intensity,
        'weather_mode': weather_mode(spec, temporal),
    }
    if row['weather_mode'] == 'transient':
        row['transient_prob'] = cast('TransientSpec', spec).prob  # weather_mode says so
        row.update(transient or {})
    return {**row, 'dropped': res.pop('dropped', 0), 'mean_ms': mean_ms(latency_samples), **res}


def run_label(run: dict) -> str:
    """How tables and plots name a run's weather: ``'clean'``, ``'fog:0.6'``, or for a
    transient run ``'rain:0.6 transient p0.3'``."""
    if run.get('weather_mode') == 'transient':
        return f'{run["weather_kind"]}:{run["intensity"]:g} transient p{run["transient_prob"]:g}'
    return run['weather'] or 'clean'


def compare_cost(runs: list[dict]) -> None:
    """Add ``time_vs_per_frame`` to each run: its ``mean_ms`` over the ``mean_ms`` of
    ``per_frame`` under the same weather (runs without such a reference are left as they are)."""
    reference = {run['weather']: run['mean_ms'] for run in runs if run['strategy'] == 'per_frame'}
    for run in runs:
        ref = reference.get(run['weather'])
        if ref:
            run['time_vs_per_frame'] = run['mean_ms'] / ref


def _f(v: float | None, nd: int = 2) -> str:
    return 'n/a' if v is None or (isinstance(v, float) and np.isnan(v)) else f'{v:.{nd}f}'


def markdown(r: dict) -> str:
    """The report as Markdown tables."""
    lines = [
        f'# vsda eval: {r["model"]} on {r["source"]} ({r["frames"]} frames, '
        f'{r["labelled_frames"]} labelled, {r["mode"]})',
        '',
        f'Temporal modules: {", ".join(r["temporal_modules"]) or "none (untrained)"}; '
        f'keyframe interval {r["keyframe_interval"]}; weather '
        f'{"temporal" if r["weather_temporal"] else "i.i.d. per frame"}, seed {r["seed"]}.',
        *_incomplete_note(r),
        '',
        '| weather | strategy | mIoU | agreement | TC | mean ms/frame | × per_frame | '
        'latency p50 / p95 / p99 ms | fps | keyframes | dropped |',
        '|---|---|---|---|---|---|---|---|---|---|---|',
    ]
    for run in r['runs']:
        lat = run['latency_ms']
        lines.append(
            f'| {run_label(run)} | {run["strategy"]} | '
            f'{_f(run.get("miou"))} | {_f(run.get("agreement"))} | {_f(run["tc"])} | '
            f'{_f(run.get("mean_ms"), 1)} | {_f(run.get("time_vs_per_frame"))} | '
            f'{_f(lat["p50"], 1)} / {_f(lat["p95"], 1)} / {_f(lat["p99"], 1)} | '
            f'{_f(run["fps"], 1)} | {_f(run["keyframe_ratio"])} | {run["dropped"]} |'
        )
    lines += [
        '',
        'Cost is compared by the mean time per frame (key frames included); the '
        "latency percentiles of a keyframe strategy are mostly its propagated frames'.",
    ]
    table = robustness_table(r)
    if table:
        lines += [
            '',
            '## Robustness (mIoU, or agreement with clean per-frame without labels)',
            '',
        ] + table
    table = transient_table(r)
    if table:
        lines += ['', '## Transient degradations (a random subset of frames hit)', ''] + table
    if 'adaptive' in r:
        a = r['adaptive']
        lines += [
            '',
            f'## Adaptive keyframes (distortion threshold {a["threshold"]})',
            '',
            '| keyframes | mIoU | TC | keyframe ratio | mean ms/frame |',
            '|---|---|---|---|---|',
        ]
        for name, row in (
            ('adaptive (interval ≤ ' + str(a['fixed']['interval']) + ')', a['adaptive']),
            (f'every {a["fixed"]["interval"]}', a['fixed']),
            (f'every {a["fixed_matched"]["interval"]} (matched ratio)', a['fixed_matched']),
        ):
            lines.append(
                f'| {name} | {_f(row.get("miou"))} | {_f(row.get("tc"))} | '
                f'{_f(row.get("keyframe_ratio"))} | {_f(row.get("mean_ms"), 1)} |'
            )
    if 'pda' in r:
        ds = list(r['pda']['keyframe'])
        lines += [
            '',
            '## Propagation distance (mIoU at distance d from the keyframe)',
            '',
            '| d | ' + ' | '.join(str(d) for d in ds) + ' |',
            '|---|' + '---|' * len(ds),
        ]
        for name, curve in r['pda'].items():
            lines.append(f'| {name} | ' + ' | '.join(_f(curve[d], 1) for d in ds) + ' |')
        c = r['cost']
        lines += [
            '',
            '## Cost',
            '',
            '| frame | mean ms | median ms | GFLOPs (torch-counted) |',
            '|---|---|---|---|',
            f'| key | {_f(c["key_ms_mean"], 1)} | {_f(c["key_ms_p50"], 1)} | '
            f'{_f(c["key_gflops"])} |',
            f'| non-key | {_f(c["nonkey_ms_mean"], 1)} | {_f(c["nonkey_ms_p50"], 1)} | '
            f'{_f(c["nonkey_gflops"])} |',
            f'| non-key, plain warp | {_f(c["warp_nonkey_ms_mean"], 1)} | '
            f'{_f(c["warp_nonkey_ms_p50"], 1)} | |',
            '',
            f'Non-key/key time ratio (means) {_f(c["time_ratio"], 3)}, FLOPs ratio '
            f'{_f(c["flops_ratio"], 3)}.',
        ]
    return '\n'.join(lines) + '\n'


def _incomplete_note(r: dict) -> list[str]:
    """A Markdown line when the input was incomplete (``--allow-truncated``), else nothing."""
    if r.get('input_complete', True):
        return []
    problems = '; '.join(r.get('input_problems') or [])
    return [
        '',
        f'**Incomplete input:** {r.get("frames_read")} of {r.get("frames_expected")} '
        f'frames read{": " + problems if problems else ""}.',
    ]


def robustness_table(r: dict) -> list[str]:
    """Rows weather (:func:`run_label`: 'fog:0.6', 'rain:0.6 transient p0.3') × columns
    strategy (Markdown lines); [] with no weather runs."""
    if all(run['weather'] is None for run in r['runs']):
        return []
    key = 'miou' if r['runs'][0].get('miou') is not None else 'agreement'
    strategies = list(dict.fromkeys(run['strategy'] for run in r['runs']))
    cell = {(run_label(run), run['strategy']): run.get(key) for run in r['runs']}
    weathers = list(dict.fromkeys(run_label(run) for run in r['runs']))
    lines = ['| weather | ' + ' | '.join(strategies) + ' |', '|---|' + '---|' * len(strategies)]
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
        lines = [
            '| weather | strategy | frames hit | agreement | clean agreement |',
            '|---|---|---|---|---|',
        ]
        for run in rows:
            lines.append(
                f'| {run_label(run)} | {run["strategy"]} | '
                f'{run["hit_frames"]}/{run["frames"]} | {_f(run.get("agreement"))} | '
                f'{_f(clean.get(run["strategy"], {}).get("agreement"))} |'
            )
        return lines
    lines = [
        '| weather | strategy | frames hit (labelled) | mIoU | mIoU hit | mIoU not hit | '
        'clean mIoU |',
        '|---|---|---|---|---|---|---|',
    ]
    for run in rows:
        lines.append(
            f'| {run_label(run)} | {run["strategy"]} | {run["hit_frames"]}/'
            f'{run["frames"]} ({run["hit_labelled_frames"]}) | {_f(run.get("miou"))} | '
            f'{_f(run.get("miou_hit"))} | {_f(run.get("miou_unhit"))} | '
            f'{_f(clean.get(run["strategy"], {}).get("miou"))} |'
        )
    return lines
