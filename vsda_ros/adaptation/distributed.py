"""Data-parallel training for ``vsda adapt``: torchrun's environment → ``torch.distributed``.

``torchrun --nproc_per_node N -m vsda_ros adapt …`` (or ``-m vsda_ros.apps.train_ddp``)
starts N processes with ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and
``MASTER_PORT`` set; :func:`setup` joins them into one process group (gloo on the CPU, NCCL on
CUDA). Every rank builds the same network from the same seed; trainable modules are wrapped in
:class:`~torch.nn.parallel.DistributedDataParallel` (gradients averaged in the backward pass),
each rank samples its own clips (its own numpy seed), and only rank 0 writes files.

Network rule: the rendezvous stays on the loopback interface unless the caller says otherwise
(``MASTER_ADDR`` defaults to 127.0.0.1, gloo's ``GLOO_SOCKET_IFNAME`` to ``lo``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the run (rank 0 of 1 without torchrun)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    owns_group: bool = False  # this module initialised the process group (and destroys it)

    @property
    def main(self) -> bool:
        """Rank 0: the process that logs, evaluates and writes files."""
        return self.rank == 0


def env_info() -> DistInfo:
    """``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` from the environment (torchrun's), else 0/1/0.

    Raises ``ValueError`` for inconsistent values.
    """
    world = int(os.environ.get('WORLD_SIZE', '1') or 1)
    rank = int(os.environ.get('RANK', '0') or 0)
    local = int(os.environ.get('LOCAL_RANK', str(rank)) or 0)
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f'bad torchrun environment: RANK={rank} WORLD_SIZE={world}')
    return DistInfo(rank, world, local)


def setup(device: str = 'cpu') -> DistInfo:
    """Join the process group when started by torchrun (``WORLD_SIZE`` > 1); a no-op otherwise.

    Uses gloo for CPU training and NCCL for CUDA. An already initialised group is reused.
    """
    info = env_info()
    if info.world == 1:
        return info
    if dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), info.local_rank)
    os.environ.setdefault('MASTER_ADDR', '127.0.0.1')
    os.environ.setdefault('MASTER_PORT', '29500')
    cuda = str(device).startswith('cuda')
    if not cuda:
        os.environ.setdefault('GLOO_SOCKET_IFNAME', 'lo')
    dist.init_process_group('nccl' if cuda else 'gloo', rank=info.rank, world_size=info.world)
    return DistInfo(info.rank, info.world, info.local_rank, owns_group=True)


def cleanup(info: DistInfo) -> None:
    """Leave the process group if :func:`setup` created it."""
    if info.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def device_for(info: DistInfo, device: str) -> torch.device:
    """``cuda`` becomes ``cuda:LOCAL_RANK`` under torchrun; anything else is unchanged."""
    if info.world > 1 and str(device) == 'cuda':
        return torch.device('cuda', info.local_rank)
    return torch.device(device)


def wrap(module: nn.Module, info: DistInfo) -> nn.Module:
    """``module`` in DistributedDataParallel when running distributed and it has trainable
    parameters; the module itself otherwise.

    Buffers are not synchronised on every forward: BatchNorm statistics are frozen in these
    recipes, so they are equal on all ranks already.
    """
    if info.world == 1 or not any(p.requires_grad for p in module.parameters()):
        return module
    dev = next(module.parameters()).device
    ids = [dev.index] if dev.type == 'cuda' else None
    return nn.parallel.DistributedDataParallel(module, device_ids=ids, forward_sync_buffers=False)


def average_gradients(params: list[nn.Parameter], info: DistInfo) -> None:
    """All-reduce (mean) the gradients of ``params`` — for recipes whose modules are not wrapped
    (``davss``, ``fusion``)."""
    if info.world == 1:
        return
    for p in params:
        if p.grad is not None:
            dist.all_reduce(p.grad)
            p.grad.div_(info.world)


def all_gather(obj, info: DistInfo) -> list:
    """``[obj of rank 0, obj of rank 1, …]`` on every rank (``[obj]`` when not distributed)."""
    if info.world == 1:
        return [obj]
    out = [None] * info.world
    dist.all_gather_object(out, obj)
    return out


def barrier(info: DistInfo) -> None:
    if info.world > 1:
        dist.barrier()
