"""The fusion block the ``fusion`` and ``tsl`` recipes train is built in one place
(:mod:`vsda_ros.adaptation.fusion_setup`) from the config, so both get the same block."""

from __future__ import annotations

import pytest
import torch

from uda_synthetic import tiny_model
from vsda_ros.adaptation.config import AdaptConfig

torch.set_num_threads(1)


def _cfg(recipe: str, **kw) -> AdaptConfig:
    base = dict(recipe=recipe, target=['unused'], seed=0, batch=1, crop=(64, 48), threads=1)
    base.update(kw)
    cfg = AdaptConfig(**base)
    cfg.validate()
    return cfg


def _offset_widths(block: torch.nn.Module) -> list[int]:
    """Output channels of the first conv of every deformable step's offset predictor."""
    widths = []
    for predictor in block.offsets:
        first = predictor[0] if isinstance(predictor, torch.nn.Sequential) else predictor
        widths.append(int(first.out_channels))
    return widths


@pytest.mark.parametrize('hidden', [0, 12])
def test_tsl_score_block_has_the_configured_offset_hidden(hidden: int) -> None:
    """The score-variant block of ``tsl`` follows ``fusion_offset_hidden`` (it used to be built
    without it, so a tsl run silently trained a different block than the config said)."""
    from vsda_ros.adaptation.uda.tsl import TslRecipe

    cfg = _cfg('tsl', fusion_offset_hidden=hidden, fusion_scale=0.25)
    recipe = TslRecipe(tiny_model(4), cfg)
    assert recipe.fusion.offset_hidden == hidden
    assert recipe.fusion.vsda_args.get('offset_hidden', 0) == hidden
    assert _offset_widths(recipe.fusion) == [hidden or 27] * recipe.fusion.num_deform
    assert recipe.teacher_fusion.offset_hidden == hidden


@pytest.mark.parametrize('variant', ['scores', 'guided'])
def test_fusion_and_tsl_recipes_build_the_same_block(variant: str) -> None:
    from vsda_ros.adaptation.recipes import FusionRecipe
    from vsda_ros.adaptation.uda.tsl import TslRecipe

    kw = dict(fusion_variant=variant, fusion_offset_hidden=8, fusion_scale=0.25)
    tsl = TslRecipe(tiny_model(4), _cfg('tsl', **kw)).fusion
    fusion = FusionRecipe(tiny_model(4), _cfg('fusion', **kw)).student
    assert type(tsl) is type(fusion)
    assert tsl.vsda_args == fusion.vsda_args
    assert [(n, tuple(p.shape)) for n, p in tsl.named_parameters()] == [
        (n, tuple(p.shape)) for n, p in fusion.named_parameters()
    ]


def test_fusion_block_builder_follows_the_config() -> None:
    from vsda_ros.adaptation.fusion_setup import fusion_block
    from vsda_ros.temporal.guided_fusion import GuidedFusionBlock

    block = fusion_block(_cfg('fusion', fusion_offset_hidden=6, fusion_scale=0.5), 3, 'cpu')
    assert block.vsda_args['num_classes'] == 3 and block.scale == 0.5
    assert _offset_widths(block) == [6] * block.num_deform
    guided = fusion_block(_cfg('fusion', fusion_variant='guided', fusion_scale=0.25), 3, 'cpu')
    assert isinstance(guided, GuidedFusionBlock)


def test_the_recipe_table_is_the_one_list_of_recipe_names() -> None:
    from vsda_ros.adaptation import config, recipes

    assert tuple(recipes.RECIPE_CLASSES) == config.RECIPES
    assert config.RECIPES == ('davss', 'fusion', 'source', 'tps', 'i2vda', 'vat_vst', 'tsl')
    with pytest.raises(ValueError, match='unknown recipe'):
        AdaptConfig(recipe='nope', target=['x']).validate()
