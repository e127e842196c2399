"""Whole-network unsupervised domain adaptation recipes for ``vsda adapt``.

Each recipe is a :class:`~vsda_ros.adaptation.uda.common.NetworkRecipe` in a module of its own:
``source`` (supervised on labelled source frames), ``tps`` (cross-frame pseudo-labels),
``i2vda`` (image-to-video: temporal augmentation, proxy pseudo-labels, output-level GAN),
``vat_vst`` (clip-level adversarial training, then video self-training) and ``tsl``
(temporal–spatial teacher–student with the fusion block under synthetic weather).
"""

from vsda_ros.adaptation.uda.common import NetworkRecipe
from vsda_ros.adaptation.uda.i2vda import I2vdaRecipe
from vsda_ros.adaptation.uda.source import SourceRecipe
from vsda_ros.adaptation.uda.tps import TpsRecipe
from vsda_ros.adaptation.uda.tsl import TslRecipe
from vsda_ros.adaptation.uda.vat_vst import VatVstRecipe

UDA_RECIPES: dict[str, type[NetworkRecipe]] = {
    'source': SourceRecipe,
    'tps': TpsRecipe,
    'i2vda': I2vdaRecipe,
    'vat_vst': VatVstRecipe,
    'tsl': TslRecipe,
}

__all__ = [
    'UDA_RECIPES',
    'NetworkRecipe',
    'SourceRecipe',
    'TpsRecipe',
    'I2vdaRecipe',
    'VatVstRecipe',
    'TslRecipe',
]
