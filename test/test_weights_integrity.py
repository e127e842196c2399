"""Zoo weights found in ``VSDA_DATA_DIR`` or the cache are sha256-checked before they load —
once per file version (memoised in the process, recorded under ``VSDA_CACHE_DIR``)."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from vsda_ros import fetch
from vsda_ros.models.safe_load import ModelLoadError
from vsda_ros.models.zoo import ZOO, load_model

ENTRY = ZOO['espnet-camvid']


@pytest.fixture
def layout(tmp_path, monkeypatch, real_data):
    """A VSDA_DATA_DIR laid out like ../shared/data with a copy of the CamVid ESPNet weights,
    an empty VSDA_CACHE_DIR, a fresh in-process memo and a counter of full hashes."""
    data, cache = tmp_path / 'data', tmp_path / 'cache'
    (data / 'weights').mkdir(parents=True)
    weights = data / 'weights' / ENTRY.filename
    shutil.copyfile(real_data / 'weights' / ENTRY.filename, weights)
    monkeypatch.setenv('VSDA_DATA_DIR', str(data))
    monkeypatch.setenv('VSDA_CACHE_DIR', str(cache))
    monkeypatch.setattr(fetch, '_DIGESTS', {})
    hashed = []
    real_sha256_of = fetch.sha256_of

    def counting(path):
        hashed.append(os.path.realpath(path))
        return real_sha256_of(path)

    monkeypatch.setattr(fetch, 'sha256_of', counting)
    return {'weights': weights, 'cache': cache, 'hashed': hashed}


def _corrupt(path) -> None:
    """Flip one byte inside the tensor data: torch still reads the file, only sha256 tells."""
    blob = bytearray(path.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    path.write_bytes(bytes(blob))


def test_corrupt_weights_in_the_data_dir_are_refused(layout):
    path = layout['weights']
    _corrupt(path)
    with pytest.raises(ModelLoadError) as err:
        load_model(ENTRY.name, download=False, progress=False)
    msg = str(err.value)
    assert '\n' not in msg and str(path) in msg
    assert f'expected {ENTRY.sha256}' in msg and fetch.sha256_of(path) in msg
    assert f'vsda fetch {ENTRY.name}' in msg


def test_corrupt_weights_in_the_cache_are_refused(layout, monkeypatch, tmp_path):
    monkeypatch.setenv('VSDA_DATA_DIR', str(tmp_path / 'none'))
    cached = layout['cache'] / 'weights' / ENTRY.filename
    cached.parent.mkdir(parents=True)
    shutil.copyfile(layout['weights'], cached)
    _corrupt(cached)
    with pytest.raises(ModelLoadError, match=f'run `vsda fetch {ENTRY.name}`') as err:
        load_model(ENTRY.name, download=False, progress=False)
    assert str(cached) in str(err.value) and 'sha256' in str(err.value)


def test_good_weights_load_and_are_hashed_once(layout):
    path = layout['weights']
    load_model(ENTRY.name, download=False, progress=False)
    assert layout['hashed'] == [os.path.realpath(path)]
    record = json.loads((layout['cache'] / fetch.DIGEST_FILE).read_text())
    st = path.stat()
    assert record[os.path.realpath(path)] == {
        'size': st.st_size,
        'mtime_ns': st.st_mtime_ns,
        'sha256': ENTRY.sha256,
    }
    load_model(ENTRY.name, download=False, progress=False)  # the memo
    assert len(layout['hashed']) == 1
    fetch._DIGESTS.clear()  # a restart: the JSON record
    load_model(ENTRY.name, download=False, progress=False)
    assert len(layout['hashed']) == 1


def test_a_modified_file_is_hashed_again(layout):
    path = layout['weights']
    load_model(ENTRY.name, download=False, progress=False)
    _corrupt(path)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))  # a later write
    with pytest.raises(ModelLoadError, match='corrupt'):
        load_model(ENTRY.name, download=False, progress=False)
    assert len(layout['hashed']) == 2


def test_an_unreadable_record_only_costs_a_rehash(layout):
    layout['cache'].mkdir(parents=True)
    (layout['cache'] / fetch.DIGEST_FILE).write_text('{not json')
    load_model(ENTRY.name, download=False, progress=False)
    assert len(layout['hashed']) == 1
    assert json.loads((layout['cache'] / fetch.DIGEST_FILE).read_text())


def test_explicit_weights_are_not_checked_against_the_zoo(layout, tmp_path):
    """``weights=`` is the user's own file (e.g. fine-tuned): loaded without the zoo digest."""
    mine = tmp_path / 'mine.pth'
    shutil.copyfile(layout['weights'], mine)
    load_model(ENTRY.name, weights=mine, download=False, progress=False)
    assert layout['hashed'] == []
