"""What the benchmark scripts share: the labelled-clip arguments and opening the clip."""

from __future__ import annotations

import argparse

from vsda_ros.evaluation.temporal import Clip, load_clip
from vsda_ros.inference import Segmenter, SegmenterConfig, parse_size
from vsda_ros.models.base import SegmentationModel
from vsda_ros.models.zoo import load_model
from vsda_ros.runtime import tune_allocator


def parser(doc: str) -> argparse.ArgumentParser:
    """An argument parser (description: the first paragraph of ``doc``) with the clip options
    every benchmark takes: --model, --source, --labels, --size, --max-frames, --out."""
    ap = argparse.ArgumentParser(
        description=doc.split('\n\n')[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument('--model', default='espnet-camvid')
    ap.add_argument('--source', required=True, help='labelled frame folder in time order')
    ap.add_argument('--labels', required=True, help='label folder (CamVid layout)')
    ap.add_argument('--size', default='480x360', help='network input WIDTHxHEIGHT')
    ap.add_argument('--max-frames', type=int, default=None)
    ap.add_argument('--out', default=None, help='write the results as JSON here')
    return ap


def open_clip(
    args: argparse.Namespace, ap: argparse.ArgumentParser
) -> tuple[SegmentationModel, Segmenter, Clip]:
    """Tune the allocator as the vsda CLI and the node do (see :mod:`vsda_ros.runtime`), load
    the model, its Segmenter at ``--size`` and the labelled clip; ``ap.error`` (exit 2) for a
    clip of fewer than two frames."""
    tune_allocator()
    model = load_model(args.model).eval()
    seg = Segmenter(model, SegmenterConfig(input_size=parse_size(args.size)))
    clip = load_clip(args.source, args.labels, model.meta, max_frames=args.max_frames)
    if len(clip.images) < 2:
        ap.error('need at least two frames')
    return model, seg, clip
