"""The managed node against the real tools: ``ros2 launch ... lifecycle:=true`` and
``ros2 lifecycle get/set`` (ros2lifecycle, built from the pinned ros2cli sources by
``make ros2-tools``), over DDS (the run's domain, loopback).

One launch walks the whole lifecycle: unconfigured (parameters readable with ``ros2 param
get``), ``configure`` (no masks yet), ``activate`` (masks at the input size with the input
header), ``deactivate`` (no masks), ``cleanup``, ``shutdown`` (the node exits 0 and the launch
with it). Skipped, with the reason, without ``VSDA_ROS2_TOOLS`` (see test_ros2_tools.py, whose
workspace and camera helpers this reuses). Every command, its exit code and its first output
line are printed (``pytest -s``).
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
from test_ros2_tools import (
    SHIPPED_MODEL,
    TRACEBACK,
    _Camera,
    _kill_nodes,
    _params_file,
    _run,
    _start_launch,
    _wait_no_node,
    tools,
    workspace,
)

__all__ = ['tools', 'workspace']  # module-scoped fixtures from test_ros2_tools
NODE = '/lc/segmentation_node'
TOOL_ARGS = '--no-daemon --spin-time 3'  # discovery time: fewer 'Node not found' retries


class Transcript:
    """Runs ``ros2`` commands in the workspace and keeps (command, rc, first line) for the
    report."""

    def __init__(self, tools: Path, ws: Path) -> None:
        self.tools, self.ws = tools, ws
        self.lines: list[str] = []

    def run(self, command: str, retry_s: float = 0.0) -> subprocess.CompletedProcess:
        """Run ``command``; while it says 'Node not found' (discovery), retry for ``retry_s``."""
        end = time.monotonic() + retry_s
        while True:
            proc = _run(self.tools, self.ws, command, timeout=120)
            out = (proc.stdout + proc.stderr).strip()
            if 'Node not found' not in out or time.monotonic() > end:
                break
            time.sleep(1.0)
        first = out.splitlines()[0] if out else ''
        self.lines.append(f'$ {command}\n  rc={proc.returncode}: {first}')
        return proc

    def state(self) -> str:
        proc = self.run(f'ros2 lifecycle get {TOOL_ARGS} {NODE}', retry_s=30.0)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc.stdout.strip()

    def set(self, transition: str) -> None:
        proc = self.run(f'ros2 lifecycle set {TOOL_ARGS} {NODE} {transition}', retry_s=10.0)
        assert proc.returncode == 0 and 'Transitioning successful' in proc.stdout, (
            f'{transition}: rc={proc.returncode}\n{proc.stdout}{proc.stderr}'
        )


def _no_new_masks(camera: _Camera, seconds: float) -> bool:
    """True when no mask arrives for ``seconds`` (after 0.5 s for one already in flight)."""
    time.sleep(0.5)
    before = len(camera.received['mask'])
    time.sleep(seconds)
    return len(camera.received['mask']) == before


@pytest.mark.ros
def test_ros2_lifecycle_drives_the_launched_node(tools, workspace, real_data, tmp_path):
    frames = sorted((real_data / 'camvid' / 'val').glob('*.png'))[:4]
    log = tmp_path / 'launch.log'
    launch = _start_launch(
        tools,
        workspace,
        f'lifecycle:=true namespace:=lc '
        f'image_topic:=/lc_cam/image_raw model:={SHIPPED_MODEL} '
        f'params_file:={_params_file(tmp_path)}',
        log,
    )
    ros2 = Transcript(tools, workspace)
    camera = None
    try:
        assert ros2.state() == 'unconfigured [1]', log.read_text()[-3000:]
        param = ros2.run(f'ros2 param get {TOOL_ARGS} {NODE} model', retry_s=10.0)
        assert param.returncode == 0 and SHIPPED_MODEL in param.stdout, param.stdout
        ros2.set('configure')
        assert ros2.state() == 'inactive [2]'
        camera = _Camera(frames, '/lc_cam/image_raw', 'lc')
        assert _no_new_masks(camera, 2.0), 'masks while inactive (configured)'

        ros2.set('activate')  # masks prove it active (one ros2 call less: ~6 s)
        camera.wait_masks(2, timeout=60, launch=launch)
        assert len(camera.received['mask']) >= 2, log.read_text()[-3000:]
        for mask in camera.received['mask']:
            stamp = (mask.header.stamp.sec, mask.header.stamp.nanosec)
            assert (mask.height, mask.width) == camera.sent[stamp]
            assert mask.header.frame_id == 'camvid_camera'

        ros2.set('deactivate')
        assert ros2.state() == 'inactive [2]'
        assert _no_new_masks(camera, 2.0), 'masks after deactivate'
        ros2.set('cleanup')
        assert ros2.state() == 'unconfigured [1]'
        ros2.set('shutdown')
        rc = launch.wait(timeout=30)
        left = _wait_no_node(workspace, 10.0)
        output = log.read_text()
        ros2.lines.append(f'ros2 launch exit code after shutdown: {rc}; nodes left: {left}')
        assert rc == 0 and not left, f'rc={rc} left={left}\n{output[-3000:]}'
        assert TRACEBACK not in output, output
        assert 'configure failed' not in output and 'shut down (from unconfigured)' in output
    finally:
        print('\n'.join(ros2.lines))
        if camera is not None:
            camera.close()
        if launch.poll() is None:
            launch.kill()
            launch.wait()
        _kill_nodes(workspace)
