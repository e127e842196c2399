"""Test-wide setup.

Network rule: any test that touches ROS must stay on loopback with a domain of its own. This
fixture is the one place that enforces it for the whole session (autouse), before any rclpy
import: ``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST`` and a per-run ``ROS_DOMAIN_ID``.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
os.environ['ROS_DOMAIN_ID'] = str(100 + os.getpid() % 100)
os.environ.setdefault('OMP_NUM_THREADS', '2')
os.environ.setdefault('FASTDDS_DEFAULT_PROFILES_FILE',
                      str(Path(__file__).resolve().parents[1] / 'config' / 'fastdds_profile.xml'))


def _data_dir() -> Path | None:
    from vsda_ros.paths import data_dir
    return data_dir()


@pytest.fixture(scope='session')
def real_data() -> Path:
    """The real-data folder (``VSDA_DATA_DIR``); skips the test with the reason when absent."""
    ddir = _data_dir()
    if ddir is None or not (ddir / 'camvid' / 'val').is_dir() or not (ddir / 'weights').is_dir():
        pytest.skip(f'real data not found (set VSDA_DATA_DIR; looked at {ddir}): needs '
                    'camvid/ and weights/ from ../shared/data')
    return ddir
