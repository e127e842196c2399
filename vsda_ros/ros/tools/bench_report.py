"""The report of ``vsda bench node`` (:func:`vsda_ros.ros.tools.bench_node.run_bench`) from
what it measured: the node's counters summed over cameras, per-camera input and output rates,
latency per frame kind, the strategy's share of a frame (:data:`SEGMENT_STAGES`), output over
input rate with the keyframe interval the node chose, and the human summary
(:func:`print_report`). Plain functions over dicts and diagnostics messages: no rclpy here.
"""

from __future__ import annotations

import numpy as np


def summed_counters(status: dict[str, dict[str, str]], keys: tuple[str, ...]) -> dict[str, float]:
    """The sum over cameras of numeric /diagnostics values (NaN where one is missing)."""
    out = {}
    for k in keys:
        try:
            out[k] = sum(float(v[k]) for v in status.values()) if status else float('nan')
        except (KeyError, ValueError):
            out[k] = float('nan')
    return out


def per_camera(
    first: dict, last: dict, masks: dict[str, int], sent: dict[str, int], duration: float
) -> list[dict]:
    """Per camera (by topic): input and output rate over the measured window as the client saw
    them (frames sent, masks received) and as the node counted them (received, processed,
    dropped over the window)."""
    rows = []
    for topic, v in last.items():
        f = first.get(topic, {})
        delta = {
            k: int(float(v.get(k, 'nan')) - float(f.get(k, 0)))
            if v.get(k) not in (None, 'n/a')
            else None
            for k in ('received', 'processed', 'dropped', 'bad_frames')
        }
        prefix = next((p for p in masks if topic.startswith(p or '/image')), '')
        rows.append(
            {
                'topic': topic,
                'sent_hz': sent.get(prefix, 0) / duration,
                'masks_hz': masks.get(prefix, 0) / duration,
                'node_input_hz': (delta['received'] or 0) / duration,
                'node_output_hz': (delta['processed'] or 0) / duration,
                **delta,
            }
        )
    return rows


#: the strategy's own stages in a timing record (network, flow, warp, head and the pre- and
#: postprocessing around them); the node's overhead is the end-to-end time outside them and the
#: mailbox wait (decode, publish, DDS both ways)
SEGMENT_STAGES = (
    'preprocess',
    'inference',
    'head',
    'flow',
    'warp_correct',
    'fusion',
    'postprocess',
)


def segment_ms(stages: dict[str, float]) -> float:
    """One frame's time in the strategy (ms): the sum of its :data:`SEGMENT_STAGES`."""
    return sum(stages.get(s, 0.0) for s in SEGMENT_STAGES)


def kind_report(
    keys: list[tuple], kinds: dict[tuple, str], per: dict[str, list[float]]
) -> dict[str, dict]:
    """Per frame kind (``key``, ``propagated``, ``pending``, ``reanchored``): frames, and
    end-to-end and strategy ms p50/p95 (``per``: lists aligned with ``keys``)."""
    from vsda_ros.evaluation.metrics import percentiles_ms

    out: dict[str, dict] = {}
    for kind in sorted({kinds.get(k, 'key') for k in keys}):
        idx = [i for i, k in enumerate(keys) if kinds.get(k, 'key') == kind]
        out[kind] = {
            'frames': len(idx),
            'end_to_end_ms': percentiles_ms([per['end_to_end'][i] for i in idx], (50, 95)),
            'segment_ms': percentiles_ms([per['segment'][i] for i in idx], (50, 95)),
        }
    return out


def rate_fields(diags: list, measured_sent: int, masks: int, duration: float, cameras: int) -> dict:
    """Output / input rate over the window, and the keyframe interval the node reported
    (``/diagnostics``, measured window): the last, its median and range, and the last
    ``rate_control`` reason (``None`` for a strategy without keyframes)."""
    intervals, reason = [], None
    for arr in diags:
        for st in arr.status:
            v = {kv.key: kv.value for kv in st.values}
            if 'keyframe_interval' in v:
                intervals.append(int(v['keyframe_interval']))
                reason = v.get('rate_control')
    input_hz = measured_sent / duration if duration > 0 else 0.0
    output_hz = masks / cameras / duration if duration > 0 else 0.0
    return {
        'input_hz': input_hz,
        'output_hz_per_camera': output_hz,
        'output_over_input': output_hz / input_hz if input_hz else float('nan'),
        'keyframe_interval': intervals[-1] if intervals else None,
        'keyframe_interval_median': float(np.median(intervals)) if intervals else None,
        'keyframe_interval_range': [min(intervals), max(intervals)] if intervals else None,
        'rate_control': reason,
    }


