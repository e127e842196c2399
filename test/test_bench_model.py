"""vsda bench model: interleaved rounds per backend × precision, the JSON contract, skipped
configurations with reasons, and the CLI. A random ESPNet at 64×48, 2 rounds (no timing
asserts)."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from vsda_ros.inference.backends import installed

KEYS = {
    'backend',
    'precision',
    'ms_p50',
    'ms_p95',
    'gflops_per_s',
    'speedup_vs_torch',
    'miou',
    'argmax_agreement',
}


@pytest.fixture(scope='module')
def ckpt(tmp_path_factory):
    from vsda_ros.models.checkpoint import save_checkpoint
    from vsda_ros.models.zoo import ZOO, build

    torch.set_num_threads(2)
    torch.manual_seed(0)
    model = build(copy.deepcopy(ZOO['espnet-camvid'].meta)).eval()
    return save_checkpoint(model, tmp_path_factory.mktemp('bench') / 'tiny.pt')


def test_bench_model_report(ckpt, tmp_path, monkeypatch):
    from vsda_ros.evaluation.model_bench import BenchModelConfig, format_table, run_bench_model

    monkeypatch.setenv('VSDA_CACHE_DIR', str(tmp_path))
    r = run_bench_model(
        BenchModelConfig(model=str(ckpt), size=(64, 48), rounds=2, warmup=1, progress=False)
    )
    assert r['size'] == [64, 48] and r['peak_gflops'] > 0 and r['flops'] > 0
    got = {(x['backend'], x['precision']) for x in r['results']}
    assert ('torch', 'fp32') in got
    for x in r['results']:
        assert KEYS <= set(x) and x['ms_p50'] > 0 and x['miou'] is None
    torch_row = next(x for x in r['results'] if x['backend'] == 'torch')
    assert torch_row['speedup_vs_torch'] == pytest.approx(1.0)
    skipped = {(s['backend'], s['precision']) for s in r['skipped']}
    assert ('torch', 'bf16') not in skipped  # torch runs fp32 only: not a config
    assert ('openvino', 'int8') in skipped  # no calibrated export given
    if installed('openvino'):
        assert {('openvino', 'fp32'), ('openvino', 'bf16')} <= got
    if installed('onnxruntime'):
        assert ('onnxruntime', 'fp32') in got and ('onnxruntime', 'bf16') in skipped
    assert 'x torch' in format_table(r)


def test_bench_model_cli_json(ckpt, tmp_path, monkeypatch, capsys):
    from vsda_ros.cli import main

    monkeypatch.setenv('VSDA_CACHE_DIR', str(tmp_path))
    out = tmp_path / 'b.json'
    assert (
        main(
            [
                'bench',
                'model',
                '--model',
                str(ckpt),
                '--size',
                '64x48',
                '--backend',
                'torch',
                '--precision',
                'fp32',
                '--rounds',
                '2',
                '--warmup',
                '1',
                '--json',
                str(out),
            ]
        )
        == 0
    )
    r = json.loads(out.read_text())
    assert {'model', 'size', 'peak_gflops', 'results'} <= set(r)
    assert [(x['backend'], x['precision']) for x in r['results']] == [('torch', 'fp32')]
    assert 'GFLOP/s' in capsys.readouterr().out
    assert main(['bench', 'model', '--model', str(ckpt), '--backend', 'tensorflow']) == 2


def test_bench_model_accuracy_columns(real_data, tmp_path, monkeypatch):
    from vsda_ros.evaluation.model_bench import BenchModelConfig, run_bench_model

    monkeypatch.setenv('VSDA_CACHE_DIR', str(tmp_path))
    backends = ('torch',) + tuple(b for b in ('openvino',) if installed(b))
    r = run_bench_model(
        BenchModelConfig(
            model='espnet-camvid',
            size=(240, 180),
            backends=backends,
            precisions=('fp32',),
            rounds=1,
            warmup=1,
            source=str(real_data / 'camvid' / 'val'),
            labels=str(real_data / 'camvid' / 'valannot'),
            max_frames=2,
            progress=False,
        )
    )
    for x in r['results']:
        assert x['miou'] is not None and x['argmax_agreement'] >= 99.9
