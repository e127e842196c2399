"""Where real data and downloads live: ``VSDA_DATA_DIR`` and ``VSDA_CACHE_DIR``."""
from __future__ import annotations

import os
from pathlib import Path

_REPO_ROOT = Path(__file__).resolve().parent.parent


def data_dir() -> Path | None:
    """The real-data folder, or ``None`` when there is none.

    ``VSDA_DATA_DIR`` when set (returned even if missing, so errors name it); otherwise
    ``../shared/data`` next to the current directory or next to this source tree, if it exists.
    """
    env = os.environ.get('VSDA_DATA_DIR')
    if env:
        return Path(env).expanduser()
    for base in (Path.cwd(), _REPO_ROOT):
        candidate = base.parent / 'shared' / 'data'
        if candidate.is_dir():
            return candidate.resolve()
    return None


def cache_dir() -> Path:
    """Download cache: ``VSDA_CACHE_DIR``, else ``$XDG_CACHE_HOME/vsda_ros`` (``~/.cache``)."""
    env = os.environ.get('VSDA_CACHE_DIR')
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get('XDG_CACHE_HOME') or str(Path.home() / '.cache')
    return Path(xdg) / 'vsda_ros'
