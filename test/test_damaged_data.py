"""Damaged and truncated inputs: every offline tool either refuses with one clear line (exit 2)
or, with ``--allow-truncated``, warns and reports ``frames_expected`` vs ``frames_read`` —
never a traceback, never a damaged input passed off as complete.

Bags are small synthetic ones written by the project's own writer in ``tmp_path``; the
truncated video is the first 10 % of the real dashcam clip's bytes (``real_data``), made in
``tmp_path``.
"""

from __future__ import annotations

import json
import logging
import os
import struct
from pathlib import Path

import numpy as np
import pytest

from vsda_ros.cli import main
from vsda_ros.data.bag_writer import write_bag
from vsda_ros.data.bags import BagSource
from vsda_ros.data.sources import FrameSource
from vsda_ros.frames import Frame


def check_storage(bag: Path) -> list[str]:
    from vsda_ros.data.bag_storage import check_storage as check

    return check(bag)


def reading(allow_incomplete: bool = False):
    from vsda_ros.data.integrity import reading as read_log

    return read_log(allow_incomplete)


H, W = 120, 160  # one rgb8 frame ≈ 58 KB: a 1 MB mcap chunk holds ~13 frames with labels


def synthetic_bag(
    out: Path, n: int, storage: str = 'mcap', topic: str = '/camera/image_raw', labels: bool = True
) -> Path:
    rng = np.random.default_rng(7)
    pairs = [
        (
            Frame(rng.integers(0, 256, (H, W, 3), dtype=np.uint8), stamp=20.0 + i / 10),
            rng.integers(0, 12, (H, W), dtype=np.uint8) if labels else None,
        )
        for i in range(n)
    ]
    write_bag(out, pairs, storage=storage, topic=topic)
    return out


def raises_incomplete(match: str):
    """``pytest.raises(IncompleteInputError, match=…)`` (imported late, so that this module
    also loads — and its tests fail one by one — on code without it)."""
    from vsda_ros.data.integrity import IncompleteInputError

    return pytest.raises(IncompleteInputError, match=match)


def storage_file(bag: Path) -> Path:
    return next(p for p in bag.iterdir() if p.suffix in ('.mcap', '.db3'))


def overwrite_middle(bag: Path, size: int, zeros: bool = False, at: float = 0.5) -> None:
    """Overwrite ``size`` bytes at fraction ``at`` of the bag's storage file (seeded)."""
    file = storage_file(bag)
    junk = bytes(size) if zeros else np.random.default_rng(11).bytes(size)
    with file.open('r+b') as fh:
        fh.seek(int(file.stat().st_size * at))
        fh.write(junk)


def one_error_line(err: str, command: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith(f'vsda {command}: error:')]
    assert len(errors) == 1, err
    assert 'Traceback' not in err
    return errors[0]


def written_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob('*') if p.is_file()] if folder.exists() else []


# ---------------------------------------------------------------------------------------------
# 15: mcap chunk CRCs are written and verified


def test_written_mcap_chunks_carry_their_crc(tmp_path: Path) -> None:
    """Every chunk of a bag from write_bag carries the CRC-32 of its uncompressed records
    (rosbags alone writes 0 = 'not available')."""
    import zlib

    from vsda_ros.data.bag_storage import _mcap_chunks

    bag = synthetic_bag(tmp_path / 'bag', 30)
    file = storage_file(bag)
    with file.open('rb') as fh:
        chunks = list(_mcap_chunks(fh, file.stat().st_size))
        assert len(chunks) >= 2
        for chunk in chunks:
            assert chunk.crc != 0 and chunk.compression == ''
            fh.seek(chunk.data_offset)
            assert zlib.crc32(fh.read(chunk.data_size)) == chunk.crc
    assert check_storage(bag) == []
    assert len(list(BagSource(bag).labelled())) == 30  # rosbags verifies them and agrees


@pytest.mark.parametrize('zeros', [False, True], ids=['random', 'zeros'])
def test_mcap_with_64k_overwritten_is_refused(tmp_path: Path, zeros: bool) -> None:
    bag = synthetic_bag(tmp_path / 'bag', 30)
    overwrite_middle(bag, 64 * 1024, zeros=zeros)
    problems = check_storage(bag)
    assert problems and 'chunk' in problems[0] and 'checksum mismatch' in problems[0]
    with raises_incomplete('damaged: chunk .*checksum mismatch.*--allow-truncated'):
        list(BagSource(bag).labelled())
    # allowed: the frames before the damaged chunk, counted and reported
    with reading(allow_incomplete=True) as reads:
        got = list(BagSource(bag).labelled())
    stats = reads.last
    assert 0 < len(got) < 30 and not stats.complete
    assert stats.frames_expected == 30 and stats.frames_read == len(got)
    assert any('checksum mismatch' in p for p in stats.problems)


