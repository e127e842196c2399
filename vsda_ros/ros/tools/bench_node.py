"""``vsda bench node``: latency, drops and memory of segmentation_node over real DDS.

Starts the node as a subprocess (loopback-only discovery, a domain of its own), publishes real
frames on ``image`` at a fixed rate with ``header.stamp = now``, subscribes to every output, and
reads the node's own ``/diagnostics``. Reports end-to-end latency (receive time of ``mask`` −
header stamp), the node's inference latency, node overhead, drops, and the node's resources
(RSS at the start and end of the measured window and its peak, open file descriptors, threads);
with ``frames`` it is a soak test: that many frames, then the node's totals must add up
(received = processed + dropped + bad_frames). The report's parts and its human summary:
:mod:`vsda_ros.ros.tools.bench_report`.
"""

from __future__ import annotations

import time
from pathlib import Path

from vsda_ros.ros.tools.bench_report import (
    kind_report,
    per_camera,
    rate_fields,
    segment_ms,
    summed_counters,
)
from vsda_ros.ros.tools.launcher import (
    client_node,
    confine_to_loopback,
    node_process,
    prepare_compiled,
)


def _status(pid: int, key: str) -> float:
    """A numeric field of ``/proc/PID/status`` (``VmRSS``, ``VmHWM`` in kB, ``Threads``)."""
    for line in Path(f'/proc/{pid}/status').read_text().splitlines():
        if line.startswith(key + ':'):
            return float(line.split()[1])
    return float('nan')


def _resources(pid: int) -> dict:
    """RSS and peak RSS (MB), open file descriptors and threads of a process."""
    return {
        'rss_mb': _status(pid, 'VmRSS') / 1024.0,
        'peak_rss_mb': _status(pid, 'VmHWM') / 1024.0,
        'fds': len(list(Path(f'/proc/{pid}/fd').iterdir())),
        'threads': int(_status(pid, 'Threads')),
    }


def camera_prefixes(cameras: int) -> list[str]:
    """The topic prefix of each benchmarked camera: ``''`` (the node's own ``image``, ``mask``)
    for one, ``/cam0/`` ... for several. Raises ``ValueError`` below 1."""
    if cameras < 1:
        raise ValueError(f'--cameras must be ≥ 1, got {cameras}')
    return [''] if cameras == 1 else [f'/cam{i}/' for i in range(cameras)]


