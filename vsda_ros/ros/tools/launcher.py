"""Run segmentation_node as a child process and talk to it: shared by ``vsda demo`` and
``vsda bench``.

Both confine ROS to loopback (network rule) before rclpy starts, start the node with a
temporary params file, and clean up the process, the file and the client context whatever
happens.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from typing import Iterator


def fastdds_profile() -> str | None:
    """The package's Fast DDS profile (``config/fastdds_profile.xml``), or ``None``."""
    from pathlib import Path

    here = Path(__file__).resolve()
    for candidate in (
        here.parents[2] / 'config' / 'fastdds_profile.xml',  # source tree
        Path(sys.prefix) / 'share' / 'vsda_ros' / 'config' / 'fastdds_profile.xml',
    ):
        if candidate.is_file():
            return str(candidate)
    return None


def confine_to_loopback() -> None:
    """Loopback-only discovery, a random domain of our own unless one is set, and the
    package's Fast DDS profile (large shared-memory segment, UDP on 127.0.0.1) unless the user
    set their own."""
    os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
    os.environ.setdefault('ROS_DOMAIN_ID', str(random.randint(100, 199)))
    profile = fastdds_profile()
    if profile:
        os.environ.setdefault('FASTDDS_DEFAULT_PROFILES_FILE', profile)


@contextmanager
def node_process(params: dict, stdout=None) -> Iterator[subprocess.Popen]:
    """``segmentation_node`` started with ``params`` (its ``ros__parameters``); stopped on exit."""
    import yaml

    tmp = tempfile.NamedTemporaryFile('w', suffix='.yaml', delete=False)
    # '/**' matches the node under any name and namespace ('segmentation_node' would not)
    yaml.safe_dump({'/**': {'ros__parameters': params}}, tmp)
    tmp.close()
    proc = subprocess.Popen(
        [
            sys.executable,
            '-m',
            'vsda_ros.ros.segmentation_node',
            '--ros-args',
            '--params-file',
            tmp.name,
        ],
        stdout=stdout,
        stderr=subprocess.STDOUT if stdout is not None else None,
    )
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        os.unlink(tmp.name)


def prepare_compiled(params: dict) -> None:
    """Build, in this process, the compiled-model cache entry and accuracy evidence that a
    node started with ``params`` will load (what ``vsda prepare`` does): a first export takes
    30 s to 5 min on 2 cores, longer than a tool waits for its node to come up. Nothing to do
    for ``backend: torch``; a cached entry loads in seconds.

    Raises what the node's own loading raises (:func:`vsda_ros.ros.processing.load_pipeline`,
    which this calls with the node's defaults for what ``params`` leaves out).
    """
    from vsda_ros.ros.parameters import PARAMETERS
    from vsda_ros.ros.processing import load_pipeline

    def get(name: str) -> str:
        return str(params.get(name, PARAMETERS[name].default))

    if get('backend') == 'torch':
        return
    load_pipeline(
        get('model'),
        get('input_size'),
        get('device'),
        get('backend'),
        get('precision'),
        temporal_weights='none',
        warmup=0,
    )


@contextmanager
def client_node(name: str):
    """An rclpy node in a context of its own with a single-threaded executor: (node, executor)."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node(name, context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    try:
        yield node, executor
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown(context=context)
