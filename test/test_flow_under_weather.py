"""benchmarks/flow_under_weather.py: DIS flow on weather-degraded real frame pairs."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / 'benchmarks'
STAT_KEYS = {'epe_mean', 'epe_gt1', 'epe_gt3'}


def _load():
    """The benchmark as a module (registered in sys.modules: it defines a dataclass)."""
    name = 'flow_under_weather'
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, BENCH / f'{name}.py')
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope='module')
def seq_clip() -> Path:
    """One real 17 Hz city clip (cityscapes_seq/seq0000); skips with the reason when absent."""
    from vsda_ros.paths import data_dir

    ddir = data_dir()
    clip = None if ddir is None else ddir / 'cityscapes_seq' / 'seq0000'
    if clip is None or not clip.is_dir():
        pytest.skip(
            f'real data not found (set VSDA_DATA_DIR; looked for '
            f'{clip or "cityscapes_seq/seq0000"}): needs cityscapes_seq/ from '
            '../shared/data'
        )
    return clip


def _check_stats(s: dict) -> None:
    assert set(s) == STAT_KEYS
    assert math.isfinite(s['epe_mean']) and s['epe_mean'] >= 0
    assert 0 <= s['epe_gt3'] <= s['epe_gt1'] <= 1


def test_epe_on_three_real_pairs(seq_clip):
    fw = _load()
    pairs = fw.load_pairs([seq_clip], max_pairs=3)
    assert len(pairs) == 3 and pairs[0][1] is pairs[1][0]  # consecutive, shared frames
    r = fw.flow_epe_under_weather(pairs, size=(240, 120), intensity=0.6)
    assert r['pairs'] == 3 and r['size'] == [240, 120] and r['preset'] == fw.DEFAULT_PRESET
    assert r['clean'] == {'epe_mean': 0.0, 'epe_gt1': 0.0, 'epe_gt3': 0.0}
    _check_stats(r['zero_flow'])
    assert r['zero_flow']['epe_mean'] > 0  # the camera moves: the clean flow is not zero
    assert set(r['weather']) == {'temporal', 'transient'}
    for by_kind in r['weather'].values():
        assert list(by_kind) == ['fog', 'rain', 'snow', 'night', 'glare', 'noise']
        for s in by_kind.values():
            _check_stats(s)
            assert s['epe_mean'] > 0  # every kind changes the flow somewhere


def test_main_writes_json_plot_and_table(seq_clip, tmp_path, capsys):
    out = tmp_path / 'fuw.json'
    assert (
        _load().main(
            [
                '--source',
                str(seq_clip),
                '--max-pairs',
                '2',
                '--size',
                '240x120',
                '--kinds',
                'fog,noise',
                '--out',
                str(out),
                '--quiet',
            ]
        )
        == 0
    )
    r = json.loads(out.read_text())
    assert set(r) == {
        'source',
        'clips',
        'pairs',
        'size',
        'preset',
        'intensity',
        'seed',
        'kinds',
        'modes',
        'clean',
        'zero_flow',
        'weather',
    }
    assert r['clips'] == ['seq0000'] and r['pairs'] == 2 and r['kinds'] == ['fog', 'noise']
    assert r['clean']['epe_mean'] == 0.0
    assert out.with_suffix('.png').stat().st_size > 1000
    text = capsys.readouterr().out
    assert 'zero flow' in text and 'transient' in text


def test_bad_arguments_exit_2(tmp_path):
    fw = _load()
    with pytest.raises(SystemExit) as exc:
        fw.main(['--source', str(tmp_path / 'missing'), '--out', str(tmp_path / 'x.json')])
    assert exc.value.code == 2
    with pytest.raises(SystemExit):
        fw.main(['--source', str(tmp_path), '--kinds', 'hail', '--out', str(tmp_path / 'x.json')])