def test_crc_less_mcap_damage_is_caught_by_the_message_count(tmp_path: Path) -> None:
    """A bag from another writer (chunk CRC 0) cannot be checksummed; records lost to damage
    still show: fewer messages read than the bag announces."""
    from vsda_ros.data.bag_storage import _mcap_chunks

    bag = synthetic_bag(tmp_path / 'bag', 30)
    file = storage_file(bag)
    with file.open('r+b') as fh:  # undo the seal: as rosbags writes it
        for chunk in list(_mcap_chunks(fh, file.stat().st_size)):
            fh.seek(chunk.offset + 9 + 24)
            fh.write(struct.pack('<I', 0))
    assert check_storage(bag) == []
    overwrite_middle(bag, 64 * 1024, zeros=True)
    with raises_incomplete(r'read \d+ of the 30 frames'):
        list(BagSource(bag))


def test_eval_refuses_a_damaged_mcap_and_allows_it_on_request(
    tmp_path: Path, capsys, real_data: Path
) -> None:
    bag = synthetic_bag(tmp_path / 'bag', 30)
    overwrite_middle(bag, 64 * 1024)
    args = [
        'eval',
        '--backend',
        'torch',
        '--source',
        str(bag),
        '--strategy',
        'per_frame',
        '--size',
        '64x48',
        '--quiet',
    ]
    assert main([*args, '--out', str(tmp_path / 'e1')]) == 2
    line = one_error_line(capsys.readouterr().err, 'eval')
    assert 'damaged' in line and 'checksum mismatch' in line and '--allow-truncated' in line
    assert main([*args, '--out', str(tmp_path / 'e2'), '--allow-truncated']) == 0
    report = json.loads((tmp_path / 'e2' / 'report.json').read_text())
    assert report['frames_expected'] == 30 and report['frames_read'] == report['frames'] < 30
    assert report['input_complete'] is False and report['input_problems']
    assert 'Incomplete input' in (tmp_path / 'e2' / 'report.md').read_text()


# ---------------------------------------------------------------------------------------------
# 13: sqlite3 bag corrupted in the middle


@pytest.fixture
def corrupt_db3(tmp_path: Path) -> Path:
    bag = synthetic_bag(tmp_path / 'bag', 8, storage='sqlite3')
    overwrite_middle(bag, 4096, at=0.4)
    return bag


def test_corrupt_sqlite_bag_is_one_clear_error(corrupt_db3: Path) -> None:
    problems = check_storage(corrupt_db3)
    assert problems and problems[0].startswith('sqlite3 quick_check:')
    with raises_incomplete('damaged: sqlite3'):
        list(BagSource(corrupt_db3))


def test_storage_errors_while_reading_are_one_line(
    tmp_path: Path, corrupt_db3: Path, monkeypatch
) -> None:
    """The storage reader failing mid-bag (apsw.CorruptError here) is turned into one line,
    also when the check before reading found nothing."""
    import vsda_ros.data.bags as bags

    monkeypatch.setattr(bags, 'check_storage', lambda path: [])
    with raises_incomplete(r'reading failed after \d+ messages \(CorruptError'):
        list(BagSource(corrupt_db3).labelled())
    with reading(allow_incomplete=True) as reads:
        list(BagSource(corrupt_db3).labelled())
    assert reads.last.problems and not reads.last.complete


def test_segment_on_a_corrupt_sqlite_bag_leaves_nothing(
    tmp_path: Path, corrupt_db3: Path, capsys, real_data: Path
) -> None:
    out = tmp_path / 'out'
    rc = main(
        [
            'segment',
            '--backend',
            'torch',
            '--input',
            str(corrupt_db3),
            '--out',
            str(out),
            '--size',
            '64x48',
            '--quiet',
        ]
    )
    assert rc == 2
    assert 'damaged' in one_error_line(capsys.readouterr().err, 'segment')
    assert written_files(out) == []


