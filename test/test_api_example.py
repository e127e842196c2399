"""The Python example in docs/api.md runs as written, on real frames."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[1] / 'docs' / 'api.md'


def _example() -> str:
    blocks = re.findall(r'```python\n(.*?)```', DOC.read_text(), flags=re.S)
    assert len(blocks) == 1, 'docs/api.md should hold exactly one python example'
    return blocks[0]


def test_the_public_names_are_importable_from_the_package() -> None:
    import vsda_ros

    for name in vsda_ros.__all__:
        assert getattr(vsda_ros, name) is not None, name
    with pytest.raises(AttributeError):
        vsda_ros.not_a_public_name  # noqa: B018


@pytest.mark.data
def test_the_api_example_runs_on_real_frames(real_data: Path, capsys) -> None:
    os.environ['VSDA_DATA_DIR'] = str(real_data)
    code = _example()
    assert len(code.strip().splitlines()) <= 12, 'the example should stay short'
    exec(compile(code, str(DOC), 'exec'), {})  # noqa: S102 - the documented example itself
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3
    assert all('(360, 480)' in line for line in lines)
