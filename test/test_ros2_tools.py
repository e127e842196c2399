"""The package against the real ROS 2 tools: colcon build, ros2 launch, ros2 param, signals.

The tools (launch, launch_ros, ros2cli, colcon) are built from the pinned sources in
../shared/ros2-src by ``make ros2-tools`` (tools/build_ros2_tools.sh), which exports their folder
as ``VSDA_ROS2_TOOLS``; without it these tests are skipped. Each test works in a colcon
workspace of its own (``src/vsda_ros`` = a copy of this repository), sources the tools'
``setup.bash`` (standing in for /opt/ros/kilted) and the workspace's ``install/setup.bash``, and
runs the commands a user runs, in an environment like a fresh ROS install: no ``vsda`` on PATH,
empty ``VSDA_DATA_DIR`` and ``VSDA_CACHE_DIR`` (so only the shipped model can start), the test
run's ``ROS_DOMAIN_ID`` and ``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST`` (conftest.py).

Launches are started once per scenario group: one with frames flowing that checks the params
file, namespace and remapping, the outputs and then SIGINT; one for SIGTERM; the fail-early
cases (missing params file, bad model path, rviz without rviz2, default model without weights).
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
TOOLS = os.environ.get('VSDA_ROS2_TOOLS', '')
#: not copied into the test workspace's src/vsda_ros
COPY_IGNORE = shutil.ignore_patterns(
    '.venv',
    '.git',
    'build',
    'install',
    'log',
    'out',
    'runs',
    'demo_out',
    '__pycache__',
    '*.egg-info',
    '.pytest_cache',
    '.mypy_cache',
    '.ruff_cache',
)
SHIPPED_MODEL = 'espnetv2-camvid-tsl'  # in the package: starts without any download
PARAMS = {
    'strategy': 'per_frame',
    'input_size': '240x176',
    'keyframe_interval': 7,
    'overlay_alpha': 0.25,
    'backend': 'torch',
}
TRACEBACK = 'Traceback (most recent call last)'


# ---- vsda_ros.paths.vsda_command: the command named in messages (no tools needed) ------------


def _fake_ament_prefix(tmp_path: Path, with_script: bool = True) -> Path:
    prefix = tmp_path / 'install'
    index = prefix / 'share' / 'ament_index' / 'resource_index' / 'packages'
    index.mkdir(parents=True)
    (index / 'vsda_ros').write_text('')
    if with_script:
        (prefix / 'lib' / 'vsda_ros').mkdir(parents=True)
        (prefix / 'lib' / 'vsda_ros' / 'vsda').write_text('#!/bin/sh\n')
    return prefix


def test_vsda_command_in_an_ament_install(tmp_path, monkeypatch):
    pytest.importorskip('ament_index_python')
    from vsda_ros import paths

    prefix = _fake_ament_prefix(tmp_path)
    monkeypatch.setenv('AMENT_PREFIX_PATH', str(prefix))
    monkeypatch.setattr(paths.shutil, 'which', lambda name: None)
    assert paths.ament_install_prefix() == prefix
    assert paths.vsda_command('fetch espnet-camvid') == 'ros2 run vsda_ros vsda fetch espnet-camvid'
    # a sourced workspace whose lib dir is on PATH, or a pip install: plain `vsda`
    monkeypatch.setattr(paths.shutil, 'which', lambda name: f'/somewhere/bin/{name}')
    assert paths.vsda_command('fetch espnet-camvid') == 'vsda fetch espnet-camvid'


def test_vsda_command_outside_an_ament_install(tmp_path, monkeypatch):
    from vsda_ros import paths

    monkeypatch.setattr(paths.shutil, 'which', lambda name: None)
    monkeypatch.setenv('AMENT_PREFIX_PATH', str(tmp_path / 'nothing'))
    assert paths.ament_install_prefix() is None
    assert paths.vsda_command('fetch espnet-camvid') == 'vsda fetch espnet-camvid'
    # registered in the index but no script in lib/vsda_ros (e.g. an editable pip install)
    monkeypatch.setenv('AMENT_PREFIX_PATH', str(_fake_ament_prefix(tmp_path, with_script=False)))
    assert paths.vsda_command('fetch x') == 'vsda fetch x'


def test_missing_weights_message_names_the_command(tmp_path, monkeypatch):
    from vsda_ros import paths
    from vsda_ros.models.published import find_weights
    from vsda_ros.models.zoo import ZOO

    pytest.importorskip('ament_index_python')
    monkeypatch.setenv('VSDA_DATA_DIR', str(tmp_path / 'data'))
    monkeypatch.setenv('VSDA_CACHE_DIR', str(tmp_path / 'cache'))
    monkeypatch.setattr(paths.shutil, 'which', lambda name: None)
    monkeypatch.setenv('AMENT_PREFIX_PATH', str(_fake_ament_prefix(tmp_path)))
    fetch = 'run `ros2 run vsda_ros vsda fetch espnet-camvid`'
    with pytest.raises(FileNotFoundError, match=fetch):
        find_weights(ZOO['espnet-camvid'], download=False)
    monkeypatch.delenv('AMENT_PREFIX_PATH')
    with pytest.raises(FileNotFoundError, match='run `vsda fetch espnet-camvid`'):
        find_weights(ZOO['espnet-camvid'], download=False)


# ---- the real tools ----------------------------------------------------------------------


@pytest.fixture(scope='module')
def tools() -> Path:
    if not TOOLS:
        pytest.skip(
            'VSDA_ROS2_TOOLS is not set: run through `make test` (it builds the ROS 2 '
            'tools with `make ros2-tools`) or export it'
        )
    path = Path(TOOLS)
    if not (path / '.complete').is_file():
        pytest.skip(
            f'ROS 2 tools not built at VSDA_ROS2_TOOLS={path} (run `make ros2-tools`; '
            'it needs ../shared/ros2-src)'
        )
    return path


def _ros_env(tmp: Path) -> dict[str, str]:
    """A fresh-ROS-install-like environment: this run's network settings, no project venv."""
    env = dict(os.environ)
    assert env['ROS_AUTOMATIC_DISCOVERY_RANGE'] == 'LOCALHOST' and 'ROS_DOMAIN_ID' in env
    for name in (
        'PYTHONPATH',
        'VIRTUAL_ENV',
        'AMENT_PREFIX_PATH',
        'CMAKE_PREFIX_PATH',
        'COLCON_PREFIX_PATH',
        'PYTHONHOME',
    ):
        env.pop(name, None)
    # no `vsda` / segmentation_node on PATH (a user's activated venv or ~/.local/bin)
    env['PATH'] = os.pathsep.join(
        p
        for p in env.get('PATH', '').split(os.pathsep)
        if p and not (Path(p) / 'vsda').exists() and not (Path(p) / 'segmentation_node').exists()
    )
    (tmp / 'data').mkdir(exist_ok=True)
    (tmp / 'cache').mkdir(exist_ok=True)
    env.update(
        VSDA_DATA_DIR=str(tmp / 'data'),
        VSDA_CACHE_DIR=str(tmp / 'cache'),
        OMP_NUM_THREADS='1',
        PYTHONUNBUFFERED='1',
        RCUTILS_COLORIZED_OUTPUT='0',
    )
    return env


