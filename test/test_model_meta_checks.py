"""A model file's meta is checked against its network, and bad model paths say what they are
(issue 24, item 4): each message names the file and the field."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from vsda_ros.models.checkpoint import save_checkpoint
from vsda_ros.models.safe_load import ModelLoadError
from vsda_ros.models.zoo import ZOO, ModelNotFoundError, build, load_model


def _checkpoint(tmp_path: Path, **meta_changes) -> Path:
    model = build(ZOO['espnet-camvid'].meta)  # untrained: 12 head channels, 11 classes
    model.meta = dataclasses.replace(model.meta, **meta_changes)
    return save_checkpoint(model, tmp_path / 'model.pt')


def test_a_checkpoint_loads_when_its_meta_fits(tmp_path: Path) -> None:
    assert load_model(str(_checkpoint(tmp_path))).meta.num_classes == 11


def test_fewer_classes_than_the_head_puts_out_is_refused(tmp_path: Path) -> None:
    meta = ZOO['espnet-camvid'].meta
    path = _checkpoint(tmp_path, classes=meta.classes[:5], palette=meta.palette[:5])
    with pytest.raises(ModelLoadError) as err:
        load_model(str(path))
    assert str(path) in str(err.value) and "'classes'" in str(err.value)
    assert '5 classes' in str(err.value) and '12 output channels' in str(err.value)


def test_a_zero_native_size_names_the_field(tmp_path: Path) -> None:
    path = _checkpoint(tmp_path, native_size=(0, 0))
    with pytest.raises(ModelLoadError) as err:
        load_model(str(path))
    assert str(path) in str(err.value) and "'native_size'" in str(err.value)


def test_a_folder_is_not_called_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError) as err:
        load_model(str(tmp_path))
    assert 'is a folder' in str(err.value) and 'no such file' not in str(err.value)


@pytest.mark.parametrize('text', [b'not a model\n', b'corrupted!!\n'])
def test_a_text_file_is_not_called_pickled_objects(tmp_path: Path, text: bytes) -> None:
    (tmp_path / 'vsda_export.json').write_text('{}')
    (tmp_path / 'model.pt').write_bytes(text)
    with pytest.raises(ModelLoadError) as err:
        load_model(str(tmp_path / 'model.pt'))
    assert 'not a PyTorch file' in str(err.value) and 'pickled' not in str(err.value)
    assert str(tmp_path / 'model.pt') in str(err.value)
