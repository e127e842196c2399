"""Test-wide setup.

Network rule: any test that touches ROS must stay on loopback with a domain of its own. This
fixture is the one place that enforces it for the whole session (autouse), before any rclpy
import: ``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST`` and a per-run ``ROS_DOMAIN_ID``.

Markers (registered in setup.cfg; ``make test-fast`` deselects all three): ``data`` and ``ros``
are set here from what a test uses (:func:`pytest_collection_modifyitems`), so a new test is
marked without anyone remembering to; ``slow`` is set by hand on long unit tests.
"""

from __future__ import annotations

import inspect
import os
import re
import signal
import types
from pathlib import Path
from typing import Any

import pytest

# A suite started as a background job (`make test &`) inherits SIGINT and SIGQUIT ignored, and an
# ignored signal stays ignored across exec: every node, replay and `ros2 launch` the tests start
# would then ignore the Ctrl-C they are tested with. Give the children the default disposition.
for _sig in (signal.SIGINT, signal.SIGQUIT):
    if signal.getsignal(_sig) == signal.SIG_IGN:
        signal.signal(_sig, signal.default_int_handler if _sig == signal.SIGINT else signal.SIG_DFL)

os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
os.environ['ROS_DOMAIN_ID'] = str(100 + os.getpid() % 100)
os.environ.setdefault('OMP_NUM_THREADS', '2')
os.environ.setdefault(
    'FASTDDS_DEFAULT_PROFILES_FILE',
    str(Path(__file__).resolve().parents[1] / 'config' / 'fastdds_profile.xml'),
)


def _data_dir() -> Path | None:
    from vsda_ros.paths import data_dir

    return data_dir()


@pytest.fixture(scope='session')
def real_data() -> Path:
    """The real-data folder (``VSDA_DATA_DIR``); skips the test with the reason when absent."""
    ddir = _data_dir()
    if ddir is None or not (ddir / 'camvid' / 'val').is_dir() or not (ddir / 'weights').is_dir():
        pytest.skip(
            f'real data not found (set VSDA_DATA_DIR; looked at {ddir}): needs '
            'camvid/ and weights/ from ../shared/data'
        )
    return ddir


# ---- markers from what a test uses ------------------------------------------------------------

#: A module built around live rclpy (binds ``rclpy`` at module level, e.g.
#: ``rclpy = pytest.importorskip('rclpy')``) or one that starts segmentation_node as a process
#: (``-m vsda_ros.ros.segmentation_node``): every test in it is ``ros``.
_ROS_MODULE = re.compile(r"""['"]vsda_ros\.ros\.segmentation_node['"]""")
#: A test (or one of its fixtures) that starts DDS: an rclpy context, the node through the
#: launcher, the live evaluator, the node benchmark, a replay or the demo, the real ros2 tools.
_ROS_TEST = re.compile(
    r'\brclpy\.init\(|\bwith node_process\(|\bLiveRunner\(|\brun_bench\('
    r"|\breplay_bag\(|\[\s*'(?:replay|demo)'|VSDA_ROS2_TOOLS"
)
_TEST_DIR = Path(__file__).resolve().parent
_module_is_ros: dict[str, bool] = {}


def _source(obj: Any) -> str:
    try:
        return inspect.getsource(obj)
    except (OSError, TypeError):
        return ''


def _ros_module(module: types.ModuleType) -> bool:
    name = module.__name__
    if name not in _module_is_ros:
        _module_is_ros[name] = isinstance(getattr(module, 'rclpy', None), types.ModuleType) or bool(
            _ROS_MODULE.search(_source(module))
        )
    return _module_is_ros[name]


def _own_fixture_functions(item: pytest.Item) -> list[object]:
    """The functions of the fixtures ``item`` uses (directly or not) that live in test/."""
    info = getattr(item, '_fixtureinfo', None)
    funcs: list[object] = []
    for defs in getattr(info, 'name2fixturedefs', {}).values():
        for fixturedef in defs:
            func = getattr(fixturedef, 'func', None)
            path = getattr(getattr(func, '__code__', None), 'co_filename', '')
            if path and Path(path).resolve().parent == _TEST_DIR:
                funcs.append(func)
    return funcs


def _uses_ros(item: pytest.Item) -> bool:
    module = getattr(item, 'module', None)
    if module is not None and _ros_module(module):
        return True
    function = getattr(item, 'function', None)
    return any(
        _ROS_TEST.search(_source(f))
        for f in [function, *_own_fixture_functions(item)]
        if f is not None
    )


#: modules whose tests export ONNX graphs and compile them (10-20 s each on 2 cores, measured
#: with ``pytest --durations``): integration tests of the backends, run by ``make test`` only
GRAPH_EXPORT_MODULES = {
    'test_compiled_cache',
    'test_auto_backend',
    'test_export',
    'test_bench_model',
}
#: the same in test_backends.py: the graph cache itself and the per-backend contract
GRAPH_EXPORT_TESTS = ('test_cache_export_when_no_folder', 'test_contract_matches_torch')


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """``data`` on every test that uses the ``real_data`` fixture (directly or through another
    fixture), ``ros`` on every test that starts DDS or a ROS process (see :func:`_uses_ros`),
    ``slow`` on the graph-export tests (:data:`GRAPH_EXPORT_MODULES`)."""
    for item in items:
        module = item.module.__name__.rsplit('.', 1)[-1] if item.module else ''
        if module in GRAPH_EXPORT_MODULES or item.name.startswith(GRAPH_EXPORT_TESTS):
            item.add_marker(pytest.mark.slow)
        if 'real_data' in getattr(item, 'fixturenames', ()):
            item.add_marker(pytest.mark.data)
        if _uses_ros(item):
            item.add_marker(pytest.mark.ros)