def test_segment_removes_partial_outputs_when_reading_fails(
    tmp_path: Path, corrupt_db3: Path, capsys, monkeypatch, real_data: Path
) -> None:
    """Damage found only after some frames were written (the storage reader fails mid-bag):
    the files this run wrote are removed and the error line says so."""
    import vsda_ros.data.bags as bags

    monkeypatch.setattr(bags, 'check_storage', lambda path: [])
    out = tmp_path / 'out'
    rc = main(
        [
            'segment',
            '--backend',
            'torch',
            '--input',
            str(corrupt_db3),
            '--out',
            str(out),
            '--size',
            '64x48',
            '--quiet',
        ]
    )
    assert rc == 2
    line = one_error_line(capsys.readouterr().err, 'segment')
    assert 'reading failed' in line and 'removed the' in line and 'partial output' in line
    assert written_files(out) == []


def test_eval_and_replay_on_a_corrupt_sqlite_bag(
    tmp_path: Path, corrupt_db3: Path, capsys, real_data: Path
) -> None:
    assert (
        main(
            [
                'eval',
                '--backend',
                'torch',
                '--source',
                str(corrupt_db3),
                '--strategy',
                'per_frame',
                '--size',
                '64x48',
                '--out',
                str(tmp_path / 'e'),
                '--quiet',
            ]
        )
        == 2
    )
    assert 'damaged' in one_error_line(capsys.readouterr().err, 'eval')
    pytest.importorskip('rclpy')
    assert main(['replay', str(corrupt_db3), '--start-delay', '0', '--quiet']) == 2
    assert 'nothing was published' in one_error_line(capsys.readouterr().err, 'replay')


# ---------------------------------------------------------------------------------------------
# 14: truncated video


