"""``vsda replay`` over real DDS (loopback, per-run domain from conftest).

A bag written by :func:`write_bag` is replayed — by the CLI in a subprocess, and by
:func:`replay_bag` in this process — and a test node receives the messages as serialized bytes:
they must be the bag's bytes exactly, in order, at roughly the recorded timing over ``--rate``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

rclpy = pytest.importorskip('rclpy')
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from rclpy.serialization import deserialize_message  # noqa: E402
from sensor_msgs.msg import CompressedImage, Image  # noqa: E402

from ros_helpers import spin_until  # noqa: E402
from vsda_ros.data.bag_writer import write_bag  # noqa: E402
from vsda_ros.data.bags import open_reader  # noqa: E402
from vsda_ros.frames import Frame  # noqa: E402
from vsda_ros.ros.tools.replay import replay_bag  # noqa: E402
from vsda_ros.ros.tools.replay_topics import parse_remaps  # noqa: E402

pytestmark = pytest.mark.ros
REPO = Path(__file__).resolve().parents[1]
N, FPS = 12, 20.0  # 12 frames at 20 Hz: 0.55 s recorded


def make_bag(out: Path, compression: str = 'none', storage: str = 'mcap') -> Path:
    rng = np.random.default_rng(3)
    pairs = [
        (
            Frame(rng.integers(0, 256, (36, 48, 3), dtype=np.uint8), stamp=50.0 + i / FPS),
            rng.integers(0, 12, (36, 48), dtype=np.uint8),
        )
        for i in range(N)
    ]
    write_bag(out, pairs, storage=storage, compression=compression)
    return out


def bag_bytes(path: Path) -> dict[str, list[bytes]]:
    reader = open_reader(path)
    try:
        out: dict[str, list[bytes]] = {}
        for conn, _, raw in reader.messages():
            out.setdefault(conn.topic, []).append(bytes(raw))
        return out
    finally:
        reader.close()


class Receiver:
    """A test node that records (arrival time, serialized bytes) per topic."""

    def __init__(self, topics: dict[str, type]) -> None:
        self.context = rclpy.Context()
        rclpy.init(args=[], context=self.context)
        self.node = rclpy.create_node('vsda_replay_test', context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
        self.got: dict[str, list[tuple[float, bytes]]] = {t: [] for t in topics}
        self.subs = [
            self.node.create_subscription(
                cls,
                topic,
                lambda raw, t=topic: self.got[t].append((time.monotonic(), raw)),
                qos,
                raw=True,
            )
            for topic, cls in topics.items()
        ]

    def spin_until(self, predicate, timeout: float) -> bool:
        return spin_until(self.executor, predicate, timeout, period=0.02)

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)


@pytest.fixture
def receiver_factory():
    made: list[Receiver] = []

    def make(topics: dict[str, type]) -> Receiver:
        made.append(Receiver(topics))
        return made[-1]

    yield make
    for r in made:
        r.close()


def test_cli_replay_is_bit_identical_and_timed(tmp_path: Path, receiver_factory) -> None:
    bag = make_bag(tmp_path / 'bag')
    expected = bag_bytes(bag)
    recv = receiver_factory({'/camera/image_raw': Image, '/gt': Image})
    rate = 2.0
    proc = subprocess.Popen(
        [
            sys.executable,
            '-m',
            'vsda_ros.apps.replay',
            str(bag),
            '--rate',
            str(rate),
            '--remap',
            '/camera/labels:=/gt',
            '--wait-subscribers',
            '1',
            '--start-delay',
            '2.0',
            # (the wait covers the image topic only; the delay lets /gt's subscriber match too)
            '--quiet',
            '--json',
            str(tmp_path / 'summary.json'),
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        done = recv.spin_until(
            lambda: (
                len(recv.got['/camera/image_raw']) >= N
                and len(recv.got['/gt']) >= N
                and proc.poll() is not None
            ),
            25,
        )
        out, _ = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out
    assert done, f'received {[len(v) for v in recv.got.values()]} of {N} each\n{out}'
    # bit-identical CDR, in the recorded order
    assert [raw for _, raw in recv.got['/camera/image_raw']] == expected['/camera/image_raw']
    assert [raw for _, raw in recv.got['/gt']] == expected['/camera/labels']
    # recorded timing scaled by the rate (a lower bound only: a busy machine is late, not early)
    arrivals = [t for t, _ in recv.got['/camera/image_raw']]
    recorded = (N - 1) / FPS
    assert arrivals[-1] - arrivals[0] >= 0.8 * recorded / rate
    summary = json.loads((tmp_path / 'summary.json').read_text())
    assert summary['published'] == 2 * N and not summary['interrupted']
    assert summary['topics']['/gt'] == {
        'bag_topic': '/camera/labels',
        'type': 'sensor_msgs/msg/Image',
        'published': N,
        'rate': pytest.approx(summary['topics']['/gt']['rate']),
    }
    assert summary['recorded_duration'] == pytest.approx(recorded, abs=1e-6)
    assert summary['seconds'] >= 0.8 * recorded / rate
    assert 'replayed' in out and '/gt' in out


def test_replay_bag_restamp_loop_compressed(tmp_path: Path, receiver_factory) -> None:
    """In-process replay_bag: a jpeg bag, restamped, two passes; images and labels keep
    matching stamps and the pixel bytes are the bag's."""
    bag = make_bag(tmp_path / 'bag', compression='jpeg', storage='sqlite3')
    expected = bag_bytes(bag)
    topic = '/camera/image_raw/compressed'
    recv = receiver_factory({topic: CompressedImage, '/camera/labels': Image})
    result: dict = {}
    before = time.time()
    thread = threading.Thread(
        target=lambda: result.update(
            replay_bag(
                bag,
                rate=4.0,
                loop=True,
                max_loops=2,
                restamp=True,
                wait_subscribers=1,
                start_delay=0.3,
            )
        )
    )
    thread.start()
    try:
        done = recv.spin_until(
            lambda: len(recv.got[topic]) >= 2 * N and len(recv.got['/camera/labels']) >= 2 * N, 25
        )
    finally:
        thread.join(timeout=15)
    assert done and not thread.is_alive()
    assert result['loops'] == 2 and result['published'] == 4 * N and result['restamped']
    images = [deserialize_message(raw, CompressedImage) for _, raw in recv.got[topic]]
    labels = [deserialize_message(raw, Image) for _, raw in recv.got['/camera/labels']]
    originals = [deserialize_message(raw, CompressedImage) for raw in expected[topic]] * 2
    for img, lab, orig in zip(images, labels, originals, strict=False):
        assert bytes(img.data) == bytes(orig.data) and img.format == orig.format
        assert img.header.stamp == lab.header.stamp  # the pair still matches
        assert img.header.stamp.sec >= int(before)  # restamped to now, not 50 s
    stamps = [m.header.stamp.sec + m.header.stamp.nanosec * 1e-9 for m in images]
    # strictly increasing across passes
    assert all(b > a for a, b in zip(stamps, stamps[1:], strict=False))


