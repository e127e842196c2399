"""The resume state of ``vsda adapt`` (``<out>.state.pt``, written every ``save_every``
iterations by :func:`vsda_ros.adaptation.train.train`): what it must hold, its safe loading
(``weights_only=True``: plain tensors and containers, never pickled objects), and the random
state of every rank (numpy, torch, the recipe's own) saved and restored with it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from vsda_ros.adaptation import distributed
from vsda_ros.models.safe_load import ModelLoadError, safe_torch_load

#: what a resume state must hold (``history``, ``evaluations``, ``rank_rngs`` are optional).
STATE_KEYS = ('recipe', 'iteration', 'modules', 'optim', 'sched', 'rng', 'torch_rng')


def state_path(out: Path) -> Path:
    """The resume state of the checkpoint ``out``: ``<out>.state.pt`` next to it."""
    return out.with_name(out.name + '.state.pt')


def load_resume_state(path: Path) -> dict:
    """Read a resume state (``<out>.state.pt``) with ``weights_only=True``: tensors, numbers,
    strings and containers only — a file with pickled Python objects is refused unrun.

    Raises:
        ModelLoadError: unreadable, corrupt or unsafe file, or not a resume state (keys
            missing); one line naming the file, with the fix (delete it to start over).
    """
    state = safe_torch_load(path, 'resume state')
    if not isinstance(state, dict):
        raise ModelLoadError(
            f'resume state {path} is not a dict (got {type(state).__name__}); '
            'delete it to start over'
        )
    missing = [k for k in STATE_KEYS if k not in state]
    if missing:
        raise ModelLoadError(
            f'resume state {path} lacks {", ".join(map(repr, missing))}; delete it to start over'
        )
    if not isinstance(state['iteration'], int) or not isinstance(state['modules'], dict):
        raise ModelLoadError(
            f"resume state {path}: 'iteration' or 'modules' has the wrong "
            'type; delete it to start over'
        )
    return state


def plain(obj):
    """``obj`` with numpy scalars and arrays turned into Python numbers and lists (containers
    and tensors kept): what ``torch.load(weights_only=True)`` reads back."""
    if isinstance(obj, dict):
        return {k: plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(plain(v) for v in obj)
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return obj


def rng_state(rng: np.random.Generator, recipe) -> dict:
    """This rank's random state: numpy's ``rng``, torch's CPU generator and the recipe's own
    (when it has a ``state_dict``)."""
    state = {'rng': rng.bit_generator.state, 'torch_rng': torch.get_rng_state()}
    if hasattr(recipe, 'state_dict'):
        state['recipe'] = recipe.state_dict()
    return state


def restore_rngs(state: dict, info: distributed.DistInfo, rng: np.random.Generator, recipe) -> None:
    """Restore this rank's random state from a resume ``state``: its own when the run had as
    many processes, rank 0's old single state on rank 0; otherwise keep the fresh seeds."""
    ranks = state.get('rank_rngs')
    if ranks and len(ranks) == info.world:
        mine = ranks[info.rank]
    elif info.rank == 0:
        mine = {'rng': state['rng'], 'torch_rng': state['torch_rng']}
    else:  # a different number of processes: this rank keeps its fresh seeds
        return
    rng.bit_generator.state = mine['rng']
    torch.set_rng_state(mine['torch_rng'])
    if 'recipe' in mine and hasattr(recipe, 'load_state_dict'):
        recipe.load_state_dict(mine['recipe'])
