"""segmentation_node's process lifecycle: it dies with its parent, a Ctrl-C while it starts is
quiet, and its ready line names its output topics (issue 24 item 8).

``ros2 launch`` exits at once on SIGTERM without stopping its children; the node must notice
that its parent died (prctl PR_SET_PDEATHSIG, and a watcher of ``os.getppid()``) instead of
running on as an orphan. Processes run with the conftest's loopback-only ROS environment.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip('rclpy')

REPO = Path(__file__).resolve().parents[1]
_SCRIPT = Path(sys.executable).parent / 'segmentation_node'
#: the installed console script (the real entry point), else the module
NODE = (
    [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, '-m', 'vsda_ros.ros.segmentation_node']
)
#: a small network input keeps the start (warm-up) short on 2 cores
ARGS = [
    '--ros-args',
    '-p',
    'model:=espnet-camvid',
    '-p',
    'input_size:=240x176',
    '-p',
    'backend:=torch',
]


def _env(real_data: Path) -> dict[str, str]:
    return {
        **os.environ,
        'VSDA_DATA_DIR': str(real_data),
        'PYTHONUNBUFFERED': '1',
        'RCUTILS_LOGGING_BUFFERED_STREAM': '0',
    }


def _alive(pid: int) -> bool:
    """Whether ``pid`` still runs (a zombie has exited: it only waits to be reaped)."""
    try:
        state = Path(f'/proc/{pid}/stat').read_text().rsplit(')', 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state != 'Z'


def _wait_for(predicate, timeout: float, period: float = 0.1) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(period)
    return predicate()


def test_ready_line_lists_output_topics():
    from vsda_ros.ros.node import ready_line

    line = ready_line(
        'espnet-camvid', 'cpu', (480, 360), 'per_frame', ['/image'], ['/mask', '/color_mask'], []
    )
    assert "outputs=['/mask', '/color_mask']" in line
    assert "cameras=['/image']" in line and 'temporal modules=none' in line


def test_ready_line_of_a_running_node_names_every_output(real_data, tmp_path):
    log_path = tmp_path / 'node.log'
    with open(log_path, 'w') as log:
        proc = subprocess.Popen(
            NODE + ARGS + ['-r', '__ns:=/front'],
            env=_env(real_data),
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        assert _wait_for(
            lambda: 'ready:' in log_path.read_text() or proc.poll() is not None, 120
        ), 'node did not start in 120 s'
        assert proc.poll() is None, log_path.read_text()
        ready = next(ln for ln in log_path.read_text().splitlines() if 'ready:' in ln)
        outputs = ready.split('outputs=', 1)[1]
        for name in ('mask', 'color_mask', 'overlay', 'confidence'):
            assert f"'/front/{name}'" in outputs, ready
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert 'Traceback' not in log_path.read_text()


#: the parent starts the node, prints its pid and waits to be killed
_PARENT = """
import subprocess, sys
log = open(sys.argv[1], 'w')
proc = subprocess.Popen(sys.argv[2:], stdout=log, stderr=subprocess.STDOUT)
print(proc.pid, flush=True)
proc.wait()
"""


def test_node_ends_when_its_parent_is_killed(real_data, tmp_path):
    log_path = tmp_path / 'node.log'
    parent = subprocess.Popen(
        [sys.executable, '-c', _PARENT, str(log_path), *NODE, *ARGS],
        env=_env(real_data),
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    pid = int(parent.stdout.readline())
    try:
        assert _wait_for(lambda: 'ready:' in log_path.read_text() or not _alive(pid), 120), (
            'node did not start in 120 s'
        )
        assert _alive(pid), log_path.read_text()
        parent.kill()  # SIGKILL: the parent cannot pass anything on
        parent.wait()
        assert _wait_for(lambda: not _alive(pid), 10), (
            f'node {pid} still runs 10 s after its parent died (orphan)'
        )
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
    text = log_path.read_text()
    assert 'Traceback' not in text, text


@pytest.mark.parametrize('delay_s', [0.3, 0.8])
def test_ctrl_c_while_starting_exits_quietly(real_data, delay_s):
    proc = subprocess.Popen(
        NODE + ARGS,
        env=_env(real_data),
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        time.sleep(delay_s)
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert 'Traceback' not in out and 'KeyboardInterrupt' not in out, out
    assert len(out.strip().splitlines()) <= 1, out
    assert proc.returncode in (0, 130), (proc.returncode, out)


def test_parent_watcher_fires_once_when_the_parent_changes():
    import threading

    from vsda_ros.ros.process_guard import ParentWatcher, die_with_parent

    fired = threading.Event()
    calls = []
    watcher = ParentWatcher(
        os.getppid() + 12345, lambda: (calls.append(1), fired.set()), period_s=0.05
    ).start()
    assert fired.wait(5) and calls == [1]
    quiet = ParentWatcher(os.getppid(), lambda: calls.append(2), period_s=0.05).start()
    time.sleep(0.3)
    quiet.stop()
    watcher.stop()
    assert calls == [1]
    if sys.platform.startswith('linux'):
        assert die_with_parent(0)  # 0 clears the parent-death signal of this test process