def run_bench(
    model: str,
    frames_dir: Path,
    rate: float,
    duration: float,
    size: str,
    warmup: float = 5.0,
    max_queue_wait_ms: float = 0.0,
    frames: int | None = None,
    frame_size: tuple[int, int] | None = None,
    progress: bool = False,
    node_params: dict | None = None,
    cameras: int = 1,
) -> dict:
    """Run the benchmark; returns the report dict (see README for keys).

    ``frames``: publish exactly this many frames in the measured window (a soak test;
    ``duration`` is then ``frames / rate``). ``frame_size``: (width, height) to resize the
    published frames to (e.g. 3840×2160 for a 4K camera's memory). Raises ``RuntimeError`` if
    the node does not start or exits during the run. ``node_params``: more node parameters
    (e.g. ``backend``, ``precision``). ``cameras``: that many cameras (``/cam0/image`` ...), each
    published at ``rate``; the report adds ``per_camera`` input/output rates (the latency and
    stage figures are over all cameras).
    """
    prefixes = camera_prefixes(cameras)
    if frames is not None:
        if frames < 1:
            raise ValueError(f'--frames must be ≥ 1, got {frames}')
        duration = frames / rate
    confine_to_loopback()  # network rule, before rclpy starts
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.qos import QoSProfile
    from sensor_msgs.msg import Image

    from vsda_ros.data.sources import FrameSource
    from vsda_ros.evaluation.metrics import percentiles_ms
    from vsda_ros.ros.conversions import numpy_to_image

    images = [f.image for f in FrameSource(frames_dir)]
    if not images:
        raise ValueError(f'no frames in {frames_dir}')
    if frame_size is not None:
        import cv2

        images = [cv2.resize(im, frame_size, interpolation=cv2.INTER_LINEAR) for im in images]
    # Pre-build the messages once: converting a 4K frame per publish would slow the publisher.
    messages = [numpy_to_image(im, None, 'rgb8') for im in images]
    params = {
        'model': model,
        'input_size': size,
        'publish_timing': True,
        'max_queue_wait_ms': float(max_queue_wait_ms),
        **(node_params or {}),
    }
    if cameras > 1:
        params['image_topics'] = [f'{p}image' for p in prefixes]
    prepare_compiled(params)  # a first export would outlast the node's start deadline
    with node_process(params) as proc, client_node('vsda_bench') as (node, executor):
        q = QoSProfile(depth=10)
        pubs = {p: node.create_publisher(Image, f'{p}image', q) for p in prefixes}
        e2e: dict[tuple, float] = {}  # (camera, stamp) → end-to-end ms (mask − stamp)
        stages: dict[tuple, dict] = {}  # (camera, stamp) → the node's stage times
        kinds: dict[tuple, str] = {}  # (camera, stamp) → the frame's kind
        diags: list[DiagnosticArray] = []
        measuring = [False]
        sent_per: dict[str, int] = {p: 0 for p in prefixes}

        def on_mask(cam: str, msg: Image) -> None:
            if measuring[0]:
                sent = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
                key = (cam, msg.header.stamp.sec, msg.header.stamp.nanosec)
                e2e[key] = (node.get_clock().now().nanoseconds * 1e-9 - sent) * 1e3

        def on_timing(cam: str, msg: DiagnosticArray) -> None:
            if measuring[0] and msg.status:
                key = (cam, msg.header.stamp.sec, msg.header.stamp.nanosec)
                stages[key] = {kv.key: float(kv.value) for kv in msg.status[0].values}
                kinds[key] = msg.status[0].message or 'key'  # Segmentation.kind

        subs = []
        for p in prefixes:
            subs.append(
                node.create_subscription(Image, f'{p}mask', lambda m, p=p: on_mask(p, m), q)
            )
            subs += [
                node.create_subscription(Image, f'{p}{n}', lambda _m: None, q)
                for n in ('color_mask', 'overlay', 'confidence')
            ]
            subs.append(
                node.create_subscription(
                    DiagnosticArray, f'{p}timing', lambda m, p=p: on_timing(p, m), q
                )
            )
        subs.append(node.create_subscription(DiagnosticArray, '/diagnostics', diags.append, q))
        deadline = time.monotonic() + 180  # a first start may export the model
        while not all(p.get_subscription_count() for p in pubs.values()):  # node is up
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError('segmentation_node did not start')
            executor.spin_once(timeout_sec=0.1)
        period = 1.0 / rate
        sent = 0
        measured_sent = 0
        rss_start = None
        res_start: dict = {}
        bar = None
        t_start = time.monotonic()
        t_measure = t_start + warmup
        t_end = t_measure + duration
        next_t = t_start
        while True:
            now = time.monotonic()
            if proc.poll() is not None:
                raise RuntimeError(
                    f'segmentation_node exited with code {proc.returncode} during the run'
                )
            if now >= t_end if frames is None else measured_sent >= frames:
                break
            if now >= t_measure and not measuring[0]:
                measuring[0] = True
                res_start = _resources(proc.pid)
                rss_start = res_start['rss_mb']
                diag_start = len(diags)
                if progress:
                    from tqdm import tqdm

                    bar = tqdm(
                        total=frames or round(duration * rate),
                        unit='frame',
                        desc='bench node',
                        leave=False,
                    )
            if now >= next_t:
                msg = messages[sent % len(messages)]
                msg.header.stamp = node.get_clock().now().to_msg()
                msg.header.frame_id = 'camera'
                for p, pub in pubs.items():
                    pub.publish(msg)
                    sent_per[p] += int(measuring[0])
                sent += 1
                if measuring[0]:
                    measured_sent += 1
                    if bar is not None:
                        bar.update(1)
                next_t += period
            executor.spin_once(timeout_sec=max(0.0, min(next_t - time.monotonic(), 0.005)))
        if bar is not None:
            bar.close()
        res_end = _resources(proc.pid)
        rss_end = res_end['rss_mb']
        # Drain: the frame in flight finishes and two diagnostics periods report the totals.
        end = time.monotonic() + 2.5
        while time.monotonic() < end:
            executor.spin_once(timeout_sec=0.05)
        res_end['peak_rss_mb'] = _resources(proc.pid)['peak_rss_mb']

    def by_topic(arr: DiagnosticArray) -> dict[str, dict[str, str]]:
        return {
            v.get('topic', ''): v
            for v in ({kv.key: kv.value for kv in st.values} for st in arr.status)
        }

    last_cams = by_topic(diags[-1]) if diags else {}
    first_cams = by_topic(diags[diag_start - 1]) if diags and diag_start > 0 else {}
    counter_keys = ('received', 'processed', 'dropped', 'bad_frames')
    last = summed_counters(last_cams, counter_keys) if last_cams else {}
    first = summed_counters(first_cams, counter_keys) if first_cams else {}

    def num(d, k):
        try:
            return float(d[k])
        except (KeyError, ValueError):
            return float('nan')

    # Per-frame decomposition: for every frame with both a mask and its timing record,
    # overhead = end-to-end − inference, also without the mailbox wait. (The rest of the
    # overhead, DDS both ways and executor scheduling, is not split out: the node's publish
    # stage also covers the outputs sent after the mask, so a difference would mislead.)
    keys = [k for k in e2e if k in stages]
    per = {
        'end_to_end': [e2e[k] for k in keys],
        'inference': [stages[k].get('inference', stages[k].get('head', 0.0)) for k in keys],
    }
    per['overhead'] = [a - b for a, b in zip(per['end_to_end'], per['inference'], strict=True)]
    per['overhead_excl_queue_wait'] = [
        o - stages[k]['queue_wait'] for o, k in zip(per['overhead'], keys, strict=True)
    ]
    for stage in ('queue_wait', 'decode', 'preprocess', 'postprocess', 'publish'):
        per[stage] = [stages[k].get(stage, 0.0) for k in keys]
    counters = {
        k: int(num(last, k) - (num(first, k) if first else 0))
        for k in ('received', 'processed', 'dropped', 'bad_frames')
    }
    totals = {k: int(num(last, k)) for k in ('received', 'processed', 'dropped', 'bad_frames')}
    accounting = {
        **totals,
        'sent': sent * len(prefixes),  # messages, all cameras
        'adds_up': totals['received']
        == (totals['processed'] + totals['dropped'] + totals['bad_frames']),
    }
    per['segment'] = [segment_ms(stages[k]) for k in keys]
    per['node_overhead'] = [
        e - stages[k].get('queue_wait', 0.0) - g
        for e, k, g in zip(per['end_to_end'], keys, per['segment'], strict=True)
    ]
    ms = {k: percentiles_ms(v, (50, 95)) for k, v in per.items()}
    rates = rate_fields(
        diags[diag_start:] if diags else [], measured_sent, len(e2e), duration, len(prefixes)
    )
    rss = {'start': rss_start, 'end': rss_end}
    # Two readings of the overhead target: all of it, and without the mailbox wait. When the
    # camera outpaces the model a frame waits for the frame in progress (up to one inference
    # time); that wait is what the end-to-end ≤ 1.5 × inference target bounds.
    targets = {
        'overhead_p95_le_10ms': ms['overhead']['p95'] <= 10.0,
        'overhead_excl_queue_wait_p95_le_10ms': ms['overhead_excl_queue_wait']['p95'] <= 10.0,
        'e2e_p95_le_1.5x_inference_p95': ms['end_to_end']['p95'] <= 1.5 * ms['inference']['p95'],
        'rss_growth_le_20mb': (rss_end - rss_start) <= 20.0,
        'output_ge_0.9x_input': rates['output_over_input'] >= 0.9,
    }
    return {
        'model': model,
        'input_size': size,
        'rate_hz': rate,
        'duration_s': duration,
        'max_queue_wait_ms': max_queue_wait_ms,
        'frame_size': [int(images[0].shape[1]), int(images[0].shape[0])],
        'sent': sent,
        'masks_received': len(e2e),
        'frames_matched': len(keys),
        **counters,
        'end_to_end_ms': ms['end_to_end'],
        'inference_ms': ms['inference'],
        'overhead_ms': ms['overhead'],
        'overhead_excl_queue_wait_ms': ms['overhead_excl_queue_wait'],
        'segment_ms': ms['segment'],
        'node_overhead_ms': ms['node_overhead'],
        'kinds': kind_report(keys, kinds, per),
        'node_params': {k: v for k, v in params.items() if k != 'image_topics'},
        **rates,
        'node_stage_ms': {
            s: ms[s] for s in ('queue_wait', 'decode', 'preprocess', 'postprocess', 'publish')
        },
        'output_hz': len(e2e) / duration,
        'rss_mb': rss,
        'targets_met': targets,
        'frames': frames,
        'measured_sent': measured_sent,
        'resources': {'start': res_start, 'end': res_end},
        'accounting': accounting,
        'cameras': cameras,
        'per_camera': per_camera(
            first_cams,
            last_cams,
            {p: sum(1 for k in e2e if k[0] == p) for p in prefixes},
            sent_per,
            duration,
        ),
    }