@pytest.fixture
def truncated_video(tmp_path: Path, real_data: Path) -> Path:
    video = real_data / 'video' / 'solidWhiteRight.mp4'
    if not video.is_file():
        pytest.skip(f'dashcam video not found in VSDA_DATA_DIR ({real_data})')
    data = video.read_bytes()
    out = tmp_path / 'cut.mp4'
    out.write_bytes(data[: len(data) // 10])  # 221 frames announced, ~20 decodable
    return out


def test_truncated_video_source(truncated_video: Path) -> None:
    with raises_incomplete(r'truncated: read \d+ of the 221 frames'):
        list(FrameSource(truncated_video))
    with reading(allow_incomplete=True) as reads:
        frames = list(FrameSource(truncated_video))
    assert reads.last.frames_expected == 221 and reads.last.frames_read == len(frames) < 100
    # a pass stopped early claims nothing
    with reading() as reads:
        assert len([f for _, f in zip(range(3), FrameSource(truncated_video), strict=False)]) == 3
    assert reads.last is None


def test_segment_truncated_video(tmp_path: Path, truncated_video: Path, capsys) -> None:
    out = tmp_path / 'out'
    args = [
        'segment',
        '--backend',
        'torch',
        '--input',
        str(truncated_video),
        '--size',
        '64x48',
        '--quiet',
    ]
    assert main([*args, '--out', str(out)]) == 2
    line = one_error_line(capsys.readouterr().err, 'segment')
    assert 'truncated' in line and 'of the 221 frames' in line and '--allow-truncated' in line
    assert written_files(out) == []
    assert main([*args, '--out', str(out), '--allow-truncated', '--no-overlay']) == 0
    summary = json.loads((out / 'summary.json').read_text())
    assert summary['frames_expected'] == 221
    assert summary['frames_read'] == summary['frames'] == len(list((out / 'labels').iterdir()))
    assert summary['frames'] < 100 and summary['input_complete'] is False
    # --max-frames below what is readable: no claim either way
    assert main([*args, '--out', str(tmp_path / 'o3'), '--max-frames', '3', '--no-overlay']) == 0


def test_eval_truncated_video(tmp_path: Path, truncated_video: Path, capsys) -> None:
    args = [
        'eval',
        '--backend',
        'torch',
        '--source',
        str(truncated_video),
        '--strategy',
        'per_frame',
        '--size',
        '64x48',
        '--quiet',
    ]
    assert main([*args, '--out', str(tmp_path / 'e1')]) == 2
    assert 'of the 221 frames' in one_error_line(capsys.readouterr().err, 'eval')
    assert main([*args, '--out', str(tmp_path / 'e2'), '--allow-truncated']) == 0
    report = json.loads((tmp_path / 'e2' / 'report.json').read_text())
    assert report['frames_expected'] == 221 and report['frames_read'] == report['frames'] < 100
    assert report['input_complete'] is False


def test_allow_truncated_is_documented(capsys) -> None:
    for command in ('segment', 'eval'):
        with pytest.raises(SystemExit):
            main([command, '--help'])
        assert '--allow-truncated' in capsys.readouterr().out


# ---------------------------------------------------------------------------------------------
# 16: output-name collisions


def test_segment_refuses_output_name_collisions(tmp_path: Path, capsys) -> None:
    import cv2

    folder = tmp_path / 'frames'
    folder.mkdir()
    img = np.zeros((H, W, 3), np.uint8)
    for name in ('f_1.png', 'f_1.jpg', 'f_2.png'):
        cv2.imwrite(str(folder / name), img)
    out = tmp_path / 'out'
    rc = main(
        ['segment', '--backend', 'torch', '--input', str(folder), '--out', str(out), '--quiet']
    )
    assert rc == 2
    line = one_error_line(capsys.readouterr().err, 'segment')
    assert 'f_1.jpg' in line and 'f_1.png' in line and 'nothing was written' in line
    assert 'f_2' not in line and written_files(out) == []


# ---------------------------------------------------------------------------------------------
# 12 and 17: replay's domain and invalid topic names


def test_replay_domain_comes_from_the_environment(monkeypatch) -> None:
    from vsda_ros.ros.tools.replay import use_environment_domain

    monkeypatch.setenv('ROS_DOMAIN_ID', '42')
    monkeypatch.delenv('ROS_AUTOMATIC_DISCOVERY_RANGE', raising=False)
    assert use_environment_domain() == (42, 'ROS_DOMAIN_ID')
    assert os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] == 'LOCALHOST'
    monkeypatch.delenv('ROS_DOMAIN_ID')
    assert use_environment_domain() == (0, 'default')  # like every ROS tool, not random
    assert os.environ['ROS_DOMAIN_ID'] == '0'
    monkeypatch.setenv('ROS_DOMAIN_ID', 'seven')
    with pytest.raises(ValueError, match='ROS_DOMAIN_ID'):
        use_environment_domain()


def test_replay_prints_and_uses_the_environment_domain(tmp_path: Path, capsys) -> None:
    pytest.importorskip('rclpy')
    domain = os.environ['ROS_DOMAIN_ID']  # the per-run domain of conftest.py
    bag = synthetic_bag(tmp_path / 'bag', 3, labels=False)
    rc = main(
        ['replay', str(bag), '--start-delay', '0', '--quiet', '--json', str(tmp_path / 'r.json')]
    )
    assert rc == 0
    assert f'ROS_DOMAIN_ID={domain} (from the environment)' in capsys.readouterr().out
    assert os.environ['ROS_DOMAIN_ID'] == domain
    summary = json.loads((tmp_path / 'r.json').read_text())
    assert summary['domain_id'] == int(domain) and summary['published'] == 3


@pytest.mark.parametrize(
    'topic,suggested', [('/2cam/image', '/_2cam/image'), ('/cam-front/image', '/cam_front/image')]
)
def test_replay_invalid_topic_name(tmp_path: Path, capsys, topic: str, suggested: str) -> None:
    pytest.importorskip('rclpy')
    bag = synthetic_bag(tmp_path / 'bag', 3, topic=topic, labels=False)
    assert main(['replay', str(bag), '--start-delay', '0', '--quiet']) == 2
    line = one_error_line(capsys.readouterr().err, 'replay')
    assert f'{topic!r} is not a valid ROS 2 topic name' in line
    assert f'--remap {topic}:={suggested}' in line
    assert (
        main(
            [
                'replay',
                str(bag),
                '--start-delay',
                '0',
                '--quiet',
                '--remap',
                f'{topic}:={suggested}',
            ]
        )
        == 0
    )
    assert (
        main(
            ['replay', str(bag), '--start-delay', '0', '--quiet', '--remap', f'{topic}:=/bad-name']
        )
        == 2
    )
    assert '--remap' in one_error_line(capsys.readouterr().err, 'replay')


def test_incomplete_warning_is_logged_once(tmp_path: Path, caplog) -> None:
    bag = synthetic_bag(tmp_path / 'bag', 30)
    overwrite_middle(bag, 64 * 1024)
    with caplog.at_level(logging.WARNING), reading(allow_incomplete=True):
        list(BagSource(bag))
    assert sum('accepted: --allow-truncated' in r.getMessage() for r in caplog.records) == 1
