"""Rough edges of ``vsda adapt`` recipes and ``vsda eval``.

- recipes refer to the data folder as ``${VSDA_DATA_DIR}`` and follow the environment variable;
- ``--interval A..B``: the PDA curve covers A..B, the keyframe strategy runs at interval B;
- the report's cost comparisons use the mean time per frame (``mean_ms``), not p50;
- recipe comments name checkpoints ``runs/<recipe>_<model>.pt``;
- every evaluation pass of ``vsda adapt`` has a progress bar (``--quiet``: none).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from vsda_ros.adaptation.config import AdaptConfig
from vsda_ros.apps.eval import EvalConfig
from vsda_ros.cli import main
from vsda_ros.evaluation.report import markdown

EXPERIMENTS = Path(__file__).resolve().parents[1] / 'config' / 'experiments'


# -- a. recipes follow VSDA_DATA_DIR ------------------------------------------------------------


def _fake_data_dir(root: Path) -> Path:
    for sub in ('camvid/val', 'camvid/valannot', 'camvid/train', 'camvid/trainannot'):
        (root / sub).mkdir(parents=True)
    return root


def test_recipe_paths_follow_vsda_data_dir(tmp_path, monkeypatch):
    data = _fake_data_dir(tmp_path / 'elsewhere')
    monkeypatch.setenv('VSDA_DATA_DIR', str(data))
    monkeypatch.chdir(tmp_path)  # not next to ../shared/data
    cfg = AdaptConfig.from_yaml(EXPERIMENTS / 'tsl.yaml')
    assert cfg.val == f'{data}/camvid/val'
    assert cfg.val_labels == f'{data}/camvid/valannot'
    src = AdaptConfig.from_yaml(EXPERIMENTS / 'source.yaml')
    assert (src.source, src.source_labels) == (f'{data}/camvid/train', f'{data}/camvid/trainannot')
    # a value the command line overrides is not looked at
    assert AdaptConfig.from_yaml(EXPERIMENTS / 'tsl.yaml', val='mine').val == 'mine'


def test_no_recipe_hard_codes_the_data_folder():
    for path in EXPERIMENTS.glob('*.yaml'):
        data = yaml.safe_load(path.read_text())
        values = [v for v in data.values() if isinstance(v, str)]
        values += [x for v in data.values() if isinstance(v, list) for x in v if isinstance(x, str)]
        assert not [v for v in values if 'shared/data' in v], path.name


def test_both_spellings_expand_and_unset_variable_uses_the_default(tmp_path, monkeypatch):
    data = _fake_data_dir(tmp_path / 'default')
    recipe = tmp_path / 'r.yaml'
    recipe.write_text(
        'recipe: tps\nval: $VSDA_DATA_DIR/camvid/val\n'
        'val_labels: ${VSDA_DATA_DIR}/camvid/valannot\n'
        'target: [$VSDA_DATA_DIR/camvid/train]\nout: ${VSDA_DATA_DIR}/new.pt\n'
    )
    monkeypatch.delenv('VSDA_DATA_DIR', raising=False)
    monkeypatch.setattr('vsda_ros.paths.data_dir', lambda: data)
    cfg = AdaptConfig.from_yaml(recipe)
    assert (cfg.val, cfg.val_labels) == (f'{data}/camvid/val', f'{data}/camvid/valannot')
    assert cfg.target == [f'{data}/camvid/train'] and cfg.out == f'{data}/new.pt'


def test_missing_expanded_path_is_an_error_naming_key_and_path(tmp_path, monkeypatch):
    monkeypatch.setenv('VSDA_DATA_DIR', str(tmp_path / 'nothing'))
    with pytest.raises(
        ValueError, match=re.escape(f'val: {tmp_path}/nothing/camvid/val does not exist')
    ):
        AdaptConfig.from_yaml(EXPERIMENTS / 'tsl.yaml')
    monkeypatch.delenv('VSDA_DATA_DIR')
    monkeypatch.setattr('vsda_ros.paths.data_dir', lambda: None)
    with pytest.raises(ValueError, match='val: .*VSDA_DATA_DIR is not set'):
        AdaptConfig.from_yaml(EXPERIMENTS / 'tsl.yaml')


# -- b. --interval A..B -------------------------------------------------------------------------


def test_interval_range_runs_keyframe_at_b_and_pda_covers_a_to_b():
    cfg = EvalConfig(model='m', source='s', out=Path('o'), interval='1..9')
    assert cfg.intervals() == (9, (1, 9))
    assert EvalConfig(model='m', source='s', out=Path('o'), interval='3..7').intervals() == (
        7,
        (3, 7),
    )
    assert EvalConfig(model='m', source='s', out=Path('o'), interval='4').intervals() == (4, None)
    assert EvalConfig(model='m', source='s', out=Path('o'), interval='4', pda=True).intervals() == (
        4,
        (1, 9),
    )
    for bad in ('0', '5..2', '0..3', 'x', '1..', '2..b'):
        with pytest.raises(ValueError, match='--interval'):
            EvalConfig(model='m', source='s', out=Path('o'), interval=bad).intervals()


def test_interval_semantics_are_in_the_help(capsys):
    with pytest.raises(SystemExit):
        main(['eval', '--help'])
    text = ' '.join(capsys.readouterr().out.split())
    assert 'the PDA curve at distances A..B' in text
    assert 'keyframe strategy at interval B' in text
    assert 'mean time per frame' in text


# -- c. mean time per frame -----------------------------------------------------------------------


def _res(strategy: str) -> dict:
    return {
        'strategy': strategy,
        'tc': 90.0,
        'fps': 10.0,
        'frames': 5,
        'keyframe_ratio': 0.2,
        'latency_ms': {'p50': 10.0, 'p95': 100.0, 'p99': 100.0},
    }


def test_run_rows_carry_the_mean_and_cost_is_compared_by_it():
    """A keyframe run with one 100 ms key frame in five: p50 10 ms, mean 28 ms."""
    from vsda_ros.evaluation.report import compare_cost, run_row

    runs = [
        run_row(_res('per_frame'), None, [50.0] * 5),
        run_row(_res('keyframe'), None, [100.0, 10.0, 10.0, 10.0, 10.0]),
    ]
    compare_cost(runs)
    assert runs[0]['mean_ms'] == 50.0 and runs[1]['mean_ms'] == pytest.approx(28.0)
    assert runs[1]['time_vs_per_frame'] == pytest.approx(28.0 / 50.0)
    assert runs[0]['weather'] is None and runs[0]['dropped'] == 0
    report = {
        'model': 'm',
        'source': 's',
        'frames': 5,
        'labelled_frames': 0,
        'mode': 'offline',
        'temporal_modules': [],
        'keyframe_interval': 5,
        'weather_temporal': True,
        'seed': 0,
        'runs': [{**r, 'agreement': 100.0} for r in runs],
    }
    md = markdown(report)
    assert '| mean ms/frame |' in md and '| 28.0 | 0.56 |' in md


def test_eval_report_has_mean_ms_and_range_semantics(real_data, tmp_path, capsys):
    """A short real run: ``--interval 2..3`` runs keyframe at interval 3 (2 keyframes in 6) and
    reports the PDA at d = 0, 2, 3; every run has ``mean_ms``; the key/non-key time ratio is
    the ratio of the means."""
    out = tmp_path / 'ev'
    assert (
        main(
            [
                'eval',
                '--backend',
                'torch',
                '--source',
                str(real_data / 'camvid' / 'val'),
                '--labels',
                str(real_data / 'camvid' / 'valannot'),
                '--max-frames',
                '6',
                '--strategy',
                'per_frame,keyframe',
                '--interval',
                '2..3',
                '--size',
                '160x120',
                '--temporal-weights',
                'none',
                '--out',
                str(out),
                '--quiet',
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    r = json.loads((out / 'report.json').read_text())
    assert r['keyframe_interval'] == 3 and r['pda_range'] == [2, 3]
    pf, kf = r['runs']
    assert kf['keyframe_ratio'] == pytest.approx(2 / 6)
    assert list(r['pda']['keyframe']) == ['0', '2', '3'] == list(r['pda']['per_frame'])
    for run in r['runs']:
        assert run['mean_ms'] > 0
    assert r['mean_ms'] == pf['mean_ms']
    assert kf['time_vs_per_frame'] == pytest.approx(kf['mean_ms'] / pf['mean_ms'])
    c = r['cost']
    assert c['time_ratio'] == pytest.approx(c['nonkey_ms_mean'] / c['key_ms_mean'])
    assert 'mean ms/frame' in (out / 'report.md').read_text()
    assert 'ms/frame' in printed


# -- d. checkpoint names in recipe comments -------------------------------------------------------


def test_recipe_comments_name_checkpoints_recipe_model():
    for path in EXPERIMENTS.glob('*.yaml'):
        data = yaml.safe_load(path.read_text())
        names = re.findall(r'runs/[\w.-]+\.pt', path.read_text())
        # runs/<recipe>_<model>.pt, or runs/<file stem>_<model>.pt for a recipe's variant
        # (fusion_guided.yaml: recipe fusion, fusion_variant guided)
        assert names in (
            [f'runs/{data["recipe"]}_{data["model"]}.pt'],
            [f'runs/{path.stem}_{data["model"]}.pt'],
        ), (path.name, names)


# -- e. progress bars for evaluation passes -------------------------------------------------------


@pytest.fixture(scope='module')
def tiny_source_run(tmp_path_factory):
    from uda_synthetic import random_espnet_checkpoint, write_sequence

    root = tmp_path_factory.mktemp('evalbar')
    write_sequence(
        root / 'source',
        3,
        size=(96, 72),
        step=20,
        prefix='src',
        seed=12,
        labels=root / 'source_labels',
    )
    write_sequence(
        root / 'val', 3, size=(96, 72), step=2, prefix='val', seed=13, labels=root / 'val_labels'
    )
    model = str(random_espnet_checkpoint(root / 'base.pt'))

    def cfg(out: Path) -> AdaptConfig:
        return AdaptConfig(
            recipe='source',
            model=model,
            source=str(root / 'source'),
            source_labels=str(root / 'source_labels'),
            out=str(out),
            iterations=1,
            batch=1,
            crop=(64, 48),
            height=72,
            threads=1,
            save_every=0,
            lr=1e-3,
            val=str(root / 'val'),
            val_labels=str(root / 'val_labels'),
            eval_every=1,
            val_size=(64, 48),
        )

    return cfg


def test_every_evaluation_pass_of_adapt_has_a_progress_bar(tiny_source_run, tmp_path, capfd):
    from vsda_ros.adaptation.train import train

    summary = train(tiny_source_run(tmp_path / 'a.pt'), progress=True)
    assert [e['iteration'] for e in summary['evaluations']] == [0, 1]
    err = capfd.readouterr().err
    assert 'eval it 0 per_frame' in err and 'eval it 1 per_frame' in err
    train(tiny_source_run(tmp_path / 'b.pt'), progress=False)  # --quiet
    assert 'eval it' not in capfd.readouterr().err
