"""Where real data and downloads live (``VSDA_DATA_DIR``, ``VSDA_CACHE_DIR``), and how to reach
the ``vsda`` command from the install this code runs in."""
from __future__ import annotations

import os
import shutil
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


def ament_install_prefix() -> Path | None:
    """The colcon/ament install prefix of vsda_ros, or ``None`` when it is not installed that way.

    An ament install registers the package in the ament index (``AMENT_PREFIX_PATH``) and puts
    its console scripts in ``<prefix>/lib/vsda_ros/`` (``ros2 run`` looks there), not on
    ``PATH``. A pip/venv install has neither (its scripts are in ``bin/``).
    """
    try:
        from ament_index_python.packages import get_package_prefix
    except ImportError:
        return None
    try:
        prefix = Path(get_package_prefix('vsda_ros'))
    except (LookupError, ValueError, OSError):  # not in the index; AMENT_PREFIX_PATH unset
        return None
    return prefix if (prefix / 'lib' / 'vsda_ros' / 'vsda').is_file() else None


def vsda_command(args: str) -> str:
    """The ``vsda`` command line for ``args`` that works in this install.

    ``vsda ARGS`` when ``vsda`` is on ``PATH`` (a pip/venv install, or a sourced workspace whose
    lib dir was added to PATH); ``ros2 run vsda_ros vsda ARGS`` in a colcon/ament install
    (:func:`ament_install_prefix`) without it. For messages that tell the user what to run, e.g.
    ``vsda_command('fetch espnet-camvid')``.
    """
    if shutil.which('vsda') is None and ament_install_prefix() is not None:
        return f'ros2 run vsda_ros vsda {args}'
    return f'vsda {args}'
