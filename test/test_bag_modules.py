"""The rosbag2 modules of ``vsda_ros.data`` stay small and layered: ``bag_storage`` (integrity)
← ``bags`` (reading) ← ``bag_writer`` (writing), never back."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parents[1] / 'vsda_ros' / 'data'
MODULES = ('bag_storage', 'bags', 'bag_writer')


def _imports(module: str) -> set[str]:
    tree = ast.parse((DATA / f'{module}.py').read_text())
    return {node.module or '' for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}


@pytest.mark.parametrize('module', MODULES)
def test_bag_modules_are_small(module: str) -> None:
    source = (DATA / f'{module}.py').read_text()
    assert len(source.splitlines()) <= 450
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            length = node.end_lineno - node.lineno + 1
            assert length <= 60, f'{module}.{node.name} is {length} lines'


def test_bag_modules_import_downwards_only() -> None:
    assert not {'vsda_ros.data.bags', 'vsda_ros.data.bag_writer'} & _imports('bag_storage')
    assert 'vsda_ros.data.bag_writer' not in _imports('bags')
    assert {'vsda_ros.data.bags', 'vsda_ros.data.bag_storage'} <= _imports('bag_writer')


def test_write_check_and_read_through_the_three_modules(tmp_path: Path) -> None:
    import numpy as np

    from vsda_ros.data.bag_storage import check_storage
    from vsda_ros.data.bag_writer import write_bag
    from vsda_ros.data.bags import BagSource
    from vsda_ros.frames import Frame

    rng = np.random.default_rng(0)
    frames = [
        (
            Frame(rng.integers(0, 256, (4, 6, 3), dtype=np.uint8), stamp=1.0 + i),
            rng.integers(0, 5, (4, 6), dtype=np.uint8),
        )
        for i in range(3)
    ]
    info = write_bag(tmp_path / 'bag', frames)
    assert info['frames'] == info['labels'] == 3 and info['duration'] == 2.0
    assert check_storage(tmp_path / 'bag') == []
    got = list(BagSource(tmp_path / 'bag', label_topic='/camera/labels').labelled())
    for (frame, label), (out, out_label) in zip(frames, got, strict=False):
        assert np.array_equal(frame.image, out.image) and np.array_equal(label, out_label)
