"""Trained checkpoints shipped with vsda_ros (package data, ≤ 5 MB a file).

The files here are listed, with their sha256 and provenance, in
:data:`vsda_ros.models.shipped.SHIPPED_FILES`; ``make models`` (``tools/zoo_build.py``)
retrains them from ``VSDA_DATA_DIR`` and ``vsda models`` lists them. Model cards:
``docs/design/models.md``.
"""

from pathlib import Path

#: the folder holding the shipped checkpoint files.
ZOO_DIR = Path(__file__).resolve().parent
