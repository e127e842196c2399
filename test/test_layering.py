"""Layering: dependencies point one way, ``vsda_ros.ros`` → core, never back.

The core (every module outside ``vsda_ros/ros/``) must import without rclpy, and no core module
may import ``vsda_ros.ros`` or rclpy at any level, not even lazily inside a function: the one
exception is the applications, ``vsda_ros/apps/*`` (one module per ``vsda`` command), which may
dispatch to ``vsda_ros.ros`` (its tools) inside their functions (never at module level, never
rclpy itself). The library packages do not parse command lines: none imports argparse.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / 'vsda_ros'
ROS_DIR = PACKAGE / 'ros'
APPS_DIR = PACKAGE / 'apps'
#: the library packages: no argparse (command lines are the applications' business)
LIBRARY = ('models', 'inference', 'temporal', 'weather', 'data', 'evaluation', 'adaptation')

#: Run in a fresh interpreter: rclpy is made unimportable, then every core module is imported
#: (found by walking the package folders, so ``vsda_ros.ros`` itself is never imported), and
#: the CLI parser is built (``vsda --help`` must work without ROS too).
_IMPORT_ALL = r'''
import importlib, json, pkgutil, sys, traceback

class NoRclpy:
    """A meta path finder that makes ``rclpy`` and its submodules unimportable."""
    def find_spec(self, name, path=None, target=None):
        if name == 'rclpy' or name.startswith('rclpy.'):
            raise ImportError(f'rclpy is blocked by test_layering ({name})')
        return None

sys.meta_path.insert(0, NoRclpy())
sys.modules.pop('rclpy', None)
import vsda_ros

def core_modules(paths, prefix):
    for info in pkgutil.iter_modules(paths, prefix):
        if info.name == 'vsda_ros.ros':
            continue
        yield info.name
        if info.ispkg:
            sub = [p + '/' + info.name.rsplit('.', 1)[1] for p in paths]
            yield from core_modules(sub, info.name + '.')

names = list(core_modules(list(vsda_ros.__path__), 'vsda_ros.'))
failed = {}
for name in names:
    try:
        importlib.import_module(name)
    except BaseException as e:
        failed[name] = ''.join(traceback.format_exception_only(type(e), e)).strip()
try:
    from vsda_ros.cli import build_parser
    build_parser()
except BaseException as e:
    failed['vsda_ros.cli.build_parser()'] = f'{type(e).__name__}: {e}'
print(json.dumps({'modules': names, 'failed': failed,
                  'rclpy_loaded': any(m == 'rclpy' or m.startswith('rclpy.')
                                      for m in sys.modules if sys.modules[m] is not None)}))
'''


def _core_files() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob('*.py') if ROS_DIR not in p.parents)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix('').parts)
    return '.'.join(parts[:-1] if parts[-1] == '__init__' else parts)


def _is_forbidden(name: str) -> bool:
    return any(name == root or name.startswith(root + '.') for root in ('rclpy', 'vsda_ros.ros'))


def _imports(path: Path, source: str | None = None) -> list[tuple[int, str, bool]]:
    """(line, imported module, inside a function?) for every import in ``path`` (or in
    ``source`` as if it were ``path``), at any depth: ``import x``, ``from x import y`` (also
    ``from vsda_ros import ros`` and relative forms) and ``importlib.import_module('x')`` /
    ``__import__('x')`` with a literal name."""
    tree = ast.parse(path.read_text() if source is None else source, str(path))
    package = (
        _module_name(path) if path.name == '__init__.py' else _module_name(path).rpartition('.')[0]
    )
    found: list[tuple[int, str, bool]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ''
            if node.level:
                parent = package.split('.')
                parent = parent[: len(parent) - (node.level - 1)]
                base = '.'.join(parent + ([base] if base else []))
            names = [base] + [f'{base}.{a.name}' for a in node.names]
        elif (
            isinstance(node, ast.Call)
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, 'id', '')
            if called in ('import_module', '__import__'):
                names = [node.args[0].value]
        found.extend((node.lineno, n, in_function) for n in names)
        nested = in_function or isinstance(
            node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)
        )
        for child in ast.iter_child_nodes(node):
            visit(child, nested)

    visit(tree, False)
    return found


def test_core_imports_without_rclpy():
    """Every module outside vsda_ros/ros/ imports with rclpy unimportable."""
    proc = subprocess.run(
        [sys.executable, '-c', _IMPORT_ALL],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=PACKAGE.parent,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(result['modules']) > 30, result['modules']  # the walk found the package
    assert not any(m.startswith('vsda_ros.ros') for m in result['modules'])
    assert 'vsda_ros.evaluation.report' in result['modules']
    assert result['failed'] == {}, json.dumps(result['failed'], indent=1)
    assert not result['rclpy_loaded']


def test_no_core_module_imports_the_ros_layer():
    """Statically: no core module imports vsda_ros.ros or rclpy, not even inside a function;
    the apps (vsda_ros/apps/*) may import vsda_ros.ros, but only inside functions (lazily,
    per command)."""
    offences: dict[tuple[Path, int], str] = {}
    for path in _core_files():
        for line, name, in_function in _imports(path):
            if not _is_forbidden(name):
                continue
            if APPS_DIR in path.parents and name.startswith('vsda_ros.ros') and in_function:
                continue
            offences.setdefault(
                (path, line), f'{path.relative_to(PACKAGE.parent)}:{line} imports {name}'
            )
    assert not offences, '\n'.join(offences.values())


def test_the_library_does_not_parse_command_lines():
    """No module of the library packages imports argparse (at any level): each ``vsda``
    command's options live in its module under vsda_ros/apps/."""
    offences = [
        f'{path.relative_to(PACKAGE.parent)}:{line}'
        for package in LIBRARY
        for path in sorted((PACKAGE / package).rglob('*.py'))
        for line, name, _ in _imports(path)
        if name == 'argparse'
    ]
    assert not offences, offences


def test_every_command_is_an_app_module():
    """cli.py only assembles the apps: every ``vsda`` command is a module of vsda_ros.apps with
    ``add_parser`` and ``run``, and cli.py imports no ROS tool at all."""
    import importlib

    from vsda_ros.apps import COMMANDS
    from vsda_ros.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == 'command')
    assert list(sub.choices) == list(COMMANDS)
    for name in COMMANDS:
        module = importlib.import_module(f'vsda_ros.apps.{name}')
        assert callable(module.add_parser) and callable(module.run), name
    assert not [n for _, n, _ in _imports(PACKAGE / 'cli.py') if _is_forbidden(n)]


def test_the_static_check_sees_lazy_and_relative_imports():
    """The checker itself finds imports inside functions, relative ones and import_module."""
    src = (
        'import os\n'
        'def f():\n'
        '    from vsda_ros.ros.tools.live_eval import LiveRunner\n'
        '    from ..ros import conversions\n'
        '    import rclpy.node\n'
        "    importlib.import_module('vsda_ros.ros.tools.demo')\n"
        'from vsda_ros import ros\n'
    )
    found = [
        (n, f) for _, n, f in _imports(PACKAGE / 'evaluation' / 'probe.py', src) if _is_forbidden(n)
    ]
    assert {n for n, f in found if f} >= {
        'vsda_ros.ros.tools.live_eval',
        'vsda_ros.ros',
        'vsda_ros.ros.conversions',
        'rclpy.node',
        'vsda_ros.ros.tools.demo',
    }
    assert [n for n, f in found if not f] == ['vsda_ros.ros']
