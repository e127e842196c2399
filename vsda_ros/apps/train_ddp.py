"""Data-parallel ``vsda adapt`` under torchrun, without the CLI's flags::

    torchrun --nnodes 1 --nproc_per_node 2 --master_addr 127.0.0.1 --master_port 29500 \\
        -m vsda_ros.apps.train_ddp \\
        --config config/experiments/tps.yaml --set target=[../shared/data/camvid/train] \\
        --set out=runs/tps.pt --set iterations=300

``--set KEY=VALUE`` overrides one :class:`~vsda_ros.adaptation.config.AdaptConfig` field (VALUE
is parsed as YAML: numbers, lists, true/false; ``null`` clears a field). ``vsda adapt`` itself
also detects torchrun's environment, so ``torchrun … -m vsda_ros adapt …`` works the same way.
Give ``--master_addr 127.0.0.1`` (as above) so the rendezvous stays on the loopback interface.
"""

from __future__ import annotations

import argparse
from dataclasses import fields, replace

import yaml

from vsda_ros.adaptation.config import AdaptConfig


def parse_overrides(items: list[str]) -> dict:
    """``['iterations=5', 'crop=[64, 64]']`` → ``{'iterations': 5, 'crop': [64, 64]}``.

    Raises ``ValueError`` for an item without ``=``.
    """
    out = {}
    for item in items:
        key, sep, value = item.partition('=')
        if not sep or not key.strip():
            raise ValueError(f'--set expects KEY=VALUE, got {item!r}')
        out[key.strip()] = yaml.safe_load(value)
    return out


def with_overrides(cfg: AdaptConfig, overrides: dict) -> AdaptConfig:
    """``cfg`` with fields replaced (``null`` clears one, e.g. ``val=null``).

    Raises ``ValueError`` for an unknown field.
    """
    known = {f.name for f in fields(AdaptConfig)}
    unknown = set(overrides) - known
    if unknown:
        raise ValueError(f'unknown settings {sorted(unknown)}; known: {sorted(known)}')
    return replace(cfg, **overrides)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog='python -m vsda_ros.apps.train_ddp', description=__doc__.split('\n\n')[0]
    )
    p.add_argument('--config', required=True, help='recipe YAML (config/experiments/*.yaml)')
    p.add_argument(
        '--set',
        action='append',
        default=[],
        metavar='KEY=VALUE',
        help='override a config field (repeatable)',
    )
    p.add_argument('--quiet', action='store_true', help='no progress bar')
    args = p.parse_args(argv)
    from vsda_ros.adaptation.train import train

    cfg = with_overrides(AdaptConfig.from_yaml(args.config), parse_overrides(args.set))
    s = train(cfg, progress=not args.quiet)
    if s['rank'] == 0:
        print(
            f'{s["recipe"]}: {s["iterations"]} iterations in {s["train_seconds"]:.0f} s on '
            f'{s["world_size"]} process(es); checkpoint {s["out"]} (summary {s["out"]}.json)'
        )
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