def print_report(r: dict) -> None:
    """Human summary of :func:`run_bench`'s report."""
    f = lambda d: f'p50 {d["p50"]:7.1f}  p95 {d["p95"]:7.1f}'  # noqa: E731
    print(
        f'segmentation_node bench: {r["model"]} on {r["frame_size"][0]}x{r["frame_size"][1]} '
        f'frames at {r["rate_hz"]:.0f} Hz for {r["duration_s"]:.0f} s'
    )
    print(f'  end-to-end ms   {f(r["end_to_end_ms"])}')
    print(f'  inference ms    {f(r["inference_ms"])}')
    print(f'  overhead ms     {f(r["overhead_ms"])}   (end-to-end − inference, per frame)')
    print(
        f'   excl. wait ms  {f(r["overhead_excl_queue_wait_ms"])}   (the same without the '
        'mailbox wait)'
    )
    for s, d in r['node_stage_ms'].items():
        print(f'    {s:<11s} ms {f(d)}')
    print(
        f'  received {r["received"]}  processed {r["processed"]}  dropped {r["dropped"]}  '
        f'bad {r["bad_frames"]}  output {r["output_hz"]:.1f} Hz'
    )
    print(
        f'  RSS MB start {r["rss_mb"]["start"]:.1f}  end {r["rss_mb"]["end"]:.1f}  '
        f'growth {r["rss_mb"]["end"] - r["rss_mb"]["start"]:+.1f}  '
        f'peak {r["resources"]["end"]["peak_rss_mb"]:.1f}'
    )
    rs, re_ = r['resources']['start'], r['resources']['end']
    print(f'  fds {rs["fds"]} -> {re_["fds"]}  threads {rs["threads"]} -> {re_["threads"]}')
    if 'node_overhead_ms' in r:
        print(f'  segment ms      {f(r["segment_ms"])}   (the strategy: network, flow, pre/post)')
        print(
            f'  node ovh. ms    {f(r["node_overhead_ms"])}   (end-to-end − wait − segment: '
            'decode, publish, DDS)'
        )
        for kind, d in r['kinds'].items():
            print(
                f'  {kind:<11s} ×{d["frames"]:<4d} end-to-end {f(d["end_to_end_ms"])}   '
                f'segment {f(d["segment_ms"])}'
            )
        print(
            f'  output {r["output_hz_per_camera"]:.2f} Hz of {r["input_hz"]:.2f} Hz per camera '
            f'({r["output_over_input"]:.2f}x)'
        )
        if r.get('keyframe_interval') is not None:
            print(
                f'  keyframe interval {r["keyframe_interval"]} (median '
                f'{r["keyframe_interval_median"]:g}, range {r["keyframe_interval_range"]}): '
                f'{r["rate_control"]}'
            )
    if r.get('cameras', 1) > 1:
        for c in r['per_camera']:
            print(
                f'  camera {c["topic"]}: sent {c["sent_hz"]:.1f} Hz, node in '
                f'{c["node_input_hz"]:.1f} Hz, out {c["node_output_hz"]:.1f} Hz, masks '
                f'{c["masks_hz"]:.1f} Hz, dropped {c["dropped"]}'
            )
    a = r['accounting']
    print(
        f'  totals: sent {a["sent"]}  received {a["received"]} = processed {a["processed"]} '
        f'+ dropped {a["dropped"]} + bad {a["bad_frames"]}: '
        f'{"adds up" if a["adds_up"] else "DOES NOT add up"}'
    )
    print(
        '  targets: '
        + ', '.join(f'{k} {"MET" if v else "NOT met"}' for k, v in r['targets_met'].items())
    )