def _shell(tools: Path, ws: Path | None, command: str) -> list[str]:
    script = f'source {shlex.quote(str(tools / "setup.bash"))} && '
    if ws is not None:
        script += f'source {shlex.quote(str(ws / "install" / "setup.bash"))} && '
    return ['bash', '-c', script + 'exec ' + command]


def _workspace(tools: Path, base: Path, *colcon_args: str) -> Path:
    ws = base / 'ws'
    shutil.copytree(ROOT, ws / 'src' / 'vsda_ros', ignore=COPY_IGNORE, symlinks=True)
    start = time.monotonic()
    proc = subprocess.run(
        _shell(
            tools,
            None,
            'python -m colcon build --event-handlers console_direct- ' + ' '.join(colcon_args),
        ),
        cwd=ws,
        env=_ros_env(base),
        capture_output=True,
        text=True,
        timeout=300,
    )
    print(
        f'colcon build {" ".join(colcon_args)}: rc={proc.returncode} '
        f'in {time.monotonic() - start:.1f} s'
    )
    assert proc.returncode == 0, f'colcon build failed:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}'
    assert 'Unknown distribution option' not in proc.stderr + proc.stdout
    return ws


@pytest.fixture(scope='module')
def workspace(tools, tmp_path_factory) -> Path:
    """`colcon build` (copies) of the package."""
    return _workspace(tools, tmp_path_factory.mktemp('colcon'))


