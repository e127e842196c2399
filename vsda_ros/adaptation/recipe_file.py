"""Reading a ``vsda adapt`` recipe file (YAML under ``config/experiments/``): its keys checked
against the settings, ``overrides`` applied on top, and ``${VSDA_DATA_DIR}`` (or
``$VSDA_DATA_DIR``) in its values expanded to :func:`vsda_ros.paths.data_dir` — the environment
variable when set, else ``../shared/data`` when it exists — so a recipe works from any
directory. The settings themselves: :class:`vsda_ros.adaptation.config.AdaptConfig`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

#: ``${VSDA_DATA_DIR}`` or ``$VSDA_DATA_DIR`` in a recipe value.
DATA_DIR_VAR = re.compile(r'\$(?:\{VSDA_DATA_DIR\}|VSDA_DATA_DIR\b)')
#: recipe keys that name files to be written, which need not exist yet.
OUTPUT_KEYS = ('out',)


def read_recipe(path: str | Path, known: set[str], overrides: dict[str, Any]) -> dict[str, Any]:
    """The settings of the recipe file ``path`` (keys among ``known``), its values expanded
    (:func:`expand_data_dir`), with ``overrides`` (non-``None`` values) on top; values that
    ``overrides`` replace are not looked at.

    Raises ``ValueError`` for unknown keys (in the file or in ``overrides``), and for a value
    that refers to the data folder when there is none or whose expanded path does not exist.
    """
    data = yaml.safe_load(Path(path).read_text()) or {}
    unknown = set(data) - known
    if unknown:
        raise ValueError(f'{path}: unknown keys {sorted(unknown)}; known: {sorted(known)}')
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if set(overrides) - known:
        raise ValueError(
            f'unknown settings {sorted(set(overrides) - known)}; known: {sorted(known)}'
        )
    data = {k: expand_data_dir(v, k, path) for k, v in data.items() if k not in overrides}
    data.update(overrides)
    return data


def expand_data_dir(value: Any, key: str, source: str | Path = 'recipe') -> Any:
    """``value`` with ``${VSDA_DATA_DIR}`` / ``$VSDA_DATA_DIR`` replaced by
    :func:`vsda_ros.paths.data_dir` (strings, and strings in lists; anything else unchanged).

    An expanded path must exist unless ``key`` is an output (:data:`OUTPUT_KEYS`). ``source``
    (the recipe file) and ``key`` name the culprit in the ``ValueError`` raised when there is no
    data folder or the expanded path is missing.
    """
    if isinstance(value, list):
        return [expand_data_dir(v, f'{key}[{i}]', source) for i, v in enumerate(value)]
    if not isinstance(value, str) or not DATA_DIR_VAR.search(value):
        return value
    from vsda_ros.paths import data_dir

    ddir = data_dir()
    if ddir is None:
        raise ValueError(
            f'{source}: {key}: {value!r} refers to the data folder, but '
            'VSDA_DATA_DIR is not set and there is no ../shared/data; set '
            'VSDA_DATA_DIR'
        )
    expanded = DATA_DIR_VAR.sub(lambda _: str(ddir), value)
    if key.split('[')[0] not in OUTPUT_KEYS and not Path(expanded).exists():
        raise ValueError(
            f'{source}: {key}: {expanded} does not exist ({value!r} with VSDA_DATA_DIR = {ddir})'
        )
    return expanded
