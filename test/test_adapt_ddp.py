"""Data-parallel ``vsda adapt``: two gloo processes on the CPU (loopback only), started the way
torchrun starts them (RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR / MASTER_PORT), on tiny
synthetic data with the real ESPNet architecture (random weights)."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from uda_synthetic import random_espnet_checkpoint, write_sequence
from vsda_ros.adaptation import distributed
from vsda_ros.adaptation.config import AdaptConfig
from vsda_ros.apps.train_ddp import parse_overrides, with_overrides


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, runs: list[tuple[int, dict]], results: str) -> None:
    os.environ.update(
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
        MASTER_ADDR='127.0.0.1',
        GLOO_SOCKET_IFNAME='lo',
        OMP_NUM_THREADS='1',
    )
    torch.set_num_threads(1)
    from vsda_ros.adaptation.config import AdaptConfig
    from vsda_ros.adaptation.train import train

    for port, cfg in runs:
        os.environ['MASTER_PORT'] = str(port)
        summary = train(AdaptConfig(**cfg), progress=False)
        Path(results, f'{cfg["recipe"]}_rank{rank}.json').write_text(json.dumps(summary))


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp('ddp')
    write_sequence(root / 'target', 10, size=(80, 60), step=2, prefix='tgt', seed=21)
    write_sequence(
        root / 'source',
        4,
        size=(80, 60),
        step=20,
        prefix='src',
        seed=22,
        labels=root / 'source_labels',
    )
    random_espnet_checkpoint(root / 'base.pt')
    return root


@pytest.mark.slow  # two processes training over gloo (~1 min on a loaded 2-core machine)
def test_two_process_gloo_run_keeps_ranks_in_sync_and_rank0_writes(data, tmp_path):
    from vsda_ros.adaptation.train import weights_digest
    from vsda_ros.models.zoo import load_model
    from vsda_ros.temporal.modules import TemporalModules

    common = dict(
        model=str(data / 'base.pt'),
        target=[str(data / 'target')],
        batch=1,
        crop=(64, 48),
        height=60,
        threads=1,
        seed=7,
        save_every=0,
    )
    runs = [
        # the whole network + a discriminator, both in DDP
        (
            _free_port(),
            dict(
                common,
                recipe='i2vda',
                out=str(tmp_path / 'i2vda.pt'),
                iterations=3,
                source=str(data / 'source'),
                source_labels=str(data / 'source_labels'),
                proxy_launch=1,
                proxy_interval=1,
                confidence=0.0,
                lr=1e-3,
            ),
        ),
        # a temporal recipe: gradients averaged by hand
        (
            _free_port(),
            dict(common, recipe='fusion', out=str(tmp_path / 'fusion.pt'), iterations=2),
        ),
    ]
    mp.spawn(_worker, args=(2, runs, str(tmp_path)), nprocs=2, join=True)

    for recipe in ('i2vda', 'fusion'):
        r0, r1 = (json.loads((tmp_path / f'{recipe}_rank{r}.json').read_text()) for r in (0, 1))
        assert (r0['rank'], r1['rank'], r0['world_size']) == (0, 1, 2)
        assert r0['trained_sha256'] and r0['trained_sha256'] == r1['trained_sha256']
        assert r0['losses'] != r1['losses']  # each rank drew its own clips
        written = json.loads((tmp_path / f'{recipe}.pt.json').read_text())
        assert written['rank'] == 0  # only rank 0 writes
        assert (tmp_path / f'{recipe}.pt.state.pt').is_file()
        assert sorted(p.name for p in tmp_path.glob(f'{recipe}.pt*')) == [
            f'{recipe}.pt',
            f'{recipe}.pt.json',
            f'{recipe}.pt.state.pt',
        ]
    r0 = json.loads((tmp_path / 'i2vda_rank0.json').read_text())
    assert set(r0['trained_sha256']) == {'network', 'disc'}
    adapted = load_model(str(tmp_path / 'i2vda.pt'))
    assert weights_digest(adapted) == r0['weights_sha256']
    assert r0['weights_sha256'] != weights_digest(load_model(str(data / 'base.pt')))
    assert TemporalModules.from_checkpoint(tmp_path / 'fusion.pt').loaded() == ['fusion']


def test_env_info_and_overrides(monkeypatch):
    monkeypatch.delenv('WORLD_SIZE', raising=False)
    monkeypatch.delenv('RANK', raising=False)
    assert distributed.env_info() == distributed.DistInfo(0, 1, 0)
    assert distributed.setup('cpu').world == 1  # no torchrun: nothing to join
    monkeypatch.setenv('WORLD_SIZE', '2')
    monkeypatch.setenv('RANK', '2')
    with pytest.raises(ValueError, match='RANK=2'):
        distributed.env_info()
    assert parse_overrides(['iterations=5', 'crop=[64, 48]', 'source=a/b']) == {
        'iterations': 5,
        'crop': [64, 48],
        'source': 'a/b',
    }
    with pytest.raises(ValueError, match='KEY=VALUE'):
        parse_overrides(['iterations'])
    cfg = AdaptConfig(recipe='tps', target=['x'], val='v', crop=(64, 48))
    cleared = with_overrides(cfg, parse_overrides(['val=null', 'crop=[32, 24]']))
    assert cleared.val is None and cleared.crop == (32, 24) and cfg.val == 'v'
    with pytest.raises(ValueError, match='unknown settings'):
        with_overrides(cfg, {'bogus': 1})
