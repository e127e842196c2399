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
    return AdaptConfig(
        recipe=recipe,
        model='espnet-camvid',
        target=[str(target)],
        out=str(out),
        iterations=iterations,
        batch=1,
        crop=(160, 128),
        save_every=1,
        threads=2,
        seed=3,
    )


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


def test_fusion_recipe_trains_the_alignment_from_the_start(real_data):
    """At initialisation the fused output ignores the aligned scores (pass-through), so only the
    alignment term can move the offset convs; the anchor term starts at exactly 0."""
    import cv2

    from vsda_ros.adaptation.recipes import FusionRecipe
    from vsda_ros.models.zoo import load_model

    frames = sorted((real_data / 'camvid' / 'val').iterdir())[:2]
    clip = [
        cv2.resize(cv2.cvtColor(cv2.imread(str(f)), cv2.COLOR_BGR2RGB), (160, 120)) for f in frames
    ]
    model = load_model('espnet-camvid')
    cfg = AdaptConfig(recipe='fusion', target=['x'], weather_intensity=(0.2, 0.2))
    recipe = FusionRecipe(model, cfg)
    loss, logs = recipe.loss([clip])
    assert logs['anchor'] == 0.0 and logs['align'] > 0
    loss.backward()
    offsets = recipe.student.offsets[0]
    assert offsets.weight.grad is not None and float(offsets.weight.grad.abs().sum()) > 0
    cfg.align_weight = 0.0
    recipe.student.zero_grad()
    recipe.loss([clip])[0].backward()
    assert float(offsets.weight.grad.abs().sum()) == 0.0  # no signal without the term


def test_fusion_recipe_flow_alignment_and_soft_target(real_data):
    """``align_to: flow`` adds the offset regression to the alignment term and
    ``soft_target`` changes the fused-output terms; both still train the block, as does
    the two-conv offset predictor (``fusion_offset_hidden``)."""
    import cv2

    from vsda_ros.adaptation.recipes import FusionRecipe
    from vsda_ros.models.zoo import load_model

    frames = sorted((real_data / 'camvid' / 'val').iterdir())[:2]
    clip = [
        cv2.resize(cv2.cvtColor(cv2.imread(str(f)), cv2.COLOR_BGR2RGB), (160, 120)) for f in frames
    ]
    model = load_model('espnet-camvid')
    logs = {}
    for align_to, soft, hidden in (
        ('target', False, 0),
        ('flow', False, 0),
        ('target', True, 0),
        ('flow', False, 8),
    ):
        torch.manual_seed(0)
        cfg = AdaptConfig(
            recipe='fusion',
            target=['x'],
            weather_intensity=(0.2, 0.2),
            align_to=align_to,
            soft_target=soft,
            fusion_scale=0.25,
            fusion_offset_hidden=hidden,
        )
        recipe = FusionRecipe(model, cfg)
        loss, logs[align_to, soft, hidden] = recipe.loss([clip])
        loss.backward()
        last = recipe.student.offsets[0]
        last = last[-1] if hidden else last
        assert float(last.weight.grad.abs().sum()) > 0
        assert recipe.student.vsda_args.get('offset_hidden', 0) == hidden
    # the flow term is added to the soft cross-entropy (which differs too: the flow-warped
    # previous scores instead of the target); a soft target changes the fused-output terms
    assert logs['flow', False, 0]['align'] != logs['target', False, 0]['align']
    assert logs['target', True, 0]['clean'] != logs['target', False, 0]['clean']


def test_offset_flow_loss_is_zero_exactly_when_every_tap_follows_the_flow():
    from vsda_ros.adaptation.recipes import offset_flow_loss

    flow = torch.zeros(1, 2, 8, 12)
    flow[:, 0] = 4.0  # Δx = 4 px on the 8×12 grid
    flow[:, 1] = -2.0  # Δy = −2 px
    # at the block size 4×6 that is Δx = 2, Δy = −1; offsets are (dy, dx) per tap
    step = torch.zeros(1, 18, 4, 6)
    step[:, 0::2] = -0.5
    step[:, 1::2] = 1.0
    assert float(offset_flow_loss([step, step], flow)) == 0.0
    assert float(offset_flow_loss([step], flow)) > 0.1  # only half the way
    swapped = step.clone()
    swapped[:, 0::2], swapped[:, 1::2] = 1.0, -0.5  # (dx, dy) order: wrong
    assert float(offset_flow_loss([swapped, swapped], flow)) > 0.1


