"""Params files must apply to the node under any namespace (``ros2 launch ... namespace:=front``).

A params file keyed ``segmentation_node:`` only matches a node called ``/segmentation_node``; under
a namespace the node silently runs with its defaults. The package's params files are keyed
``/**`` (any node name and namespace). Checked for real: the node runs as a subprocess under
``/front`` with a params file keyed like ``config/segment.yaml``, and this process reads the
parameters back through ``/front/segmentation_node/get_parameters``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

rclpy = pytest.importorskip('rclpy')
from rcl_interfaces.srv import GetParameters  # noqa: E402

from vsda_ros.ros.tools import launcher  # noqa: E402
from vsda_ros.ros.tools.launcher import client_node  # noqa: E402

pytestmark = pytest.mark.ros
REPO = Path(__file__).resolve().parents[1]
SEGMENT_YAML = REPO / 'config' / 'segment.yaml'
#: values that differ from the node's defaults (per_frame, 5, 0.5)
OVERRIDES = {
    'strategy': 'keyframe',
    'keyframe_interval': 7,
    'overlay_alpha': 0.25,
    'backend': 'torch',
}


def _config_key() -> str:
    (key,) = yaml.safe_load(SEGMENT_YAML.read_text())
    return key


def test_package_params_files_use_the_any_node_key():
    assert _config_key() == '/**'


def test_node_process_writes_the_any_node_key(monkeypatch):
    """``vsda demo`` / ``vsda bench`` params reach the node whatever its namespace."""
    seen = {}

    class FakePopen:
        def __init__(self, cmd, **kwargs):
            path = cmd[cmd.index('--params-file') + 1]
            seen['params'] = yaml.safe_load(Path(path).read_text())

        def terminate(self):
            pass

        def wait(self, timeout=None):
            return 0

    monkeypatch.setattr(launcher.subprocess, 'Popen', FakePopen)
    with launcher.node_process({'strategy': 'fusion'}):
        pass
    assert seen['params'] == {'/**': {'ros__parameters': {'strategy': 'fusion'}}}


def _get_parameters(
    node, executor, service: str, names: list[str], timeout: float, proc: subprocess.Popen
) -> dict:
    client = node.create_client(GetParameters, service)
    end = time.monotonic() + timeout
    while not client.service_is_ready() and time.monotonic() < end and proc.poll() is None:
        executor.spin_once(timeout_sec=0.1)
    assert client.service_is_ready(), f'{service} did not appear within {timeout:.0f} s'
    future = client.call_async(GetParameters.Request(names=names))
    executor.spin_until_future_complete(future, timeout_sec=10.0)
    assert future.done(), f'{service} did not answer'
    return {
        n: rclpy.parameter.parameter_value_to_python(v)
        for n, v in zip(names, future.result().values, strict=False)
    }


def test_params_file_applies_under_a_namespace(real_data, tmp_path):
    params = tmp_path / 'custom.yaml'
    params.write_text(yaml.safe_dump({_config_key(): {'ros__parameters': OVERRIDES}}))
    env = dict(os.environ, VSDA_DATA_DIR=str(real_data), OMP_NUM_THREADS='1', PYTHONUNBUFFERED='1')
    assert env['ROS_AUTOMATIC_DISCOVERY_RANGE'] == 'LOCALHOST' and 'ROS_DOMAIN_ID' in env
    log = open(tmp_path / 'node.log', 'w+')
    proc = subprocess.Popen(
        [
            sys.executable,
            '-m',
            'vsda_ros.ros.segmentation_node',
            '--ros-args',
            '-r',
            '__ns:=/front',
            '--params-file',
            str(params),
        ],
        env=env,
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        with client_node('vsda_params_ns_test') as (node, executor):
            try:
                values = _get_parameters(
                    node,
                    executor,
                    '/front/segmentation_node/get_parameters',
                    list(OVERRIDES),
                    timeout=60.0,
                    proc=proc,
                )
            except AssertionError:
                log.seek(0)
                raise AssertionError(f'node log (rc={proc.poll()}):\n{log.read()}') from None
        assert values == OVERRIDES
        assert proc.poll() is None
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()
