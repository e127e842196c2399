"""Output locations of ``vsda segment``, ``vsda eval`` and ``vsda bag make`` that cannot be
written are one line ``vsda CMD: error: …`` and exit 2, checked before any work, with nothing
half-written left (issue 24, item 9: tracebacks, exit 1, and 10 files left behind)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from vsda_ros.apps import _common
from vsda_ros.cli import main

#: A folder that cannot be created even by root: /proc holds only what the kernel puts there.
UNWRITABLE = Path('/proc/vsda_no_such_dir/out')


def _frames(tmp_path: Path, real_data: Path, n: int = 2) -> Path:
    """A folder with the first ``n`` real CamVid val frames."""
    src = tmp_path / 'frames'
    src.mkdir()
    for p in sorted((real_data / 'camvid' / 'val').glob('*.png'))[:n]:
        shutil.copy(p, src / p.name)
    return src


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob('*') if p.is_file())


def _one_error_line(err: str, command: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith(f'vsda {command}: error: '), err
    assert 'Traceback' not in err
    return lines[0]


def test_check_output_dir_refuses_a_path_under_a_file(tmp_path: Path) -> None:
    (tmp_path / 'file').write_text('x')
    with pytest.raises(NotADirectoryError, match='is a file'):
        _common.check_output_dir(tmp_path / 'file' / 'out', '--out')
    with pytest.raises(NotADirectoryError, match='is a file'):
        _common.check_output_dir(tmp_path / 'file', '--out')
    _common.check_output_dir(tmp_path / 'new' / 'deeper', '--out')  # creatable: fine
    assert not (tmp_path / 'new').exists()  # and nothing created
    assert [p.name for p in tmp_path.iterdir()] == ['file']  # no probe file left


def test_check_output_dir_tries_instead_of_trusting_os_access(tmp_path: Path) -> None:
    """Root passes every os.access check: the check really creates (and removes) a probe."""
    with pytest.raises(OSError, match='cannot write'):
        _common.check_output_dir(UNWRITABLE, '--out')


def test_check_output_file_refuses_a_folder_and_a_file_parent(tmp_path: Path) -> None:
    (tmp_path / 'file').write_text('x')
    with pytest.raises(IsADirectoryError):
        _common.check_output_file(tmp_path, '--json')
    with pytest.raises(NotADirectoryError):
        _common.check_output_file(tmp_path / 'file' / 's.json', '--json')
    _common.check_output_file(tmp_path / 'a' / 's.json', '--json')
    assert not (tmp_path / 'a').exists()


def test_execute_turns_os_errors_into_one_line(capsys) -> None:
    import argparse

    def make_parser() -> argparse.ArgumentParser:
        p = argparse.ArgumentParser(prog='vsda')
        sub = p.add_subparsers(dest='command', required=True)
        q = sub.add_parser('x')

        def fail(_args: argparse.Namespace) -> int:
            raise PermissionError(13, 'Permission denied', '/ro/out')

        q.set_defaults(func=fail)
        return p

    assert _common.execute(make_parser, ['x']) == 2
    line = _one_error_line(capsys.readouterr().err, 'x')
    assert '/ro/out' in line and 'Permission denied' in line


@pytest.mark.parametrize('where', ['under_file', 'unwritable'])
def test_segment_out_that_cannot_be_written(
    tmp_path: Path, real_data: Path, capsys, where: str
) -> None:
    src = _frames(tmp_path, real_data)
    (tmp_path / 'file').write_text('x')
    out = tmp_path / 'file' / 'out' if where == 'under_file' else UNWRITABLE
    rc = main(
        [
            'segment',
            '--backend',
            'torch',
            '--input',
            str(src),
            '--out',
            str(out),
            '--quiet',
            '--size',
            '96x64',
        ]
    )
    assert rc == 2
    _one_error_line(capsys.readouterr().err, 'segment')


def test_segment_json_under_a_file_leaves_nothing(tmp_path: Path, real_data: Path, capsys) -> None:
    """The issue: '[Errno 17] File exists' after writing 10 output files."""
    src = _frames(tmp_path, real_data)
    (tmp_path / 'file').write_text('x')
    out = tmp_path / 'out'
    rc = main(
        [
            'segment',
            '--backend',
            'torch',
            '--input',
            str(src),
            '--out',
            str(out),
            '--quiet',
            '--size',
            '96x64',
            '--json',
            str(tmp_path / 'file' / 's.json'),
        ]
    )
    assert rc == 2
    line = _one_error_line(capsys.readouterr().err, 'segment')
    assert 'file' in line and 'Errno 17' not in line
    assert not out.exists()


def test_segment_json_write_failure_removes_the_outputs(
    tmp_path: Path, real_data: Path, capsys, monkeypatch
) -> None:
    """A JSON write that fails after the frames were written takes them back too."""
    from vsda_ros.apps import segment

    src = _frames(tmp_path, real_data)
    out = tmp_path / 'out'

    def broken(path: Path, text: str) -> None:
        raise OSError(28, 'No space left on device', str(path))

    monkeypatch.setattr(segment, '_write_text', broken)
    rc = main(
        [
            'segment',
            '--backend',
            'torch',
            '--input',
            str(src),
            '--out',
            str(out),
            '--quiet',
            '--size',
            '96x64',
        ]
    )
    assert rc == 2
    line = _one_error_line(capsys.readouterr().err, 'segment')
    assert 'No space left' in line and 'removed' in line
    assert not out.exists() or _files(out) == []


@pytest.mark.parametrize('where', ['under_file', 'unwritable'])
def test_eval_out_that_cannot_be_written(
    tmp_path: Path, real_data: Path, capsys, where: str
) -> None:
    src = _frames(tmp_path, real_data)
    (tmp_path / 'file').write_text('x')
    out = tmp_path / 'file' / 'out' if where == 'under_file' else UNWRITABLE
    rc = main(
        [
            'eval',
            '--backend',
            'torch',
            '--source',
            str(src),
            '--out',
            str(out),
            '--quiet',
            '--size',
            '96x64',
            '--strategy',
            'per_frame',
        ]
    )
    assert rc == 2
    _one_error_line(capsys.readouterr().err, 'eval')


@pytest.mark.parametrize('where', ['under_file', 'unwritable'])
def test_bag_make_out_that_cannot_be_written(
    tmp_path: Path, real_data: Path, capsys, where: str
) -> None:
    src = _frames(tmp_path, real_data)
    (tmp_path / 'file').write_text('x')
    out = tmp_path / 'file' / 'bag' if where == 'under_file' else UNWRITABLE
    rc = main(['bag', 'make', str(src), '--out', str(out), '--quiet'])
    assert rc == 2
    _one_error_line(capsys.readouterr().err, 'bag make')


def test_bag_make_json_under_a_file_writes_no_bag(tmp_path: Path, real_data: Path, capsys) -> None:
    src = _frames(tmp_path, real_data)
    (tmp_path / 'file').write_text('x')
    rc = main(
        [
            'bag',
            'make',
            str(src),
            '--out',
            str(tmp_path / 'bag'),
            '--quiet',
            '--json',
            str(tmp_path / 'file' / 'b.json'),
        ]
    )
    assert rc == 2
    _one_error_line(capsys.readouterr().err, 'bag make')
    assert not (tmp_path / 'bag').exists()
