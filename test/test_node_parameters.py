"""The node's one parameter table (vsda_ros/ros/parameters.py) against its copies — the params
file config/segment.yaml and the README's parameter table — and its declare / validate / apply
functions, without an rclpy context.

Copies must agree with the table on names, defaults and read-only flags. In the params file the
comment above each parameter says "read-only" or that it can be changed at run time ("run
time", "live"); in the README the third column says ``read-only`` or ``live``.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from vsda_ros.ros.parameters import (
    PARAMETERS,
    Param,
    apply_parameters,
    descriptor,
    live_values,
    validate_parameters,
)

ROOT = Path(__file__).resolve().parent.parent
YAML = ROOT / 'config' / 'segment.yaml'
README = ROOT / 'README.md'


def _yaml_comments(text: str) -> dict[str, str]:
    """parameter name → the comment block right above it in the params file."""
    comments, block = {}, []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith('#'):
            block.append(stripped.lstrip('#').strip())
            continue
        m = re.match(r'^ {4}(\w+):', line)
        if m:
            comments[m.group(1)] = ' '.join(block)
        block = []
    return comments


def _table_after(lines: list[str], start: int) -> list[str]:
    """The rows of the first markdown table within a few lines after ``lines[start]``."""
    i = start + 1
    while i < len(lines) and i <= start + 6 and not lines[i].lstrip().startswith('|'):
        i += 1
    rows = []
    while i < len(lines) and lines[i].lstrip().startswith('|'):
        rows.append(lines[i].strip())
        i += 1
    return rows


def readme_parameters(text: str) -> dict[str, tuple[object, str]]:
    """name → (default, 'read-only' | 'live') from the README's parameter table: the table
    after a line containing "Parameters" whose rows name the most of the node's parameters; a
    row's first cell may name several parameters (`a`, `b`) sharing a default and flag."""
    lines = text.splitlines()
    best: dict[str, tuple[object, str]] = {}
    for n, line in enumerate(lines):
        if 'Parameters' not in line:
            continue
        found = {}
        for row in _table_after(lines, n):
            cells = [c.strip() for c in row.strip('|').split('|')]
            names = re.findall(r'`([^`]+)`', cells[0])
            if len(cells) < 3 or not names or not re.fullmatch(r'(`[^`]+`[,\s]*)+', cells[0]):
                continue
            default = yaml.safe_load(cells[1].strip('`')) if cells[1].startswith('`') else None
            for name in names:
                found[name] = (default, cells[2])
        if len(set(found) & set(PARAMETERS)) > len(set(best) & set(PARAMETERS)):
            best = found
    return best


def test_params_file_matches_the_table():
    text = YAML.read_text()
    values = yaml.safe_load(text)['/**']['ros__parameters']
    assert list(values) == list(PARAMETERS), 'same names, in the same order'
    comments = _yaml_comments(text)
    for name, spec in PARAMETERS.items():
        assert values[name] == spec.default, name
        assert type(values[name]) is type(spec.default), name  # 0.0 stays a double
        note = comments[name].lower()
        says_read_only = 'read-only' in note
        says_live = 'run time' in note or 'live' in note
        assert says_read_only == spec.read_only and says_live != spec.read_only, (
            f'{name}: the comment must say {"read-only" if spec.read_only else "live"}: {note}'
        )


def test_readme_table_matches_the_table():
    rows = readme_parameters(README.read_text())
    assert rows, 'no parameter table after a "Parameters" line in README.md'
    problems = []
    for name in sorted(set(rows) ^ set(PARAMETERS)):
        problems.append(f'{name}: {"not in the table" if name in rows else "missing in README"}')
    for name in sorted(set(rows) & set(PARAMETERS)):
        default, flag = rows[name]
        spec = PARAMETERS[name]
        if default != spec.default:
            problems.append(f'{name}: default {default!r} != {spec.default!r}')
        if flag != ('read-only' if spec.read_only else 'live'):
            problems.append(f'{name}: {flag!r} but read_only={spec.read_only}')
    assert not problems, '\n'.join(problems)


def test_readme_parser_reads_shared_rows_and_literals():
    text = (
        '**Parameters** (x)\n\n| parameter | default | | meaning |\n'
        '| --- | --- | --- | --- |\n'
        '| `model` | `espnet-camvid` | read-only | m |\n'
        "| `input_size` | `''` | read-only | s |\n"
        '| `publish_mask`, `publish_overlay` | `true` | live | p |\n'
        "| `image_topics` | `['a', 'b/compressed']` | read-only | t |\n\nafter\n"
        '| `other` | `1` | live | not this table |\n'
    )
    assert readme_parameters(text) == {
        'model': ('espnet-camvid', 'read-only'),
        'input_size': ('', 'read-only'),
        'publish_mask': (True, 'live'),
        'publish_overlay': (True, 'live'),
        'image_topics': (['a', 'b/compressed'], 'read-only'),
    }


def test_descriptors_carry_types_and_ranges():
    from rcl_interfaces.msg import ParameterType

    d = descriptor(PARAMETERS['keyframe_interval'])
    assert d.type == ParameterType.PARAMETER_INTEGER and not d.read_only
    assert (d.integer_range[0].from_value, d.integer_range[0].to_value) == (1, 100)
    d = descriptor(PARAMETERS['overlay_alpha'])
    assert d.type == ParameterType.PARAMETER_DOUBLE
    assert (d.floating_point_range[0].from_value, d.floating_point_range[0].to_value) == (0, 1)
    d = descriptor(PARAMETERS['model'])
    assert d.read_only and d.type == ParameterType.PARAMETER_NOT_SET  # typed by its value
    for name, spec in PARAMETERS.items():
        assert descriptor(spec).description == spec.description, name
        if spec.range is not None:
            assert isinstance(spec.default, (int, float)), name
            assert spec.range[0] <= spec.default <= spec.range[1], name


def test_declare_gives_every_parameter_a_value():
    declared = {}

    class FakeNode:
        def declare_parameter(self, name, value, desc):
            declared[name] = (value, desc.read_only)

    from vsda_ros.ros.parameters import declare_parameters

    declare_parameters(FakeNode())
    assert declared == {n: (s.default, s.read_only) for n, s in PARAMETERS.items()}


def _p(name: str, value: object) -> SimpleNamespace:
    return SimpleNamespace(name=name, value=value)


@pytest.mark.parametrize(
    'params, ok',
    [
        ([_p('publish_mask', False)], True),
        ([_p('publish_mask', 1)], False),  # a bool switch set to an int
        ([_p('overlay_alpha', 0.3), _p('publish_overlay', 'no')], False),
        ([_p('model', 'x')], True),  # read-only: rcl refuses it, not this check
        ([_p('not_a_parameter', 3)], True),
    ],
)
def test_validate(params, ok):
    result = validate_parameters(params)
    assert result.successful is ok
    if not ok:
        assert 'must be a bool' in result.reason


def test_live_values_and_apply():
    live = live_values(lambda name: PARAMETERS[name].default)
    assert set(live) == {n for n, s in PARAMETERS.items() if not s.read_only}
    assert 'model' not in live and live['overlay_alpha'] == 0.5
    changed = apply_parameters(live, [_p('overlay_alpha', 0.25), _p('model', 'other')])
    assert changed == ['overlay_alpha=0.25'] and live['overlay_alpha'] == 0.25
    assert 'model' not in live


def test_param_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        Param(1, 'x').default = 2  # type: ignore[misc]
