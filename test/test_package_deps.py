"""package.xml declares exactly what the code imports at run time (rosdep installs the rest).

Every ``import`` / ``from … import`` in vsda_ros/ and launch/ (function-level ones included) is
mapped to its rosdep key through MODULE_KEYS; the standard library and vsda_ros itself need no
key. A module missing from the table, a key missing from package.xml, and a runtime key that no
code imports all fail. setup.py must not use ``tests_require`` (colcon warns: "Unknown
distribution option").
"""
from __future__ import annotations

import ast
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: imported module (or dotted prefix, longest wins) → rosdep key. ROS packages go by their name,
#: Debian Python packages by python3-<name>, PyPI-only ones by python3-<name>-pip.
MODULE_KEYS = {
    'ament_index_python': 'ament_index_python',
    'backports.zstd': 'python3-backports-zstd-pip',  # zstd mcap chunks before Python 3.14
    'cv2': 'python3-opencv',
    'diagnostic_msgs': 'diagnostic_msgs',
    'launch': 'launch',
    'launch_ros': 'launch_ros',
    'lz4': 'python3-lz4',
    'matplotlib': 'python3-matplotlib',
    'numpy': 'python3-numpy',
    'onnx': 'python3-onnx-pip',
    'onnxruntime': 'python3-onnxruntime-pip',
    'onnxscript': 'python3-onnxscript-pip',
    'openvino': 'python3-openvino-pip',
    'PIL': 'python3-pil',
    'rcl_interfaces': 'rcl_interfaces',
    'rclpy': 'rclpy',
    'rosbags': 'python3-rosbags-pip',
    'rosbags.image': 'python3-rosbags-image-pip',  # a separate PyPI distribution (rosbags-image)
    'sensor_msgs': 'sensor_msgs',
    'torch': 'python3-torch',
    'torchvision': 'python3-torchvision',
    'tqdm': 'python3-tqdm',
    'yaml': 'python3-yaml',
}
#: standard library in newer Pythons than this one, imported with a fallback
NEWER_STDLIB = {'compression'}  # compression.zstd: Python >= 3.14 (else backports.zstd)
RUNTIME_TAGS = ('depend', 'exec_depend')
OWN_PACKAGE = 'vsda_ros'


def _sources() -> list[Path]:
    return sorted((ROOT / 'vsda_ros').rglob('*.py')) + sorted((ROOT / 'launch').glob('*.py'))


def imported_modules(path: Path) -> set[str]:
    """Absolute module names imported anywhere in ``path`` (relative imports skipped)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            for alias in node.names:  # `from backports import zstd` imports backports.zstd
                sub = f'{node.module}.{alias.name}'
                names.add(sub if sub in MODULE_KEYS else node.module)
    return names


def key_for(module: str) -> str | None:
    """The rosdep key of ``module``; ``None`` for the standard library and vsda_ros.

    Raises ``KeyError`` for a third-party module MODULE_KEYS does not know.
    """
    top = module.split('.')[0]
    if top in sys.stdlib_module_names or top in NEWER_STDLIB or top == OWN_PACKAGE:
        return None
    parts = module.split('.')
    for n in range(len(parts), 0, -1):
        key = MODULE_KEYS.get('.'.join(parts[:n]))
        if key:
            return key
    raise KeyError(module)


def declared_keys(tags: tuple[str, ...] = RUNTIME_TAGS) -> set[str]:
    root = ET.parse(ROOT / 'package.xml').getroot()
    return {el.text.strip() for tag in tags for el in root.findall(tag)}


def _used_keys() -> dict[str, set[str]]:
    """rosdep key → the files that need it."""
    used: dict[str, set[str]] = {}
    unknown = []
    for path in _sources():
        for module in imported_modules(path):
            try:
                key = key_for(module)
            except KeyError:
                unknown.append(f'{module} ({path.relative_to(ROOT)})')
                continue
            if key:
                used.setdefault(key, set()).add(str(path.relative_to(ROOT)))
    assert not unknown, ('imports with no rosdep key in MODULE_KEYS (add it there and to '
                         f'package.xml): {sorted(unknown)}')
    return used


def test_every_runtime_import_is_declared():
    used = _used_keys()
    missing = {k: sorted(v) for k, v in used.items() if k not in declared_keys()}
    assert not missing, f'imported but not in package.xml as <exec_depend>: {missing}'


def test_every_declared_runtime_dependency_is_imported():
    unused = declared_keys() - set(_used_keys())
    assert not unused, f'declared in package.xml but imported by no code: {sorted(unused)}'


def test_table_covers_the_walk():
    """The walker sees function-level and submodule imports (rosbags.image is one of them)."""
    decode = imported_modules(ROOT / 'vsda_ros' / 'data' / 'decode.py')
    assert key_for(next(m for m in decode if m.startswith('rosbags'))) == \
        'python3-rosbags-image-pip'
    assert key_for('rosbags.rosbag2') == 'python3-rosbags-pip'
    assert key_for('os.path') is None and key_for('vsda_ros.frames') is None


def _setup_keywords() -> dict[str, ast.expr]:
    tree = ast.parse((ROOT / 'setup.py').read_text())
    (call,) = [n for n in ast.walk(tree) if isinstance(n, ast.Call)
               and getattr(n.func, 'id', None) == 'setup']
    return {k.arg: k.value for k in call.keywords}


def test_setup_py_has_no_tests_require():
    keywords = _setup_keywords()
    assert 'tests_require' not in keywords  # colcon: "Unknown distribution option"
    assert ast.literal_eval(keywords['extras_require']) == {'test': ['pytest']}


def test_setup_py_installs_launch_and_config():
    text = (ROOT / 'setup.py').read_text()
    for pattern in ("glob('launch/*.launch.py')", "glob('config/*.yaml')",
                    "glob('config/*.rviz')", "glob('config/*.xml')"):
        assert pattern in text, pattern
