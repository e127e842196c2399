"""vsda checkpoints: weights plus everything needed to use them.

A checkpoint is a ``torch.save`` dict with ``format`` (``vsda_ros/1``), ``meta``
(:meth:`ModelMeta.to_dict`: architecture and its arguments, classes, palette, normalisation,
native size, provenance), ``state_dict`` (the raw network's) and ``extra`` (temporal modules'
weights/config, recipe; free-form). It loads with ``weights_only=True``: no pickled code.

Every failure to use a checkpoint — unreadable or unsafe file, not a vsda checkpoint, missing,
unknown or mistyped meta fields, weights that do not fit the architecture — raises one
:class:`~vsda_ros.models.safe_load.ModelLoadError` with a one-line message naming the file.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from vsda_ros.models.architectures import build_for
from vsda_ros.models.base import ModelMeta, SegmentationModel, raw_net
from vsda_ros.models.safe_load import ModelLoadError, safe_torch_load

__all__ = [
    'FORMAT',
    'ModelLoadError',
    'check_state_dict',
    'load_checkpoint',
    'meta_from_dict',
    'read_checkpoint',
    'save_checkpoint',
]

FORMAT = 'vsda_ros/1'


def save_checkpoint(model: SegmentationModel, path: str | Path, extra: dict | None = None) -> Path:
    """Write ``model`` (and ``extra``) to ``path``; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {
            'format': FORMAT,
            'meta': model.meta.to_dict(),
            'state_dict': model.net.state_dict(),
            'extra': extra or {},
        },
        str(path),
    )
    return path


def read_checkpoint(path: str | Path) -> dict:
    """The raw checkpoint dict.

    Raises:
        FileNotFoundError: no such file.
        ModelLoadError: unreadable/corrupt/unsafe file, or not a vsda checkpoint.
    """
    ckpt = safe_torch_load(path, 'checkpoint')
    if not isinstance(ckpt, dict) or ckpt.get('format') != FORMAT:
        raise ModelLoadError(
            f'checkpoint {path} is not a vsda_ros checkpoint (no format '
            f'{FORMAT!r}); for published weights use the zoo name instead'
        )
    return ckpt


def load_checkpoint(path: str | Path) -> SegmentationModel:
    """Build the model a checkpoint describes and load its weights strictly.

    Raises:
        FileNotFoundError: no such file.
        ModelLoadError: see :func:`read_checkpoint`, :func:`meta_from_dict` and
            :func:`check_state_dict`.
    """
    ckpt = read_checkpoint(path)
    where = f'checkpoint {path}'
    meta = meta_from_dict(ckpt.get('meta'), where)
    state = ckpt.get('state_dict')
    if state is None:
        raise ModelLoadError(f"{where}: no 'state_dict' (the network weights)")
    model = build_for(meta, where)
    check_state_dict(model.net, state, where)
    model.net.load_state_dict(state, strict=True)
    check_meta_fits(model, where)
    return model


#: sides a network input may have (``native_size``; the same bounds as ``--size``)
MIN_SIDE, MAX_SIDE = 32, 4096


def head_channels(model: SegmentationModel) -> int:
    """The number of channels the raw network's head puts out (kept classes + an optional
    trailing void/background channel), found by running the head on a small input."""
    training = model.net.training
    model.net.eval()  # a train-mode pass would update BatchNorm statistics
    try:
        with torch.inference_mode():
            x = torch.zeros(1, 3, 64, 64)
            net = raw_net(model.net)
            return int(net.forward_head(net.forward_features(x)).shape[1])
    finally:
        model.net.train(training)


def check_meta_fits(model: SegmentationModel, where: str) -> None:
    """Check a loaded model's meta against its network: ``classes`` names every head channel
    (or all but one trailing void/background channel), and ``native_size`` is a usable network
    input. Without this a checkpoint listing 5 classes for a 19-channel head loads and every
    mask holds ids 0–4 only.

    Raises:
        ModelLoadError: naming the file and the field.
    """
    meta = model.meta
    channels = head_channels(model)
    if not channels - 1 <= meta.num_classes <= channels:
        raise ModelLoadError(
            f"{where}: meta field 'classes' lists {meta.num_classes} classes but the network's "
            f'head has {channels} output channels (expected {channels} classes, or '
            f'{channels - 1} plus a void/background channel)'
        )
    w, h = meta.native_size
    if not (MIN_SIDE <= w <= MAX_SIDE and MIN_SIDE <= h <= MAX_SIDE):
        raise ModelLoadError(
            f"{where}: meta field 'native_size' is {w}x{h}; each side must be between "
            f'{MIN_SIDE} and {MAX_SIDE} (width, height of the network input)'
        )