@pytest.fixture(scope='module')
def symlink_workspace(tools, tmp_path_factory) -> Path:
    """`colcon build --symlink-install` of the package."""
    return _workspace(tools, tmp_path_factory.mktemp('colcon_symlink'), '--symlink-install')


def _run(tools: Path, ws: Path, command: str, timeout: float = 120) -> subprocess.CompletedProcess:
    start = time.monotonic()
    proc = subprocess.run(
        _shell(tools, ws, command),
        cwd=ws,
        env=_ros_env(ws.parent),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    print(f'$ {command}\n  rc={proc.returncode} in {time.monotonic() - start:.1f} s')
    return proc


def _node_pids(ws: Path) -> list[int]:
    """segmentation_node processes started from ``ws`` (their command line names its install)."""
    pids = []
    for entry in Path('/proc').iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / 'cmdline').read_bytes().replace(b'\0', b' ').decode(errors='replace')
            state = next(
                line
                for line in (entry / 'status').read_text().splitlines()
                if line.startswith('State:')
            )
        except (OSError, StopIteration):
            continue
        if 'segmentation_node' in cmdline and str(ws) in cmdline and 'zombie' not in state:
            pids.append(int(entry.name))
    return pids


def _wait_no_node(ws: Path, seconds: float) -> list[int]:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if not _node_pids(ws):
            return []
        time.sleep(0.25)
    return _node_pids(ws)


def _kill_nodes(ws: Path) -> None:
    for pid in _node_pids(ws):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_symlink_install_links_the_sources(symlink_workspace):
    share = symlink_workspace / 'install' / 'vsda_ros' / 'share' / 'vsda_ros'
    launch_file = share / 'launch' / 'segment.launch.py'
    assert launch_file.is_symlink()
    assert (
        launch_file.resolve()
        == (symlink_workspace / 'src' / 'vsda_ros' / 'launch' / 'segment.launch.py').resolve()
    )
    assert (share / 'config' / 'segment.yaml').is_file()
    assert (symlink_workspace / 'install' / 'vsda_ros' / 'lib' / 'vsda_ros' / 'vsda').is_file()


def test_copy_install_has_scripts_config_and_shipped_model(tools, workspace):
    prefix = workspace / 'install' / 'vsda_ros'
    for script in ('segmentation_node', 'vsda'):
        assert (prefix / 'lib' / 'vsda_ros' / script).is_file(), script
    proc = _run(tools, workspace, 'ros2 pkg prefix vsda_ros')
    assert proc.returncode == 0 and Path(proc.stdout.strip()) == prefix, proc.stdout + proc.stderr
    zoo = list(prefix.glob(f'lib/python3*/site-packages/vsda_ros/zoo/{SHIPPED_MODEL}.pt'))
    assert zoo, 'the shipped model is not installed (setup.py package_data)'


# ---- fail before anything starts -----------------------------------------------------------


def _assert_fails_early(proc: subprocess.CompletedProcess, expected: str) -> None:
    output = proc.stdout + proc.stderr
    assert proc.returncode == 1, f'rc={proc.returncode}\n{output}'
    errors = [line for line in output.splitlines() if '[ERROR]' in line]
    assert len(errors) == 1 and expected in errors[0], output
    assert 'process started' not in output, f'something was started:\n{output}'
    assert TRACEBACK not in output, output


