"""Reading torch files safely: plain tensors and containers only, one clear error otherwise.

Every ``torch.load`` in vsda_ros goes through :func:`safe_torch_load`: ``weights_only=True``
(a file that holds pickled Python objects is refused before any of its code can run), and every
failure — unreadable, empty, truncated, not a torch file, pickled objects — becomes one
:class:`ModelLoadError` whose one-line message names the file and says what is wrong. torch's
own message (which advises retrying with the unsafe loader) is never passed on.
"""

from __future__ import annotations

import pickle
import re
import warnings
from pathlib import Path

import torch


class ModelLoadError(RuntimeError):
    """A model, weights, checkpoint, temporal-module or training-state file could not be used.

    The message is one line: the file, then what is wrong with it.
    """


_GLOBAL = re.compile(r'GLOBAL ([\w.]+)')
_UNSAFE_MARKERS = (
    'Unsupported global',
    'Unsupported operand',
    'Unsupported class',
    'unrecognized function',
    'not an allowed global',
    'Unsupported type',
)


def _reason(exc: BaseException) -> str:
    """A short, one-line description of ``exc`` that never quotes torch's unsafe advice."""
    text = str(exc).strip().splitlines()[0].strip() if str(exc).strip() else ''
    if 'weights_only' in text or 'Weights only' in text or not text:
        return type(exc).__name__
    return f'{type(exc).__name__}: {text[:160]}'


#: how a ``torch.save`` file starts: a zip archive (the default since torch 1.6) or a pickle
#: stream of protocol 2 or later (the legacy format)
_TORCH_SIGNATURES = (b'PK\x03\x04', b'\x80')


def _check_signature(path: Path, what: str) -> None:
    """Refuse a file that cannot be a ``torch.save`` file before the unpickler reads it (its
    errors on arbitrary bytes are misleading: text can look like 'pickled Python objects').

    Raises ``ModelLoadError`` naming the file, its size and its first bytes.
    """
    try:
        with path.open('rb') as fh:
            head = fh.read(8)
    except OSError as e:
        raise ModelLoadError(f'{what} {path}: cannot read it ({e.strerror or e})') from None
    if not head:
        raise ModelLoadError(f'{what} {path}: cannot read it: the file is empty')
    if not head.startswith(_TORCH_SIGNATURES):
        raise ModelLoadError(
            f'{what} {path}: cannot read it: not a PyTorch file ('
            f'{path.stat().st_size} bytes '
            f'starting {head[:8]!r}; torch.save files are zip archives)'
        )


def safe_torch_load(path: str | Path, what: str = 'file') -> object:
    """``torch.load(path, map_location='cpu', weights_only=True)`` with clear errors.

    Args:
        path: the file to read.
        what: what the file is, for the message (``'checkpoint'``, ``'weights file'``, ...).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ModelLoadError: anything else — unreadable, empty, truncated or not a PyTorch file, or
            a file with pickled Python objects in it (refused without running them).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f'{what} {path} does not exist')
    if path.is_dir():
        raise ModelLoadError(f'{what} {path} is a folder, not a file')
    _check_signature(path, what)
    try:
        with warnings.catch_warnings():
            # torch warns about pickle protocols it does not know; the error below says enough
            warnings.simplefilter('ignore')
            return torch.load(str(path), map_location='cpu', weights_only=True)
    except pickle.UnpicklingError as e:
        text = str(e)
        if any(m in text for m in _UNSAFE_MARKERS):
            found = _GLOBAL.search(text)
            detail = f' ({found.group(1)})' if found else ''
            raise ModelLoadError(
                f'{what} {path}: refusing to load: the file contains pickled Python objects'
                f'{detail}, not plain tensors (unpickling them could run code); vsda_ros only '
                'reads plain state_dicts and vsda checkpoints'
            ) from None
        raise ModelLoadError(
            f'{what} {path}: cannot read it: not a PyTorch file, or corrupt ({_reason(e)})'
        ) from None
    except EOFError:
        raise ModelLoadError(
            f'{what} {path}: cannot read it: the file is empty or truncated'
        ) from None
    except (
        OSError,
        RuntimeError,
        KeyError,
        ValueError,
        TypeError,
        AttributeError,
        IndexError,
        MemoryError,
        UnicodeDecodeError,
    ) as e:
        raise ModelLoadError(
            f'{what} {path}: cannot read it: not a PyTorch file, or truncated '
            f'or corrupt ({_reason(e)})'
        ) from None
