"""The package order of the core, and no import circles anywhere in ``vsda_ros``.

Dependencies point down this ladder only (an import at any depth counts, also one inside a
function)::

    apps, cli, ros            the applications and the ROS layer
    evaluation, adaptation    metrics, reports, training
    pipeline                  the one factory: model → segmenter + temporal modules
    temporal                  strategies, fusion block, keyframe propagation
    inference                 Segmenter, backends, exported graphs
    data, weather, models     readers/writers, degradations, networks
    frames, paths, fetch, …   plain data and helpers

and no two modules import each other through any chain (a circle means neither can be
understood, tested or moved alone).
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / 'vsda_ros'

#: top-level part of ``vsda_ros`` → rank; a module may import ranks ≤ its own.
RANKS = {
    'frames': 0,
    'paths': 0,
    'fetch': 0,
    'runtime': 0,
    'visualize': 0,
    'zoo': 0,
    'data': 1,
    'weather': 1,
    'models': 1,
    'inference': 2,
    'temporal': 3,
    'pipeline': 4,
    'evaluation': 5,
    'adaptation': 5,
    'apps': 6,
    'cli': 6,
    '__main__': 6,
    'ros': 6,
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix('').parts)
    return '.'.join(parts[:-1] if parts[-1] == '__init__' else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob('*.py'))}


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The ``vsda_ros`` modules ``name`` imports anywhere in its file (resolved to the longest
    known module: ``from vsda_ros.models import zoo`` → ``vsda_ros.models.zoo``)."""
    package = name if path.name == '__init__.py' else name.rsplit('.', 1)[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ''
            if node.level:
                anchor = package.split('.')
                anchor = anchor[: len(anchor) - node.level + 1]
                base = '.'.join([*anchor, base] if base else anchor)
            # ``from pkg import submodule`` depends on the submodule (its package's __init__
            # runs first, but that is no dependency of the importer's own)
            targets = [
                f'{base}.{a.name}' if f'{base}.{a.name}' in known else base for a in node.names
            ]
        for target in targets:
            while target and target not in known:
                target = target.rpartition('.')[0]
            if target.startswith('vsda_ros.') and target != name:
                found.add(target)
    return found


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {name: imports_of(name, path, known) for name, path in mods.items()}


def rank(module: str) -> int:
    part = module.split('.')[1] if '.' in module else '__init__'
    assert part in RANKS, f'{module}: add vsda_ros/{part} to RANKS in this test'
    return RANKS[part]


def test_every_import_points_down_the_package_order() -> None:
    upward = sorted(
        f'{src} (rank {rank(src)}) imports {dst} (rank {rank(dst)})'
        for src, dsts in graph().items()
        if src != 'vsda_ros'
        for dst in dsts
        if rank(dst) > rank(src)
    )
    assert not upward, 'imports against the package order:\n' + '\n'.join(upward)


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in sorted(g):
        if root in index:
            continue
        work = [(root, iter(sorted(g[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(g.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    top = stack.pop()
                    on_stack.discard(top)
                    component.append(top)
                    if top == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_no_import_circles() -> None:
    # the package's own __init__ loads its public names lazily and is nobody's dependency
    g = {k: v - {'vsda_ros'} for k, v in graph().items() if k != 'vsda_ros'}
    found = cycles(g)
    assert not found, 'import circles:\n' + '\n'.join(' ↔ '.join(c) for c in found)


def test_the_cycle_finder_finds_a_circle() -> None:
    assert cycles({'a': {'b'}, 'b': {'c'}, 'c': {'a'}, 'd': {'a'}}) == [['a', 'b', 'c']]
    assert cycles({'a': {'b'}, 'b': set()}) == []
