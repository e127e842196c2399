"""``vsda adapt --recipe davss|fusion`` on a few real frames: trains, resumes, and writes a
checkpoint that the strategies (and so the node and ``vsda eval``) load unchanged."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from vsda_ros.adaptation.config import AdaptConfig
from vsda_ros.adaptation.train import train
from vsda_ros.temporal.modules import TemporalModules


@pytest.fixture(scope='module')
def target(real_data, tmp_path_factory):
    """Eight consecutive CamVid frames in a temporary folder (never copied into the repo)."""
    folder = tmp_path_factory.mktemp('target')
    for f in sorted((real_data / 'camvid' / 'val').iterdir())[:8]:
        shutil.copy(f, folder / f.name)
    return folder


def _cfg(recipe, target, out, iterations):
    return AdaptConfig(recipe=recipe, model='espnet-camvid', target=[str(target)], out=str(out),
                       iterations=iterations, batch=1, crop=(160, 128), save_every=1,
                       threads=2, seed=3)


@pytest.mark.parametrize('recipe,kinds', [('davss', ['dmnet', 'cfnet']), ('fusion', ['fusion'])])
def test_recipe_trains_and_writes_a_loadable_checkpoint(recipe, kinds, target, tmp_path):
    out = tmp_path / f'{recipe}.pt'
    summary = train(_cfg(recipe, target, out, 2), progress=False)
    assert summary['iterations'] == 2 and np.isfinite(summary['final']['loss'])
    mods = TemporalModules.from_checkpoint(out)
    assert mods.loaded() == kinds
    from vsda_ros.models.zoo import load_model
    assert load_model(str(out)).meta.provenance['temporal_recipe'] == recipe


def test_davss_changes_the_modules_and_resumes(target, tmp_path):
    out = tmp_path / 'd.pt'
    torch.manual_seed(3)
    train(_cfg('davss', target, out, 1), progress=False)
    first = TemporalModules.from_checkpoint(out).cfnet.state_dict()
    summary = train(_cfg('davss', target, out, 2), progress=False)  # resumes at 1
    assert [h['iteration'] for h in summary_history(out)] == [1, 2]
    second = TemporalModules.from_checkpoint(out).cfnet.state_dict()
    assert any(not torch.equal(first[k], second[k]) for k in first)
    assert summary['iterations'] == 2


def summary_history(out):
    return torch.load(str(out) + '.state.pt', weights_only=False)['history']


def test_config_errors(tmp_path):
    with pytest.raises(ValueError, match='unknown recipe'):
        AdaptConfig(recipe='nope', target=['x']).validate()
    with pytest.raises(ValueError, match='no target'):
        AdaptConfig(recipe='davss').validate()
    bad = tmp_path / 'r.yaml'
    bad.write_text('recipe: davss\nbogus: 1\n')
    with pytest.raises(ValueError, match='unknown keys'):
        AdaptConfig.from_yaml(bad)


def test_experiment_recipes_parse():
    from pathlib import Path
    root = Path(__file__).resolve().parents[1] / 'config' / 'experiments'
    for path in root.glob('*.yaml'):
        cfg = AdaptConfig.from_yaml(path, target=['x'])
        cfg.validate()


def test_target_video_reads_a_bag(tmp_path):
    """A recorded drive as a rosbag2 is a target sequence at its recorded frame spacing."""
    from vsda_ros.adaptation.video import TargetVideo
    from vsda_ros.data.bags import write_bag
    from vsda_ros.frames import Frame

    rng = np.random.default_rng(0)
    frames = [Frame((rng.random((48, 64, 3)) * 255).astype(np.uint8), stamp=i / 10)
              for i in range(6)]
    write_bag(tmp_path / 'drive', ((f, None) for f in frames), storage='sqlite3')
    video = TargetVideo.load([tmp_path / 'drive'], height=48, stride=2)
    (key, seq), = video.sequences.items()
    assert len(seq) == 3 and np.array_equal(seq[0], frames[0].image)
    assert abs(video.dt[key] - 0.2) < 1e-6
