"""``vsda segment`` and ``vsda eval`` refuse label ids that are neither a class nor an ignore
value, naming the file and the values, unless ``--allow-unknown-labels`` (then the pixels are
scored as ignored and counted: ``unknown_label_pixels``). Issue 24, item 5: labels holding
200 scored 69.27 → 53.19 mIoU with exit 0 and no warning."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from vsda_ros.cli import main

BAD_VALUE = 200
BAD_PIXELS = 40 * 30  # per damaged label


@pytest.fixture()
def damaged(tmp_path: Path, real_data: Path) -> tuple[Path, Path, str]:
    """Two real CamVid val frames with their labels; the second label has a 40×30 block of
    value 200. Returns (frames, labels, name of the damaged label)."""
    frames, labels = tmp_path / 'frames', tmp_path / 'labels'
    frames.mkdir()
    labels.mkdir()
    names = sorted(p.name for p in (real_data / 'camvid' / 'val').glob('*.png'))[:2]
    for name in names:
        shutil.copy(real_data / 'camvid' / 'val' / name, frames / name)
        shutil.copy(real_data / 'camvid' / 'valannot' / name, labels / name)
    label = cv2.imread(str(labels / names[1]), cv2.IMREAD_UNCHANGED)
    label[:30, :40] = BAD_VALUE
    cv2.imwrite(str(labels / names[1]), label)
    return frames, labels, names[1]


def _error(err: str, command: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f'vsda {command}: error: '), err
    return lines[0]


def test_segment_refuses_unknown_label_ids(damaged, tmp_path: Path, capsys) -> None:
    frames, labels, bad = damaged
    out = tmp_path / 'out'
    rc = main(
        [
            'segment',
            '--backend',
            'torch',
            '--input',
            str(frames),
            '--labels',
            str(labels),
            '--out',
            str(out),
            '--size',
            '96x64',
            '--no-overlay',
            '--quiet',
        ]
    )
    assert rc == 2
    line = _error(capsys.readouterr().err, 'segment')
    assert bad in line and str(BAD_VALUE) in line and '--allow-unknown-labels' in line
    assert not out.exists() or not [p for p in out.rglob('*') if p.is_file()]


def test_segment_allow_unknown_labels_counts_them(damaged, tmp_path: Path, capsys) -> None:
    frames, labels, _ = damaged
    out = tmp_path / 'out'
    rc = main(
        [
            'segment',
            '--backend',
            'torch',
            '--input',
            str(frames),
            '--labels',
            str(labels),
            '--out',
            str(out),
            '--size',
            '96x64',
            '--no-overlay',
            '--quiet',
            '--allow-unknown-labels',
        ]
    )
    assert rc == 0
    summary = json.loads((out / 'summary.json').read_text())
    assert summary['unknown_label_pixels'] == BAD_PIXELS
    assert np.isfinite(summary['miou'])
    assert f'{BAD_PIXELS} label pixels' in capsys.readouterr().out


def test_eval_refuses_unknown_label_ids(damaged, tmp_path: Path, capsys) -> None:
    frames, labels, bad = damaged
    rc = main(
        [
            'eval',
            '--backend',
            'torch',
            '--source',
            str(frames),
            '--labels',
            str(labels),
            '--out',
            str(tmp_path / 'ev'),
            '--size',
            '96x64',
            '--strategy',
            'per_frame',
            '--quiet',
        ]
    )
    assert rc == 2
    line = _error(capsys.readouterr().err, 'eval')
    assert Path(bad).stem in line and str(BAD_VALUE) in line


def test_eval_allow_unknown_labels_counts_them(damaged, tmp_path: Path) -> None:
    frames, labels, _ = damaged
    out = tmp_path / 'ev'
    rc = main(
        [
            'eval',
            '--backend',
            'torch',
            '--source',
            str(frames),
            '--labels',
            str(labels),
            '--out',
            str(out),
            '--size',
            '96x64',
            '--strategy',
            'per_frame',
            '--quiet',
            '--allow-unknown-labels',
        ]
    )
    assert rc == 0
    report = json.loads((out / 'report.json').read_text())
    assert report['unknown_label_pixels'] == BAD_PIXELS
    assert report['miou'] is not None


def test_the_commands_that_read_labels_have_the_option() -> None:
    from vsda_ros.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == 'command')
    for name in ('segment', 'eval', 'bench', 'export'):
        dests = {a.dest for a in sub.choices[name]._actions}
        assert 'allow_unknown_labels' in dests, name
