"""Every runtime import is declared: a rosdep key in package.xml, or a pin in requirements-ros.txt.

Every ``import`` / ``from … import`` in vsda_ros/ and launch/ (function-level ones included) is
mapped either to its rosdep key (MODULE_KEYS: ROS packages and Debian packages that
``rosdep install`` installs; test_rosdep.py checks that each key resolves on Kilted/Noble) or to
its PyPI distribution (MODULE_PIP: what rosdep cannot install, pinned in requirements-ros.txt and
installed by the one pip step of docs/install.md). The standard library and vsda_ros itself need
neither. A module missing from both tables, a key missing from package.xml, a distribution
missing from requirements-ros.txt, and a declared key or pin that no code imports all fail; the
pins must equal requirements.lock (the versions the tests run with). setup.py must not use
``tests_require`` (colcon warns: "Unknown distribution option").
"""

from __future__ import annotations

import ast
import re
import sys
import xml.etree.ElementTree as ET
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
REQUIREMENTS_ROS = ROOT / 'requirements-ros.txt'
#: imported module (or dotted prefix, longest wins) → rosdep key in package.xml. ROS packages go
#: by their name, Debian Python packages by python3-<name>.
MODULE_KEYS = {
    'ament_index_python': 'ament_index_python',
    'cv2': 'python3-opencv',
    'diagnostic_msgs': 'diagnostic_msgs',
    'launch': 'launch',
    'launch_ros': 'launch_ros',
    'lifecycle_msgs': 'lifecycle_msgs',
    'matplotlib': 'python3-matplotlib',
    'numpy': 'python3-numpy',
    'PIL': 'python3-pil',
    'rcl_interfaces': 'rcl_interfaces',
    'rclpy': 'rclpy',
    'sensor_msgs': 'sensor_msgs',
    'torch': 'python3-torch',
    'torchvision': 'python3-torchvision',
    'tqdm': 'python3-tqdm',
    'yaml': 'python3-yaml',
}
#: imported module (or dotted prefix) → PyPI distribution pinned in requirements-ros.txt
MODULE_PIP = {
    'backports.zstd': 'backports.zstd',  # zstd mcap chunks before Python 3.14
    'lz4': 'lz4',
    'onnx': 'onnx',
    'onnxruntime': 'onnxruntime',
    'onnxscript': 'onnxscript',
    'openvino': 'openvino',
    'rosbags': 'rosbags',
    'rosbags.image': 'rosbags-image',  # a separate PyPI distribution
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
                names.add(sub if sub in MODULE_KEYS or sub in MODULE_PIP else node.module)
    return names


def key_for(module: str) -> str | None:
    """How ``module`` is installed: its rosdep key, or ``pip:<distribution>``; ``None`` for the
    standard library and vsda_ros.

    Raises ``KeyError`` for a third-party module that neither table knows.
    """
    top = module.split('.')[0]
    if top in sys.stdlib_module_names or top in NEWER_STDLIB or top == OWN_PACKAGE:
        return None
    parts = module.split('.')
    for n in range(len(parts), 0, -1):
        prefix = '.'.join(parts[:n])
        if prefix in MODULE_PIP:
            return 'pip:' + MODULE_PIP[prefix]
        if prefix in MODULE_KEYS:
            return MODULE_KEYS[prefix]
    raise KeyError(module)


def _canonical(name: str) -> str:
    return re.sub(r'[-_.]+', '-', name).lower()


def pinned(path: Path) -> dict[str, str]:
    """``name==version`` lines of a requirements file → {canonical name: version}."""
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split('#')[0].strip()
        if not line:
            continue
        requirement = line.split(';')[0].strip()
        name, sep, version = requirement.partition('==')
        assert sep, f'{path.name}: {line!r} is not pinned with =='
        pins[_canonical(name)] = version.strip()
    return pins


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
    assert not unknown, (
        'imports in neither MODULE_KEYS (rosdep key, package.xml) nor MODULE_PIP '
        f'(requirements-ros.txt): {sorted(unknown)}'
    )
    return used


def test_every_runtime_import_is_declared():
    used = _used_keys()
    keys = declared_keys()
    pins = pinned(REQUIREMENTS_ROS)
    missing = {k: sorted(v) for k, v in used.items() if not k.startswith('pip:') and k not in keys}
    assert not missing, f'imported but not in package.xml as <exec_depend>: {missing}'
    unpinned = {
        k[4:]: sorted(v)
        for k, v in used.items()
        if k.startswith('pip:') and _canonical(k[4:]) not in pins
    }
    assert not unpinned, f'imported but not pinned in requirements-ros.txt: {unpinned}'


def test_every_declared_runtime_dependency_is_imported():
    used = set(_used_keys())
    unused = declared_keys() - used
    assert not unused, f'declared in package.xml but imported by no code: {sorted(unused)}'
    imported = {_canonical(k[4:]) for k in used if k.startswith('pip:')}
    unused_pins = set(pinned(REQUIREMENTS_ROS)) - imported
    assert not unused_pins, (
        f'pinned in requirements-ros.txt but imported by no code: {sorted(unused_pins)}'
    )


def test_pip_only_dependencies_are_not_rosdep_keys():
    """One installer per dependency: a PyPI-only module is never also a package.xml key."""
    keys = declared_keys(('depend', 'exec_depend', 'build_depend', 'test_depend'))
    assert not {k for k in keys if k.endswith('-pip')}, 'pip keys belong in requirements-ros.txt'
    assert not set(MODULE_KEYS) & set(MODULE_PIP)


def test_requirements_ros_pins_equal_the_lock():
    """The pip step installs the versions the test suite runs with: requirements.lock's pins,
    or for what the lock pulls in indirectly (lz4, backports.zstd) the version it resolved to."""
    lock = pinned(ROOT / 'requirements.lock')
    differ = {}
    for name, version in pinned(REQUIREMENTS_ROS).items():
        if name in lock:
            expected = lock[name]
        else:
            try:
                expected = metadata.version(name)
            except metadata.PackageNotFoundError:
                pytest.skip(f'{name} is not installed here, so its resolved version is unknown')
        if version != expected:
            differ[name] = (version, expected)
    assert not differ, f'requirements-ros.txt pin != requirements.lock / venv: {differ}'


def test_table_covers_the_walk():
    """The walker sees function-level and submodule imports (rosbags.image is one of them)."""
    decode = imported_modules(ROOT / 'vsda_ros' / 'data' / 'decode.py')
    assert key_for(next(m for m in decode if m.startswith('rosbags'))) == 'pip:rosbags-image'
    assert key_for('rosbags.rosbag2') == 'pip:rosbags'
    assert key_for('numpy.linalg') == 'python3-numpy'
    assert key_for('os.path') is None and key_for('vsda_ros.frames') is None


def _setup_keywords() -> dict[str, ast.expr]:
    tree = ast.parse((ROOT / 'setup.py').read_text())
    (call,) = [
        n
        for n in ast.walk(tree)
        if isinstance(n, ast.Call) and getattr(n.func, 'id', None) == 'setup'
    ]
    return {k.arg: k.value for k in call.keywords}


def test_setup_py_has_no_tests_require():
    keywords = _setup_keywords()
    assert 'tests_require' not in keywords  # colcon: "Unknown distribution option"
    assert ast.literal_eval(keywords['extras_require']) == {'test': ['pytest']}


def test_setup_py_installs_launch_and_config():
    text = (ROOT / 'setup.py').read_text()
    for pattern in (
        "glob('launch/*.launch.py')",
        "glob('config/*.yaml')",
        "glob('config/*.rviz')",
        "glob('config/*.xml')",
    ):
        assert pattern in text, pattern