def test_replay_errors(tmp_path: Path) -> None:
    bag = make_bag(tmp_path / 'bag')
    with pytest.raises(FileNotFoundError):
        replay_bag(tmp_path / 'missing')
    with pytest.raises(ValueError, match='rate'):
        replay_bag(bag, rate=0)
    with pytest.raises(ValueError, match='/camera/image_raw'):
        replay_bag(bag, topics=['/nope'])
    with pytest.raises(ValueError, match='not a replayed topic'):
        replay_bag(bag, topics=['/camera/image_raw'], remap=['/camera/labels:=/x'])
    with pytest.raises(ValueError, match='OLD:=NEW'):
        parse_remaps(['/a=/b'])
    assert parse_remaps(['/a:=/b', 'c:=d']) == {'/a': '/b', 'c': 'd'}
    proc = subprocess.run(
        [sys.executable, '-m', 'vsda_ros.apps.replay', str(bag), '--topics', '/nope'],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and '/camera/labels' in proc.stderr


def test_ctrl_c_exits_cleanly(tmp_path: Path) -> None:
    import re
    import signal

    bag = make_bag(tmp_path / 'bag')
    proc = subprocess.Popen(
        [sys.executable, '-m', 'vsda_ros.apps.replay', str(bag), '--loop', '--start-delay', '0'],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    seen: list[str] = []
    reader = threading.Thread(
        target=lambda: seen.extend(iter(lambda: proc.stdout.read(1), '')), daemon=True
    )
    reader.start()
    try:
        # interrupt once it is publishing (the progress bar counts messages), not after a
        # fixed sleep: on a loaded machine the imports alone can take longer than that
        deadline = time.monotonic() + 60
        while not re.search(r'[1-9]\d*msg', ''.join(seen)):
            assert proc.poll() is None and time.monotonic() < deadline, ''.join(seen)
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=20)
        reader.join(timeout=5)
    finally:
        if proc.poll() is None:
            proc.kill()
    out = ''.join(seen)
    assert proc.returncode == 0, out
    assert '(interrupted)' in out and 'Traceback' not in out


def test_ctrl_c_during_start_up_is_a_clean_exit(monkeypatch, capsys) -> None:
    """A Ctrl-C before a command handles it (here: while the parser imports the model zoo)
    exits 130 with one line, no traceback."""
    from vsda_ros import cli

    def interrupted():
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, 'build_parser', interrupted)
    assert cli.main(['replay', 'x']) == 130
    assert capsys.readouterr().err == 'vsda: interrupted\n'
