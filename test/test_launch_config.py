"""The launch file and the params file against the node's one parameter table.

``launch``/``launch_ros`` are not installable here, so the launch file is checked statically:
it must parse, and every parameter it sets must be one the node declares.
"""
from __future__ import annotations

import ast
from pathlib import Path

import yaml

from vsda_ros.ros.segmentation_node import PARAMETERS

ROOT = Path(__file__).resolve().parent.parent


def _launch_parameter_keys() -> set[str]:
    tree = ast.parse((ROOT / 'launch' / 'segment.launch.py').read_text())
    keys: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == 'parameters':
            for d in ast.walk(node.value):
                if isinstance(d, ast.Dict):
                    keys |= {k.value for k in d.keys if isinstance(k, ast.Constant)}
    return keys


def test_launch_sets_only_declared_parameters():
    keys = _launch_parameter_keys()
    assert keys, 'the launch file sets no parameters?'
    assert keys <= set(PARAMETERS), f'undeclared: {keys - set(PARAMETERS)}'


def test_params_file_documents_every_parameter_with_its_default():
    params = yaml.safe_load((ROOT / 'config' / 'segment.yaml').read_text())
    values = params['segmentation_node']['ros__parameters']
    assert set(values) == set(PARAMETERS)
    for name, (default, *_rest) in PARAMETERS.items():
        assert values[name] == default, name
