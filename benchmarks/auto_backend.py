"""What ``backend: auto`` costs at start-up and gains per frame (docs/design/backends.md).

For each model and input size, in one process with a fresh ``VSDA_CACHE_DIR``:
first build (export + evidence checks + compile), a second build (cache hit), a torch build;
then torch vs the auto choice on one real frame, interleaved (``--repeats`` rounds of
``--iters`` forwards each), the ratio of medians; and OpenVINO compile vs importing the cached
blob of the fused graph. Prints one JSON line per model × size.

    python benchmarks/auto_backend.py --models espnet-camvid,espnetv2-cityscapes \\
        --sizes 480x360,1024x512
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time


def _timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def _speed(segs: dict, x, repeats: int, iters: int) -> dict:
    """Median per-forward ms of each segmenter, interleaved round by round."""
    import torch

    times: dict[str, list[float]] = {k: [] for k in segs}
    with torch.inference_mode():
        for s in segs.values():
            s.logits(x)  # warm-up
        for _ in range(repeats):
            for k, s in segs.items():
                t = time.perf_counter()
                for _ in range(iters):
                    s.logits(x)
                times[k].append((time.perf_counter() - t) / iters * 1e3)
    return {k: statistics.median(v) for k, v in times.items()}


def _blob(seg) -> dict:
    """Compile the fused graph without the blob cache vs import it from the cache (s)."""
    from vsda_ros.inference.backends import CompileOptions, compile_graph
    from vsda_ros.inference.export import cache_root, graph_for

    if seg.backend != 'openvino':
        return {}
    g = graph_for(seg.export_info, seg.backend, seg.precision, 'full')
    _, compile_s = _timed(
        lambda: compile_graph('openvino', seg.precision, g, seg.device, CompileOptions())
    )
    _, import_s = _timed(
        lambda: compile_graph(
            'openvino',
            seg.precision,
            g,
            seg.device,
            CompileOptions(blob_dir=cache_root() / 'openvino'),
        )
    )
    return {'ov_compile_s': compile_s, 'ov_import_blob_s': import_s}


def run_one(name: str, size: tuple[int, int], repeats: int, iters: int) -> dict:
    import numpy as np

    from vsda_ros.data.sources import FrameSource
    from vsda_ros.inference import Segmenter, SegmenterConfig
    from vsda_ros.models.zoo import load_model
    from vsda_ros.paths import data_dir

    os.environ['VSDA_CACHE_DIR'] = tempfile.mkdtemp(prefix='vsda_auto_bench_')
    model = load_model(name, download=False, progress=False)
    auto = SegmenterConfig(input_size=size, backend='auto', precision='auto')
    first, first_s = _timed(lambda: Segmenter(model, auto))
    first.segment(np.zeros((size[1], size[0], 3), np.uint8))  # compile the fused graph
    _, hit_s = _timed(
        lambda: Segmenter(model, auto).segment(np.zeros((size[1], size[0], 3), np.uint8))
    )
    ref, torch_s = _timed(lambda: Segmenter(model, SegmenterConfig(input_size=size)))
    image = next(iter(FrameSource(data_dir() / 'camvid' / 'val'))).image
    x = ref.preprocess(image)
    ms = _speed({'torch': ref, 'auto': first}, x, repeats, iters)
    return {
        'model': name,
        'size': f'{size[0]}x{size[1]}',
        'choice': f'{first.backend}/{first.precision}',
        'reason': first.backend_reason,
        'first_build_s': first_s,
        'cache_hit_build_and_first_frame_s': hit_s,
        'torch_build_s': torch_s,
        'torch_ms': ms['torch'],
        'auto_ms': ms['auto'],
        'speedup': ms['torch'] / ms['auto'],
        **_blob(first),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--models', default='espnet-camvid,espnetv2-cityscapes')
    p.add_argument('--sizes', default='480x360,1024x512')
    p.add_argument('--repeats', type=int, default=5)
    p.add_argument('--iters', type=int, default=3)
    a = p.parse_args()
    import torch

    torch.set_num_threads(2)
    for name in a.models.split(','):
        for s in a.sizes.split(','):
            w, h = (int(v) for v in s.split('x'))
            print(json.dumps(run_one(name, (w, h), a.repeats, a.iters)), flush=True)


if __name__ == '__main__':
    main()
