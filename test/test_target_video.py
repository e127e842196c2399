"""Frame folders as training video: how clips and their frame spacing are read from names.

Defect: Cityscapes sequence names (``aachen_000000_000017_leftImg8bit.jpg``) were split into
one-frame "sequences" (the key was the stem up to the last ``_``, i.e. it included the frame
number) and dropped, so ``vsda adapt --target cityscapes_seq/…`` trained on nothing from them.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from vsda_ros.adaptation.video import TargetVideo, sequence_and_number


@pytest.mark.parametrize(
    'name, expected',
    [
        ('aachen_000000_000017_leftImg8bit.jpg', ('aachen_000000', 17)),
        ('0001TP_006690.png', ('0001TP', 6690)),
        ('0016E5_07959.png', ('0016E5', 7959)),
        ('000123.png', ('', 123)),
        ('Seq05VD_f00030.png', ('Seq05VD', 30)),
        ('frame.png', ('', 0)),
    ],
)
def test_sequence_and_number(name, expected):
    assert sequence_and_number(name) == expected


def test_cityscapes_style_names_make_one_clip_in_order(tmp_path):
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (16, 32, 3), dtype=np.uint8) for _ in range(4)]
    for i, f in enumerate(frames):
        name = f'aachen_000003_{i:06d}_leftImg8bit.png'
        cv2.imwrite(str(tmp_path / name), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    video = TargetVideo.load([tmp_path], height=16, folder_fps=17.0)
    assert list(video.sequences) == [f'{tmp_path.name}:aachen_000003']
    clip = video.sequences[f'{tmp_path.name}:aachen_000003']
    assert len(clip) == 4 and all(np.array_equal(a, b) for a, b in zip(clip, frames, strict=False))
    assert video.dt[f'{tmp_path.name}:aachen_000003'] == pytest.approx(1 / 17)


def test_real_cityscapes_sequence_is_one_30_frame_clip(real_data):
    root = real_data / 'cityscapes_seq' / 'seq0000'
    if not root.is_dir():
        pytest.skip(f'{root} not found (the shared data has no cityscapes_seq/)')
    video = TargetVideo.load([root], height=64)
    assert [len(v) for v in video.sequences.values()] == [30]
    assert all(dt <= 0.1 for dt in video.dt.values())  # usable by max_pair_dt 0.1


def test_folder_fps_reaches_the_training_video(tmp_path):
    """``vsda adapt --folder-fps`` (config ``folder_fps``) sets a folder's frame spacing; it
    was fixed at 30 Hz, so 17 Hz city clips were logged (and paired) as 0.033 s apart."""
    from vsda_ros.adaptation.config import AdaptConfig
    from vsda_ros.adaptation.train import _load_target
    from vsda_ros.cli import build_parser

    rng = np.random.default_rng(1)
    for i in range(3):
        cv2.imwrite(
            str(tmp_path / f'aachen_000001_{i:06d}_leftImg8bit.png'),
            rng.integers(0, 255, (16, 32, 3), dtype=np.uint8),
        )
    args = build_parser().parse_args(['adapt', '--target', str(tmp_path), '--folder-fps', '17'])
    assert args.folder_fps == 17.0
    cfg = AdaptConfig(recipe='source', target=[str(tmp_path)], height=16, folder_fps=17.0)
    assert _load_target(cfg, verbose=False).dt[f'{tmp_path.name}:aachen_000001'] == pytest.approx(
        1 / 17
    )
    with pytest.raises(ValueError):
        AdaptConfig(recipe='source', target=['x'], folder_fps=0.0).validate()
