"""Checkpoint round trip, the layering rule (core without rclpy) and the package metadata."""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import torch

from vsda_ros.models.checkpoint import ModelLoadError, load_checkpoint, save_checkpoint
from vsda_ros.models.zoo import ZOO, build, load_model

ROOT = Path(__file__).resolve().parent.parent


def test_checkpoint_round_trip(tmp_path):
    torch.manual_seed(0)
    model = build(ZOO['espnet-camvid'].meta).eval()
    model.meta.provenance['recipe'] = 'unit-test'
    path = save_checkpoint(model, tmp_path / 'm.pt', extra={'note': 1})
    loaded = load_model(str(path))  # a path goes through the same entry point as zoo names
    assert loaded.meta == model.meta
    x = torch.rand(1, 3, 64, 96)
    with torch.inference_mode():
        assert torch.equal(model(x), loaded(x))
    assert load_checkpoint(path).meta.provenance['recipe'] == 'unit-test'


def test_published_file_is_not_a_checkpoint(tmp_path):
    bogus = tmp_path / 'x.pt'
    torch.save({'a': torch.zeros(1)}, str(bogus))
    with pytest.raises(ModelLoadError, match='not a vsda_ros checkpoint'):
        load_checkpoint(bogus)


def test_core_imports_without_rclpy():
    code = (
        'import sys, vsda_ros.cli, vsda_ros.apps.segment, vsda_ros.models.zoo, '
        'vsda_ros.inference; assert "rclpy" not in sys.modules, "core imported rclpy"'
    )
    subprocess.run([sys.executable, '-c', code], check=True)


def test_package_xml_is_format3_ament_python():
    root = ET.parse(ROOT / 'package.xml').getroot()
    assert root.get('format') == '3' and root.findtext('name') == 'vsda_ros'
    deps = {e.text for e in root.iter('exec_depend')}
    assert {'rclpy', 'sensor_msgs', 'diagnostic_msgs', 'launch_ros'} <= deps
    assert root.find('export/build_type').text == 'ament_python'
    assert (ROOT / 'resource' / 'vsda_ros').is_file()


def test_cli_help_lists_subcommands():
    out = subprocess.run(
        [sys.executable, '-m', 'vsda_ros', '--help'], capture_output=True, text=True, check=True
    ).stdout
    assert 'segment' in out and 'fetch' in out
