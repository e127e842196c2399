"""The launch file and the params file against the node's one parameter table.

``launch``/``launch_ros`` are not installable here, so the launch file is checked statically:
it must parse, every parameter it can set must be one the node declares, and every override
must have a launch argument.
"""
from __future__ import annotations

import ast
from pathlib import Path

import yaml

from vsda_ros.ros.segmentation_node import PARAMETERS

ROOT = Path(__file__).resolve().parent.parent
LAUNCH = ROOT / 'launch' / 'segment.launch.py'


def _module_constant(tree: ast.Module, name: str):
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, 'id', None) == name
                                                for t in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError(f'{name} not found in the launch file')


def _declared_arguments(tree: ast.Module) -> set[str]:
    return {n.args[0].value for n in ast.walk(tree)
            if isinstance(n, ast.Call) and getattr(n.func, 'id', '') == 'DeclareLaunchArgument'}


def test_launch_overrides_only_declared_parameters_and_declares_their_arguments():
    tree = ast.parse(LAUNCH.read_text())
    overrides = set(_module_constant(tree, 'OVERRIDES'))
    assert overrides == {'model', 'strategy', 'device'}
    assert overrides <= set(PARAMETERS), f'undeclared: {overrides - set(PARAMETERS)}'
    args = _declared_arguments(tree)
    assert overrides | {'params_file', 'namespace', 'image_topic', 'rviz'} <= args
    # an override left empty must not clobber the params file: their defaults are ''
    for n in ast.walk(tree):
        if (isinstance(n, ast.Call) and getattr(n.func, 'id', '') == 'DeclareLaunchArgument'
                and n.args[0].value in overrides):
            default = {k.arg: k.value for k in n.keywords}['default_value']
            assert ast.literal_eval(default) == '', n.args[0].value


def test_params_file_documents_every_parameter_with_its_default():
    text = (ROOT / 'config' / 'segment.yaml').read_text()
    doc = yaml.safe_load(text)
    assert list(doc) == ['/**']  # any node name / namespace (test_params_namespace.py)
    values = doc['/**']['ros__parameters']
    for name, spec in PARAMETERS.items():
        assert values[name] == spec.default, name
        assert text.count(f'\n    {name}:') == 1, name
        assert text.split(f'\n    {name}:')[0].rstrip().rsplit('\n', 1)[-1].lstrip().startswith(
            '#'), f'{name}: no comment above it'
    assert set(values) == set(PARAMETERS)
    # every list parameter has a value, so `ros2 param dump` works (no typed-but-unset ones)
    assert values['image_topics'] == ['image', 'image/compressed']


def test_every_parameter_has_a_description():
    for name, spec in PARAMETERS.items():
        assert len(spec.description) > 20, name
