"""``vsda segment``: what is not scored follows the label set, and the overlay video plays at the
source's rate. A tiny ESPNet with the 19 Cityscapes classes, rigged to call every pixel
*person* (train id 11), on synthetic 64×32 frames: no real data, a few seconds."""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from vsda_ros.cli import main

W, H = 64, 32
PERSON = 11


@pytest.fixture(scope='module')
def person_model(tmp_path_factory) -> Path:
    """A 19-class checkpoint whose prediction is train id 11 (person) everywhere: the decoder
    features are a constant 1 (the last BatchNorm's scale 0, shift 1) and only class 11's
    classifier weights are non-zero."""
    from vsda_ros.models.checkpoint import save_checkpoint
    from vsda_ros.models.zoo import ZOO, build

    city = ZOO['espnetv2-cityscapes'].meta
    meta = dataclasses.replace(
        copy.deepcopy(ZOO['espnet-camvid'].meta),
        name='person19',
        classes=list(city.classes),
        palette=list(city.palette),
        native_size=(W, H),
        arch_args={'num_outputs': 20, 'b1_skip': True},
    )
    torch.manual_seed(0)
    net = build(meta).eval()
    bn = next(m for m in net.net.conv.modules() if isinstance(m, torch.nn.BatchNorm2d))
    with torch.no_grad():
        bn.weight.zero_()
        bn.bias.fill_(1.0)
        net.net.classifier.weight.zero_()
        net.net.classifier.weight[:, PERSON] = 1.0
    return save_checkpoint(net, tmp_path_factory.mktemp('person19') / 'person19.pt')


def _frames(n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 255, (H, W, 3), dtype=np.uint8) for _ in range(n)]


def _folder(path: Path, n: int) -> Path:
    path.mkdir(parents=True)
    for i, image in enumerate(_frames(n)):
        cv2.imwrite(str(path / f'f_{i:03d}.png'), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    return path


def _segment(model: Path, source: Path, out: Path, *extra: str) -> dict:
    assert (
        main(
            [
                'segment',
                '--backend',
                'torch',
                '--model',
                str(model),
                '--input',
                str(source),
                '--out',
                str(out),
                '--quiet',
                *extra,
            ]
        )
        == 0
    )
    return json.loads((out / 'summary.json').read_text())


def _video_rate(path: Path) -> tuple[float, int]:
    cap = cv2.VideoCapture(str(path))
    try:
        return cap.get(cv2.CAP_PROP_FPS), int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    finally:
        cap.release()


def test_person_is_scored_on_cityscapes_train_ids(person_model, tmp_path):
    """Train-id labels (no --map): class 11 is *person*, not CamVid's void; 255 is ignored.
    Left half person, right half road, first row 255: every pixel is predicted person, so
    person IoU = 50 % (the road half is its false positives) and pixel accuracy 50 %."""
    frames = _folder(tmp_path / 'frames', 2)
    labels = tmp_path / 'labels'
    labels.mkdir()
    label = np.zeros((H, W), np.uint8)
    label[:, : W // 2] = PERSON
    label[0] = 255
    for f in frames.iterdir():
        cv2.imwrite(str(labels / f.name), label)
    s = _segment(person_model, frames, tmp_path / 'out', '--labels', str(labels), '--no-overlay')
    assert len(s['per_class_iou']) == 19
    assert s['per_class_iou']['person'] == pytest.approx(50.0)
    assert s['per_class_iou']['road'] == pytest.approx(0.0)
    assert s['pixel_accuracy'] == pytest.approx(50.0)


def test_camvid_labels_still_skip_void(tmp_path):
    """CamVid-11 labels keep 11 (void) out of the scores (the ignore value of that label
    set): a label of all void scores nothing."""
    from vsda_ros.models.checkpoint import save_checkpoint
    from vsda_ros.models.zoo import ZOO, build

    meta = dataclasses.replace(copy.deepcopy(ZOO['espnet-camvid'].meta), native_size=(W, H))
    torch.manual_seed(0)
    ckpt = save_checkpoint(build(meta).eval(), tmp_path / 'camvid11.pt')
    frames = _folder(tmp_path / 'frames', 1)
    labels = tmp_path / 'labels'
    labels.mkdir()
    cv2.imwrite(str(labels / 'f_000.png'), np.full((H, W), 11, np.uint8))
    s = _segment(ckpt, frames, tmp_path / 'out', '--labels', str(labels), '--no-overlay')
    assert len(s['per_class_iou']) == 11
    assert all(v is None for v in s['per_class_iou'].values())


def test_overlay_video_plays_at_the_video_rate(person_model, tmp_path):
    video = tmp_path / 'clip.mp4'
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*'mp4v'), 10.0, (W, H))
    for image in _frames(5):
        writer.write(cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    writer.release()
    _segment(person_model, video, tmp_path / 'out')
    assert _video_rate(tmp_path / 'out' / 'overlay.mp4') == (pytest.approx(10.0, abs=0.01), 5)


def test_overlay_video_plays_at_the_bag_rate(person_model, tmp_path):
    """A bag's rate comes from its header stamps (5 Hz here); a bag shorter than the frames
    the rate is measured on is still written whole."""
    from vsda_ros.data.bag_writer import write_bag
    from vsda_ros.frames import Frame

    frames = [
        Frame(image, stamp=100.0 + i / 5, name=f'{i:06d}.png') for i, image in enumerate(_frames(4))
    ]
    write_bag(tmp_path / 'clip', ((f, None) for f in frames))
    _segment(person_model, tmp_path / 'clip', tmp_path / 'out')
    assert _video_rate(tmp_path / 'out' / 'overlay.mp4') == (pytest.approx(5.0, abs=0.01), 4)


def test_overlay_video_plays_at_the_folder_rate(person_model, tmp_path):
    frames = _folder(tmp_path / 'frames', 3)
    _segment(person_model, frames, tmp_path / 'out', '--fps', '12')
    assert _video_rate(tmp_path / 'out' / 'overlay.mp4') == (pytest.approx(12.0, abs=0.01), 3)
    _segment(person_model, frames, tmp_path / 'default')  # a folder's default rate: 15 Hz
    assert _video_rate(tmp_path / 'default' / 'overlay.mp4')[0] == pytest.approx(15.0, abs=0.01)