def _is_num(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _seq(v: object, n: int | None, item: Callable[[object], bool]) -> bool:
    return isinstance(v, (list, tuple)) and (n is None or len(v) == n) and all(item(x) for x in v)


#: meta field → (check, what it must be)
_META_TYPES = {
    'name': (lambda v: isinstance(v, str), 'a string'),
    'arch': (lambda v: isinstance(v, str), 'a string'),
    'arch_args': (
        lambda v: isinstance(v, dict) and all(isinstance(k, str) for k in v),
        'a dict of keyword arguments',
    ),
    'classes': (lambda v: _seq(v, None, lambda c: isinstance(c, str)), 'a list of class names'),
    'palette': (lambda v: _seq(v, None, lambda c: _seq(c, 3, _is_int)), 'a list of RGB triples'),
    'mean': (lambda v: _seq(v, 3, _is_num), '3 numbers'),
    'std': (lambda v: _seq(v, 3, _is_num) and all(x != 0 for x in v), '3 non-zero numbers'),
    'bgr': (lambda v: isinstance(v, bool), 'true or false'),
    'native_size': (lambda v: _seq(v, 2, _is_int), '2 integers (width, height)'),
    'provenance': (lambda v: isinstance(v, dict), 'a dict'),
}


def meta_from_dict(d: object, where: str) -> ModelMeta:
    """A :class:`ModelMeta` from a checkpoint's ``meta`` dict, checked field by field.

    Args:
        d: the stored dict (:meth:`ModelMeta.to_dict`).
        where: what to name in errors, e.g. ``'checkpoint /x/m.pt'``.

    Raises:
        ModelLoadError: ``d`` is not a dict; fields are missing, unknown or of the wrong type
            (all named in the one-line message); the palette does not match the classes.
    """
    if not isinstance(d, dict):
        raise ModelLoadError(f'{where}: meta is not a dict (got {type(d).__name__})')
    fields = {f.name: f for f in dataclasses.fields(ModelMeta)}
    required = [
        n
        for n, f in fields.items()
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    problems = []
    missing = [n for n in required if n not in d]
    if missing:
        problems.append('missing meta field(s): ' + ', '.join(repr(n) for n in missing))
    unknown = [str(k) for k in d if k not in fields]
    if unknown:
        problems.append('unknown meta field(s): ' + ', '.join(repr(k) for k in unknown))
    for name, (ok, expected) in _META_TYPES.items():
        if name in d and not ok(d[name]):
            problems.append(f'meta field {name!r} must be {expected}, got {_short(d[name])}')
    if not problems and d.get('palette') and len(d['palette']) != len(d.get('classes', [])):
        problems.append(
            f"meta field 'palette' has {len(d['palette'])} colours for "
            f'{len(d.get("classes", []))} classes'
        )
    if problems:
        raise ModelLoadError(f'{where}: ' + '; '.join(problems))
    return ModelMeta.from_dict(d)


def _short(v: object) -> str:
    text = repr(v)
    return text if len(text) <= 40 else text[:37] + '...'


def check_state_dict(net: nn.Module, state: object, where: str) -> None:
    """Check that ``state`` fits ``net`` exactly (keys and shapes) before loading it.

    Raises:
        ModelLoadError: ``state`` is not a dict of tensors, or keys are missing/unexpected or
            shapes differ — summarised in one line (counts and the first few names).
    """
    if not isinstance(state, dict) or not all(isinstance(k, str) for k in state):
        raise ModelLoadError(
            f'{where}: the weights are not a state_dict (a dict of tensors), '
            f'got {type(state).__name__}'
        )
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise ModelLoadError(
            f'{where}: the weights are not a state_dict: {_names(bad)} are not tensors'
        )
    own = net.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [
        f'{k} {_shape(state[k])} vs {_shape(own[k])}'
        for k in own
        if k in state and state[k].shape != own[k].shape
    ]
    parts = []
    if missing:
        parts.append(f'{len(missing)} missing {_keys(missing)} ({_names(missing)})')
    if unexpected:
        parts.append(f'{len(unexpected)} unexpected {_keys(unexpected)} ({_names(unexpected)})')
    if shapes:
        parts.append(
            f'{len(shapes)} shape mismatch{"es" if len(shapes) > 1 else ""} '
            f'(file vs model: {", ".join(shapes[:2])}' + (', ...' if len(shapes) > 2 else '') + ')'
        )
    if parts:
        raise ModelLoadError(
            f'{where}: the weights do not fit the architecture '
            f'{type(net).__name__}: ' + '; '.join(parts)
        )


def _keys(items: list) -> str:
    return 'key' if len(items) == 1 else 'keys'


def _names(keys: list[str], n: int = 3) -> str:
    return ', '.join(repr(k) for k in keys[:n]) + (', ...' if len(keys) > n else '')


def _shape(t: torch.Tensor) -> str:
    return 'x'.join(str(s) for s in t.shape) or 'scalar'
