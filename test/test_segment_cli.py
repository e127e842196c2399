"""``vsda segment`` end to end on real frames, and the accuracy floors on real labels."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from vsda_ros.cli import main
from vsda_ros.inference import parse_size


def test_parse_size():
    assert parse_size('480x360') == (480, 360)
    assert parse_size(None) is None and parse_size('native') is None
    with pytest.raises(ValueError, match='WIDTHxHEIGHT'):
        parse_size('480')


def test_unknown_model_is_a_clear_error(tmp_path, capsys, real_data):
    rc = main(
        [
            'segment',
            '--backend',
            'torch',
            '--model',
            'nope',
            '--input',
            str(real_data / 'camvid' / 'val'),
            '--out',
            str(tmp_path),
            '--quiet',
        ]
    )
    assert rc == 2
    assert 'unknown model' in capsys.readouterr().err


def test_missing_input_is_a_clear_error(tmp_path, capsys):
    rc = main(
        [
            'segment',
            '--backend',
            'torch',
            '--input',
            str(tmp_path / 'none'),
            '--out',
            str(tmp_path / 'o'),
        ]
    )
    assert rc == 2 and 'does not exist' in capsys.readouterr().err


def test_outputs_on_a_video(tmp_path, real_data):
    video = real_data / 'video' / 'solidWhiteRight.mp4'
    if not video.is_file():
        pytest.skip(f'dashcam video not found in VSDA_DATA_DIR ({real_data})')
    rc = main(
        [
            'segment',
            '--backend',
            'torch',
            '--model',
            'espnet-camvid',
            '--input',
            str(video),
            '--out',
            str(tmp_path),
            '--max-frames',
            '3',
            '--quiet',
        ]
    )
    assert rc == 0
    labels = sorted((tmp_path / 'labels').glob('*.png'))
    assert [p.name for p in labels] == [f'solidWhiteRight_{i:06d}.png' for i in range(3)]
    mask = cv2.imread(str(labels[0]), cv2.IMREAD_UNCHANGED)
    assert mask.shape == (540, 960) and mask.dtype == np.uint8 and mask.max() < 11
    color = cv2.imread(str(tmp_path / 'color' / labels[0].name))
    assert color.shape == (540, 960, 3)
    assert (tmp_path / 'overlay.mp4').stat().st_size > 0
    assert (tmp_path / 'overlay_strip.png').is_file()
    summary = json.loads((tmp_path / 'summary.json').read_text())
    assert summary['frames'] == 3 and summary['frame_size'] == [960, 540]
    assert set(summary['latency_ms']) == {'p50', 'p95'}


@pytest.mark.data
@pytest.mark.parametrize(
    'model,extra,floor',
    [
        ('espnet-camvid', [], 65.0),
        ('espnetv2-cityscapes', ['--size', '480x360', '--map', 'cityscapes-camvid'], 50.0),
    ],
)
def test_accuracy_floor_on_camvid_val(tmp_path, real_data, model, extra, floor):
    """The issue's floors on the 61-frame real CamVid val clip (11 classes, void ignored)."""
    out = tmp_path / 'out'
    rc = main(
        [
            'segment',
            '--backend',
            'torch',
            '--model',
            model,
            '--input',
            str(real_data / 'camvid' / 'val'),
            '--labels',
            str(real_data / 'camvid' / 'valannot'),
            '--out',
            str(out),
            '--json',
            str(tmp_path / 's.json'),
            '--no-overlay',
            '--quiet',
            *extra,
        ]
    )
    assert rc == 0
    summary = json.loads((tmp_path / 's.json').read_text())
    print(f'{model}: mIoU {summary["miou"]:.2f} on {summary["frames"]} frames')
    assert summary['frames'] == 61
    assert len(summary['per_class_iou']) == 11
    assert summary['miou'] >= floor
    names = {p.name for p in (out / 'labels').glob('*.png')}
    assert names == {p.name for p in (real_data / 'camvid' / 'val').glob('*.png')}


def test_segment_reads_a_bag_like_the_folder_it_came_from(real_data, tmp_path):
    from vsda_ros.data.bag_writer import write_bag
    from vsda_ros.data.sources import FrameSource

    frames = list(FrameSource(real_data / 'camvid' / 'val'))[:2]
    write_bag(tmp_path / 'bag', ((f, None) for f in frames), storage='sqlite3')
    assert (
        main(
            [
                'segment',
                '--backend',
                'torch',
                '--input',
                str(tmp_path / 'bag'),
                '--out',
                str(tmp_path / 'b'),
                '--no-overlay',
                '--quiet',
            ]
        )
        == 0
    )
    assert (
        main(
            [
                'segment',
                '--backend',
                'torch',
                '--input',
                str(real_data / 'camvid' / 'val'),
                '--max-frames',
                '2',
                '--out',
                str(tmp_path / 'f'),
                '--no-overlay',
                '--quiet',
            ]
        )
        == 0
    )
    for i, f in enumerate(frames):
        from_bag = cv2.imread(str(tmp_path / 'b' / 'labels' / f'{i:06d}.png'), 0)
        from_folder = cv2.imread(str(tmp_path / 'f' / 'labels' / f.name), 0)
        assert from_bag is not None and np.array_equal(from_bag, from_folder)
