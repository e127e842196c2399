"""``vsda adapt``: domain adaptation / temporal-module training on unlabelled target video.

Every option's dest is the :class:`~vsda_ros.adaptation.config.AdaptConfig` field it sets, and
every default is "not given" (``None``, or an empty list for the repeatable ones), so that a
recipe YAML (``--config``) keeps its values for the flags that are not on the command line:
an option is defined once, here, and reaches the config through :func:`overrides`.
"""

from __future__ import annotations

import argparse
from dataclasses import fields

from vsda_ros.apps._common import (
    EPILOG,
    non_negative_int,
    positive_float,
    positive_int,
)

DESCRIPTION = (
    'Train on unlabelled target video (frame folders, video files, rosbag2 '
    'bags) and, for '
    'some recipes, labelled source frames. Recipes: davss (DMNet + CFNet for '
    'the keyframe strategy, frozen network), fusion (the fusion block, teacher-'
    'student under degradations, frozen network), source (supervised on '
    'labelled source frames), tps (cross-frame pseudo-labels through optical '
    'flow), i2vda (temporal augmentation + proxy network + output-level LSGAN), '
    'vat_vst (clip-level adversarial alignment, then video self-training), tsl '
    '(temporal-spatial teacher-student under temporal weather; trains the '
    'network and the fusion block). Writes a vsda checkpoint that '
    'segmentation_node and vsda eval load, a resumable state (OUT.state.pt) and a '
    'JSON summary (OUT.json). Under torchrun it trains with DDP (gloo on CPU).'
)


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``vsda adapt``."""
    from vsda_ros.adaptation.config import RECIPES

    p = subparsers.add_parser(
        'adapt',
        help='adapt a model / train temporal modules on unlabelled target video',
        description=DESCRIPTION,
        epilog=EPILOG,
    )
    p.add_argument(
        '--config', default=None, help='recipe YAML (config/experiments/*.yaml); flags override it'
    )
    p.add_argument('--recipe', default=None, choices=RECIPES)
    _add_data_args(p)
    _add_training_args(p)
    _add_eval_and_fusion_args(p)
    p.add_argument('--quiet', dest='progress', action='store_false', help='no progress bar')
    p.set_defaults(func=run)
    return p


def _add_data_args(p: argparse.ArgumentParser) -> None:
    """``vsda adapt``'s data and network: labelled source, target video, base model, output."""
    from vsda_ros.adaptation.source_data import SOURCE_MAPS

    p.add_argument('--source', default=None, help='labelled source frame folder')
    p.add_argument('--source-labels', default=None, help='its label folder')
    p.add_argument(
        '--source-map',
        default=None,
        choices=sorted(SOURCE_MAPS),
        help='map the source labels to the model classes',
    )
    p.add_argument(
        '--train-base',
        default=None,
        action=argparse.BooleanOptionalAction,
        help='train the network itself (default: the recipe decides)',
    )
    p.add_argument(
        '--freeze',
        action='append',
        default=[],
        metavar='PREFIX',
        help='keep parameters whose names start with PREFIX fixed (repeatable)',
    )
    p.add_argument('--model', default=None, help='base model (zoo name or checkpoint)')
    p.add_argument(
        '--target',
        action='append',
        default=[],
        help='unlabelled target: frame folder, video or rosbag2 (repeatable)',
    )
    p.add_argument('--out', default=None, help='checkpoint to write')


def _add_training_args(p: argparse.ArgumentParser) -> None:
    """``vsda adapt``'s optimisation: iterations, batch, learning rate, seed, threads, device."""
    p.add_argument('--iterations', type=positive_int, default=None)
    p.add_argument('--batch', type=positive_int, default=None)
    p.add_argument('--lr', type=positive_float, default=None)
    p.add_argument('--seed', type=non_negative_int, default=None)
    p.add_argument('--threads', type=positive_int, default=None, help='torch CPU threads')
    p.add_argument('--device', default=None)


def _add_eval_and_fusion_args(p: argparse.ArgumentParser) -> None:
    """``vsda adapt``'s evaluation during training, target frame rate and fusion stages."""
    p.add_argument('--val', default=None, help='labelled frame folder to evaluate on')
    p.add_argument('--val-labels', default=None, help='its label folder')
    p.add_argument(
        '--map',
        dest='label_map',
        metavar='MAP',
        default=None,
        help='label map for --val (e.g. cityscapes-camvid)',
    )
    p.add_argument(
        '--eval-every', type=non_negative_int, default=None, help='evaluate every N iterations'
    )
    p.add_argument(
        '--folder-fps',
        type=positive_float,
        default=None,
        metavar='HZ',
        help='frame rate of --target frame folders (default 30; their files carry '
        'no time stamps: Cityscapes sequences are 17)',
    )
    p.add_argument(
        '--fusion-init',
        default=None,
        metavar='CKPT',
        help="fusion, guided: start from the matching weights of this checkpoint's "
        'fusion block (a second training stage)',
    )
    p.add_argument(
        '--fusion-num-deform',
        type=non_negative_int,
        default=None,
        metavar='N',
        help='fusion, guided: deformable steps (0 = warp by the learned motion)',
    )
    p.add_argument(
        '--fusion-stage',
        default=None,
        choices=['full', 'motion'],
        help='fusion, guided: full (default) or motion (only the motion field learns '
        'the DIS flow; the network is not run)',
    )


def overrides(args: argparse.Namespace) -> dict:
    """``{AdaptConfig field: value}`` of every option given on the command line (an option
    left out, ``None``, or a repeatable one never given, ``[]``, is ``None``: not given)."""
    from vsda_ros.adaptation.config import AdaptConfig

    parsed = vars(args)
    return {
        f.name: (parsed[f.name] if parsed[f.name] != [] else None)
        for f in fields(AdaptConfig)
        if f.name in parsed
    }


def run(args: argparse.Namespace) -> int:
    """``vsda adapt``: train, print the summary (rank 0 only under torchrun); returns 0."""
    from vsda_ros.adaptation.config import AdaptConfig
    from vsda_ros.adaptation.train import train

    given = overrides(args)
    if args.config:
        cfg = AdaptConfig.from_yaml(args.config, **given)
    else:
        cfg = AdaptConfig(**{k: v for k, v in given.items() if v is not None})
    s = train(cfg, progress=args.progress)
    if s.get('rank', 0) != 0:  # under torchrun only rank 0 reports
        return 0
    print(
        f'{s["recipe"]}: {s["iterations"]} iterations in {s["train_seconds"]:.0f} s; '
        f'checkpoint {s["out"]} (summary {s["out"]}.json)'
    )
    for e in s['evaluations']:
        print('  eval', {k: (round(v, 2) if isinstance(v, float) else v) for k, v in e.items()})
    return 0
