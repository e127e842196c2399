"""Does float16 storage change a shipped model? Full-precision checkpoint vs its packed file.

Runs each strategy over the CamVid val clip at 480×360 with the float32 checkpoints a
``vsda models build`` run wrote (``WORK/<step>.pt``) and with the packed shipped file
(``vsda_ros/zoo/…``, float16 weights loaded as float32), and prints mIoU of both and the share
of pixels whose label agrees.

    .venv/bin/python benchmarks/fp16_storage_check.py --work runs/zoo_build
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch


def cases(work: str) -> dict[str, tuple[str, str, str, str | None]]:
    """shipped file → (model for float32, temporal weights for float32, model for float16, label
    map), from the packing recipe (``PACKS`` of ``tools/zoo_build.py``): a whole model's
    network is its first step's checkpoint; the temporal modules are the steps' checkpoints,
    the later step first (it wins in the pack, and the first path with a module wins in
    :func:`~vsda_ros.temporal.modules.load_temporal_modules`)."""
    import sys

    from vsda_ros.models.shipped import SHIPPED_FILES

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / 'tools'))
    from zoo_build import PACKS  # the repository's maintainer pipeline (not installed)

    out = {}
    for entry in SHIPPED_FILES:
        keys = PACKS[entry.filename]
        whole = entry.kind == 'model'
        steps = keys[1:] if whole else keys
        model32 = f'{work}/{keys[0]}.pt' if whole else entry.name
        temporal32 = ','.join(f'{work}/{k}.pt' for k in reversed(steps))
        label_map = None if entry.name == 'espnet-camvid' else 'cityscapes-camvid'
        out[entry.filename] = (model32, temporal32, entry.name, label_map)
    return out


def run(model: str, temporal: str, strategy: str, images, labels, label_map):
    from vsda_ros.evaluation.metrics import ConfusionMatrix
    from vsda_ros.inference import Segmenter, SegmenterConfig
    from vsda_ros.models.zoo import label_mapping, load_model
    from vsda_ros.temporal.modules import load_temporal_modules
    from vsda_ros.temporal.strategy import StrategyConfig, build_strategy

    net = load_model(model, download=False, progress=False)
    seg = Segmenter(net, SegmenterConfig(input_size=(480, 360)))
    strat = build_strategy(strategy, seg, StrategyConfig(), load_temporal_modules(model, temporal))
    mapping, classes = label_mapping(label_map, net.meta)
    cm = ConfusionMatrix(len(classes), ignore_index=11)
    preds = []
    for i, (img, lab) in enumerate(zip(images, labels, strict=False)):
        pred = strat.step(img, i / 15).labels
        preds.append(pred)
        cm.update(mapping[pred] if mapping is not None else pred, lab)
    return cm.miou() * 100, preds


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument('--work', default='runs/zoo_build')
    args = ap.parse_args()
    from vsda_ros.data.labelled import open_labelled
    from vsda_ros.paths import data_dir

    torch.set_num_threads(2)
    data = data_dir()
    frames = list(open_labelled(data / 'camvid' / 'val', labels=data / 'camvid' / 'valannot'))
    images = [f.image for f, _ in frames]
    labels = [lab for _, lab in frames]
    print('| shipped file | strategy | mIoU float32 | mIoU float16 storage | labels agree |')
    print('| --- | --- | --- | --- | --- |')
    for name, (m32, t32, m16, label_map) in cases(args.work).items():
        for strategy in ('per_frame', 'fusion', 'keyframe'):
            a, pa = run(m32, t32, strategy, images, labels, label_map)
            b, pb = run(m16, '', strategy, images, labels, label_map)
            agree = np.mean([np.mean(x == y) for x, y in zip(pa, pb, strict=False)]) * 100
            print(f'| {name} | {strategy} | {a:.2f} | {b:.2f} | {agree:.3f} % |', flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