def test_class_prior_penalty_allows_blends_only():
    """Any class-agnostic blend a·current + b·aligned costs nothing; per-class gains, cross-class
    weights and biases (class priors learned from the training video) cost their square."""
    from vsda_ros.adaptation.recipes import class_prior_penalty
    from vsda_ros.temporal.fusion_block import FusionBlock

    block = FusionBlock(5)
    anchors = {
        n: p.detach().clone() for n, p in block.named_parameters() if n.startswith('deforms.')
    }
    assert float(class_prior_penalty(block, anchors)) == 0.0
    with torch.no_grad():
        block.fuse.weight[:, :5, 0, 0] = 0.6 * torch.eye(5)
        block.fuse.weight[:, 5:, 0, 0] = 0.4 * torch.eye(5)
    assert float(class_prior_penalty(block, anchors)) < 1e-12
    with torch.no_grad():
        block.fuse.bias[2] = -0.5  # "never predict class 2"
    assert abs(float(class_prior_penalty(block, anchors)) - 0.25) < 1e-6
    with torch.no_grad():
        block.fuse.bias.zero_()
        block.fuse.weight[1, 5 + 3, 0, 0] = 0.5  # class 3's score feeds class 1
        block.deforms[0].weight[0, 0, 0, 0] += 1.0
    assert abs(float(class_prior_penalty(block, anchors)) - 1.25) < 1e-6


def summary_history(out):
    return torch.load(str(out) + '.state.pt', weights_only=True)['history']


def test_config_errors(tmp_path):
    with pytest.raises(ValueError, match='unknown recipe'):
        AdaptConfig(recipe='nope', target=['x']).validate()
    with pytest.raises(ValueError, match='no target'):
        AdaptConfig(recipe='davss').validate()
    with pytest.raises(ValueError, match='align_to'):
        AdaptConfig(recipe='fusion', target=['x'], align_to='image').validate()
    with pytest.raises(ValueError, match='fusion_offset_hidden'):
        AdaptConfig(recipe='fusion', target=['x'], fusion_offset_hidden=-2).validate()
    bad = tmp_path / 'r.yaml'
    bad.write_text('recipe: davss\nbogus: 1\n')
    with pytest.raises(ValueError, match='unknown keys'):
        AdaptConfig.from_yaml(bad)


def test_experiment_recipes_parse(tmp_path, monkeypatch):
    from pathlib import Path

    # the recipes name data as ${VSDA_DATA_DIR}/...: a folder laid out like the real data
    for sub in ('camvid/val', 'camvid/valannot', 'camvid/train', 'camvid/trainannot'):
        (tmp_path / sub).mkdir(parents=True)
    monkeypatch.setenv('VSDA_DATA_DIR', str(tmp_path))
    root = Path(__file__).resolve().parents[1] / 'config' / 'experiments'
    for path in root.glob('*.yaml'):
        cfg = AdaptConfig.from_yaml(path, target=['x'])
        cfg.validate()


def test_target_video_reads_a_bag(tmp_path):
    """A recorded drive as a rosbag2 is a target sequence at its recorded frame spacing."""
    from vsda_ros.adaptation.video import TargetVideo
    from vsda_ros.data.bag_writer import write_bag
    from vsda_ros.frames import Frame

    rng = np.random.default_rng(0)
    frames = [
        Frame((rng.random((48, 64, 3)) * 255).astype(np.uint8), stamp=i / 10) for i in range(6)
    ]
    write_bag(tmp_path / 'drive', ((f, None) for f in frames), storage='sqlite3')
    video = TargetVideo.load([tmp_path / 'drive'], height=48, stride=2)
    ((key, seq),) = video.sequences.items()
    assert len(seq) == 3 and np.array_equal(seq[0], frames[0].image)
    assert abs(video.dt[key] - 0.2) < 1e-6
