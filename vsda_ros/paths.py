"""Where real data and downloads live (``VSDA_DATA_DIR``, ``VSDA_CACHE_DIR``), and how to reach
the ``vsda`` command from the install this code runs in."""

from __future__ import annotations

import contextlib
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


def _umask() -> int:
    """The process umask: from ``/proc/self/status`` on Linux (reading it by setting and
    restoring it would race with other threads creating files), else set and restored."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path('/proc/self/status').read_text().splitlines():
            if line.startswith('Umask:'):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def make_shared_dir(path: str | Path) -> Path:
    """Create ``path`` (and its parents) readable by others as the umask allows (0755 under the
    usual 022), as a cache shared by users needs; ``tempfile.mkdtemp`` folders are 0700, so a
    folder made that way and renamed into the cache is opened up here too.

    Raises ``OSError`` when it cannot be created.
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    share(path)
    return path


def share(path: str | Path) -> None:
    """Give ``path`` the mode a new file/folder gets under the umask (0644 / 0755 under 022):
    ``mkstemp`` files are 0600 and ``mkdtemp`` folders 0700. Best effort: a path owned by
    someone else keeps its mode."""
    path = Path(path)
    full = 0o777 if path.is_dir() else 0o666
    try:
        os.chmod(path, full & ~_umask())
    except OSError:
        pass


def write_atomic(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: a temporary file in the same folder, flushed to
    disk, given the umask's mode, then renamed over ``path`` (a reader sees the old file or the
    new one, never half of it).

    Raises ``OSError`` (the temporary file removed) when the folder is not writable.
    """
    import tempfile

    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f'.{path.name}.', dir=path.parent)
    try:
        with os.fdopen(fd, 'wb') as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        share(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
