"""``vsda demo``: frames through the live node over real DDS give the offline masks and mIoU."""

from __future__ import annotations

import shutil

import cv2
import numpy as np
import pytest

pytest.importorskip('rclpy')

from vsda_ros.apps.segment import SegmentConfig, run_segment  # noqa: E402
from vsda_ros.ros.tools.demo import run_demo  # noqa: E402

pytestmark = pytest.mark.ros


def test_demo_over_ros_matches_offline_segment(real_data, tmp_path):
    frames, labels = tmp_path / 'frames', tmp_path / 'labels'
    frames.mkdir()
    labels.mkdir()
    for f in sorted((real_data / 'camvid' / 'val').glob('*.png'))[:3]:
        shutil.copy(f, frames / f.name)
        shutil.copy(real_data / 'camvid' / 'valannot' / f.name, labels / f.name)
    live = run_demo('espnet-camvid', frames, tmp_path / 'live', labels)
    offline = run_segment(
        SegmentConfig(
            model='espnet-camvid',
            input=frames,
            out=tmp_path / 'offline',
            labels=labels,
            write_overlay=False,
            progress=False,
        )
    )
    assert live['frames'] == 3
    for f in frames.iterdir():
        a = cv2.imread(str(tmp_path / 'live' / 'labels' / f.name), cv2.IMREAD_UNCHANGED)
        b = cv2.imread(str(tmp_path / 'offline' / 'labels' / f.name), cv2.IMREAD_UNCHANGED)
        assert np.array_equal(a, b), f.name
        assert (tmp_path / 'live' / 'overlay' / f.name).is_file()
        assert (tmp_path / 'live' / 'color' / f.name).is_file()
    assert live['miou'] == pytest.approx(offline['miou'])
    assert (tmp_path / 'live' / 'overlay_strip.png').is_file()
    d = {k: int(live['diagnostics'][k]) for k in ('received', 'processed', 'dropped', 'bad_frames')}
    assert d['processed'] >= 3  # a best-effort frame may have been re-sent
    assert d['received'] == d['processed'] + d['dropped'] + d['bad_frames']