@pytest.mark.ros
@pytest.mark.parametrize(
    'argument, expected',
    [
        (
            'params_file:=/nonexistent/segment.yaml',
            'params_file:=/nonexistent/segment.yaml: no such file',
        ),
        ('model:=/nonexistent/model.pt', 'model:=/nonexistent/model.pt: no such checkpoint'),
        ('rviz:=true', 'rviz:=true but rviz2 is not installed'),
    ],
)
def test_launch_fails_before_starting_anything(tools, symlink_workspace, argument, expected):
    proc = _run(tools, symlink_workspace, f'ros2 launch vsda_ros segment.launch.py {argument}')
    _assert_fails_early(proc, expected)


@pytest.mark.ros
def test_default_model_without_weights_names_the_ros2_run_fetch(tools, symlink_workspace):
    """The default launch on a fresh install: the FATAL names the command that works there."""
    try:
        proc = _run(tools, symlink_workspace, 'ros2 launch vsda_ros segment.launch.py', timeout=150)
    finally:
        _kill_nodes(symlink_workspace)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 1, output
    assert 'ros2 run vsda_ros vsda fetch espnet-camvid' in output, output
    assert '`vsda fetch' not in output, output


# ---- a launch with frames flowing -----------------------------------------------------------


class _Camera:
    """Publishes real CamVid frames (bgr8, sensor-data QoS) and records the node's outputs."""

    def __init__(self, frames: list[Path], image_topic: str, namespace: str) -> None:
        import cv2
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import qos_profile_sensor_data
        from sensor_msgs.msg import Image

        self.images = [cv2.imread(str(f), cv2.IMREAD_COLOR) for f in frames]
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node('vsda_tools_test_camera', context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.pub = self.node.create_publisher(Image, image_topic, qos_profile_sensor_data)
        self.sent: dict[tuple[int, int], tuple[int, int]] = {}  # stamp -> (height, width)
        self.received: dict[str, list] = {'mask': [], 'color_mask': []}
        for name in self.received:
            self.node.create_subscription(
                Image, f'/{namespace}/{name}', lambda msg, n=name: self.received[n].append(msg), 10
            )
        self.mask_topic = f'/{namespace}/mask'
        self._stop = threading.Event()
        self._count = 0
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        from sensor_msgs.msg import Image

        next_frame = time.monotonic()
        while not self._stop.is_set():
            self.executor.spin_once(timeout_sec=0.02)
            if time.monotonic() < next_frame:
                continue
            next_frame += 0.2  # 5 Hz: the node drops what it cannot process
            img = self.images[self._count % len(self.images)]
            msg = Image()
            msg.header.stamp.sec, msg.header.stamp.nanosec = 1000 + self._count, 123
            msg.header.frame_id = 'camvid_camera'
            msg.height, msg.width = img.shape[:2]
            msg.encoding, msg.step = 'bgr8', img.shape[1] * 3
            msg.data = img.tobytes()
            self.sent[(1000 + self._count, 123)] = img.shape[:2]
            self.pub.publish(msg)
            self._count += 1

    def wait_masks(self, n: int, timeout: float, launch: subprocess.Popen) -> None:
        end = time.monotonic() + timeout
        while len(self.received['mask']) < n and time.monotonic() < end and launch.poll() is None:
            time.sleep(0.1)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.node.destroy_node()
        self.context.try_shutdown()


def _start_launch(tools: Path, ws: Path, arguments: str, log: Path) -> subprocess.Popen:
    command = f'ros2 launch vsda_ros segment.launch.py {arguments}'
    print(f'$ {command}')
    return subprocess.Popen(
        _shell(tools, ws, command),
        cwd=ws,
        env=_ros_env(ws.parent),
        stdout=log.open('w'),
        stderr=subprocess.STDOUT,
    )


def _params_file(tmp: Path) -> Path:
    path = tmp / 'my_segment.yaml'
    path.write_text(yaml.safe_dump({'/**': {'ros__parameters': PARAMS}}))
    return path


def _stop(launch: subprocess.Popen, sig: int, log: Path, ws: Path) -> tuple[int, str, list]:
    """Send ``sig`` to ``ros2 launch``; (its exit code, its output, node pids left after 10 s)."""
    launch.send_signal(sig)
    try:
        rc = launch.wait(timeout=30)
    except subprocess.TimeoutExpired:
        launch.kill()
        rc = launch.wait()
    left = _wait_no_node(ws, 10.0)
    return rc, log.read_text(), left


@pytest.fixture
def frames(real_data) -> list[Path]:
    return sorted((real_data / 'camvid' / 'val').glob('*.png'))[:4]


@pytest.mark.ros
def test_launch_namespace_remap_params_outputs_and_sigint(tools, workspace, frames, tmp_path):
    """params_file, namespace and image_topic reach the node; masks come out at the input size
    with the input header; SIGINT with frames flowing ends everything cleanly."""
    log = tmp_path / 'launch.log'
    launch = _start_launch(
        tools,
        workspace,
        f'namespace:=front image_topic:=/cam/image_raw '
        f'params_file:={_params_file(tmp_path)} model:={SHIPPED_MODEL}',
        log,
    )
    camera = None
    try:
        camera = _Camera(frames, '/cam/image_raw', 'front')
        camera.wait_masks(2, timeout=90, launch=launch)
        assert len(camera.received['mask']) >= 2, (
            f'no masks (rc={launch.poll()}):\n{log.read_text()[-4000:]}'
        )
        for mask in camera.received['mask']:
            stamp = (mask.header.stamp.sec, mask.header.stamp.nanosec)
            assert stamp in camera.sent, f'mask stamp {stamp} is not an input stamp'
            assert (mask.height, mask.width) == camera.sent[stamp]  # the input size
            assert mask.header.frame_id == 'camvid_camera' and mask.encoding == 'mono8'
        assert camera.received['color_mask'], 'no color_mask'

        dump = _run(
            tools, workspace, 'ros2 param dump --no-daemon --timeout 10 /front/segmentation_node'
        )
        assert dump.returncode == 0, dump.stdout + dump.stderr
        values = yaml.safe_load(dump.stdout)['/front/segmentation_node']['ros__parameters']
        for name, value in PARAMS.items():
            assert values[name] == value, (name, values[name])
        assert values['model'] == SHIPPED_MODEL

        rc, output, left = _stop(launch, signal.SIGINT, log, workspace)  # frames still flowing
        print(f'SIGINT: ros2 launch rc={rc}, segmentation_node left: {left}')
        assert not left, f'segmentation_node still running after SIGINT: {left}'
        assert rc == 0, f'rc={rc}\n{output}'
        assert TRACEBACK not in output, output
    finally:
        if camera is not None:
            camera.close()
        if launch.poll() is None:
            launch.kill()
            launch.wait()
        _kill_nodes(workspace)


@pytest.mark.ros
def test_sigterm_with_frames_flowing_leaves_no_node(tools, workspace, frames, tmp_path):
    """SIGTERM to ``ros2 launch`` (systemd, docker stop, a supervisor) must not orphan the node.

    Upstream launch exits 143 at once on SIGTERM without stopping its processes: the node has to
    notice that its parent died and exit by itself.
    """
    log = tmp_path / 'launch.log'
    launch = _start_launch(
        tools,
        workspace,
        f'image_topic:=/cam2/image_raw namespace:=rear '
        f'params_file:={_params_file(tmp_path)} model:={SHIPPED_MODEL}',
        log,
    )
    camera = None
    try:
        camera = _Camera(frames, '/cam2/image_raw', 'rear')
        camera.wait_masks(1, timeout=90, launch=launch)
        assert camera.received['mask'], f'no masks (rc={launch.poll()}):\n{log.read_text()[-4000:]}'
        rc, output, left = _stop(launch, signal.SIGTERM, log, workspace)
        print(f'SIGTERM: ros2 launch rc={rc}, segmentation_node left after 10 s: {left}')
        assert not left, (
            f'segmentation_node (pids {left}) still running 10 s after SIGTERM to '
            f'ros2 launch (rc={rc})'
        )
        assert rc in (0, 143, -signal.SIGTERM), f'rc={rc}\n{output}'
        assert TRACEBACK not in output, output
    finally:
        if camera is not None:
            camera.close()
        if launch.poll() is None:
            launch.kill()
            launch.wait()
        _kill_nodes(workspace)
