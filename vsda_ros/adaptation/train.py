"""``train(cfg)``: the readable training loop behind ``vsda adapt``.

Two kinds of recipe run through the same loop:

- temporal-module recipes (``davss``, ``fusion``): the network is frozen (eval mode, no
  gradients) and only small temporal modules train;
- whole-network recipes (:mod:`vsda_ros.adaptation.uda`): the network trains — in train mode,
  but with every BatchNorm layer kept in eval mode (frozen running statistics: a CPU step sees
  1–4 crops, too few for batch statistics; see
  :func:`~vsda_ros.adaptation.uda.common.freeze_batchnorm`) — with discriminators or fusion
  blocks as the recipe needs, and the adapted weights are what the checkpoint holds.

Under ``torchrun`` (``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` set) the run is data-parallel: see
:mod:`vsda_ros.adaptation.distributed`.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any, cast

import cv2
import numpy as np
import torch
from tqdm import tqdm

from vsda_ros.adaptation import distributed
from vsda_ros.adaptation.config import AdaptConfig
from vsda_ros.adaptation.recipes import RECIPE_CLASSES
from vsda_ros.adaptation.resume import (
    load_resume_state,
    plain,
    restore_rngs,
    rng_state,
    state_path,
)
from vsda_ros.adaptation.uda.common import NetworkRecipe
from vsda_ros.adaptation.video import TargetVideo
from vsda_ros.models.checkpoint import save_checkpoint
from vsda_ros.models.safe_load import ModelLoadError
from vsda_ros.models.zoo import load_model


def weights_digest(model: torch.nn.Module) -> str:
    """sha256 of a network's state (names and values, in order): equal digests = equal weights."""
    h = hashlib.sha256()
    for name, value in model.state_dict().items():
        h.update(name.encode())
        h.update(value.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def train(cfg: AdaptConfig, progress: bool = True) -> dict:
    """Train the recipe on the target video (and source frames) and write ``cfg.out``.

    Returns a summary (iterations, seconds, final losses, evaluations, the exported weights'
    digest). Resumes from ``<out>.state.pt`` when it exists and matches the recipe. Under
    torchrun every rank returns its summary; only rank 0 writes files.

    Raises:
        ValueError / FileNotFoundError: bad config or inputs.
        ModelLoadError: the model, or an existing resume state, cannot be loaded (unreadable,
            unsafe — pickled objects are never unpickled —, or not fitting this run).
    """
    cfg.validate()
    # 1. Distributed: join torchrun's process group when there is one (a no-op otherwise).
    info = distributed.setup(cfg.device)
    try:
        return _train(cfg, info, progress and info.main)
    finally:
        distributed.cleanup(info)


def _train(cfg: AdaptConfig, info: distributed.DistInfo, progress: bool) -> dict:
    out = Path(cfg.out)
    recipe_cls = RECIPE_CLASSES[cfg.recipe]
    whole = issubclass(cast(type, recipe_cls), NetworkRecipe)  # the table holds classes
    # 2. Determinism: the same torch seed on every rank (identical initialisation), numpy
    #    sampling seeded per rank (each rank draws its own clips; rank 0 = the 1-process run).
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed if info.rank == 0 else [cfg.seed, info.rank])
    torch.set_num_threads(cfg.threads)
    device = distributed.device_for(info, cfg.device)

    # 3. The base network. Temporal recipes: frozen (eval mode, no gradients). Whole-network
    #    recipes: the recipe marks what trains (cfg.train_base, cfg.freeze).
    model = load_model(cfg.model, progress=progress).to(device).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    if cfg.val and cfg.label_map:  # fail now, not after training
        from vsda_ros.models.zoo import label_mapping

        label_mapping(cfg.label_map, model.meta)

    # 4. Data: the unlabelled target video and, when given, the labelled source frames, in memory.
    needs_target = getattr(recipe_cls, 'needs_target', True)
    video = _load_target(cfg, info.main) if needs_target else None
    source = None
    if whole and cfg.source:
        from vsda_ros.adaptation.source_data import LabelledSource

        source = LabelledSource.load(
            cfg.source,
            cast(str, cfg.source_labels),  # validate(): given with source
            model.num_classes,
            cfg.source_map,
            cfg.height,
            cfg.frame_size,
        )
        if info.main:
            print(f'source: {len(source)} labelled frames from {cfg.source}')

    # 5. The recipe decides what is trained and how the loss is computed.
    recipe = recipe_cls(model, cfg, rank=info.rank) if whole else recipe_cls(model, cfg)
    modules = recipe.modules()

    # 6. Data parallel: trainable modules in DDP (gradients averaged in backward); the
    #    temporal recipes' modules are averaged by hand after backward.
    if whole and info.world > 1:
        recipe.wrap(lambda m: distributed.wrap(m, info))

    # 7. Optimiser: AdamW over everything trainable (discriminators at cfg.disc_lr), poly decay.
    lr = cfg.learning_rate
    if whole:
        groups = recipe.param_groups(lr)
    else:
        groups = [
            {
                'params': [p for m in modules.values() for p in m.parameters() if p.requires_grad],
                'lr': lr,
            }
        ]
    trainable = [p for g in groups for p in g['params']]
    if not trainable:
        raise ValueError(f'recipe {cfg.recipe} has nothing to train with these settings')
    optim = torch.optim.AdamW(groups, lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.LambdaLR(
        optim, lambda i: max(0.0, 1 - i / cfg.iterations) ** 0.9
    )
    if info.main:
        n = sum(p.numel() for p in trainable)
        print(
            f'{cfg.recipe}: training {n:,} parameters '
            f'({", ".join(g.get("name", "modules") for g in groups)}), lr {lr:g}'
            + (f', {info.world} processes' if info.world > 1 else '')
        )

    # 8. Resume if a matching state exists (every rank reads it; each takes its own RNG state).
    start, history, evaluations = 0, [], []
    state_file = state_path(out)
    if state_file.is_file():
        state = load_resume_state(state_file)
        if state.get('recipe') == cfg.recipe and state.get('iteration', 0) < cfg.iterations:
            try:
                for name, module in modules.items():
                    module.load_state_dict(state['modules'][name])
                optim.load_state_dict(state['optim'])
                sched.load_state_dict(state['sched'])
                restore_rngs(state, info, rng, recipe)
            except (KeyError, TypeError, ValueError, RuntimeError) as e:
                raise ModelLoadError(
                    f'resume state {state_file} does not fit this run ({cfg.recipe}): '
                    f'{type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ""}; '
                    'delete it to start over'
                ) from None
            start, history = state['iteration'], state.get('history', [])
            evaluations = state.get('evaluations', [])
            if info.main:
                print(f'resuming {cfg.recipe} from iteration {start} ({state_file})')

    def eval_pass(i: int) -> dict:
        kw: dict[str, Any] = {'progress': progress, 'desc': f'eval it {i}'}
        return (
            evaluate_network(recipe, model, cfg, **kw)
            if whole
            else evaluate(recipe, model, cfg, **kw)
        )

    def save_state(i: int) -> None:
        # every rank's RNG states are gathered (a collective), rank 0 writes
        rngs = distributed.all_gather(rng_state(rng, recipe), info)
        if not info.main:
            return
        out.parent.mkdir(parents=True, exist_ok=True)
        # plain tensors and containers only: the state loads with weights_only=True
        torch.save(
            {
                'recipe': cfg.recipe,
                'iteration': i,
                'history': plain(history),
                'evaluations': plain(evaluations),
                'modules': {k: m.state_dict() for k, m in modules.items()},
                'optim': optim.state_dict(),
                'sched': sched.state_dict(),
                'rng': rngs[0]['rng'],
                'torch_rng': rngs[0]['torch_rng'],
                'rank_rngs': plain(rngs),
                'world': info.world,
            },
            str(state_file),
        )

    def run_eval(i: int) -> None:
        # rank 0 evaluates the current network (with a progress bar); the others wait
        if info.main:
            evaluations.append({'iteration': i, **eval_pass(i)})
            print(f'\n[eval @ {i}] {json.dumps(evaluations[-1])}')
        distributed.barrier(info)

    # 9. The loop: sample, compute the recipe's loss, step, update teachers/proxies.
    do_eval = bool(cfg.val and cfg.eval_every)
    if do_eval and start == 0 and whole:
        run_eval(0)  # the unadapted baseline
    t0 = time.perf_counter()
    bar = tqdm(
        range(start, cfg.iterations),
        desc=f'adapt {cfg.recipe}',
        unit='it',
        disable=not progress,
        initial=start,
        total=cfg.iterations,
    )
    for i in bar:
        # 9a. modes: trainable parts in train mode (BatchNorm frozen), teachers in eval mode
        if whole:
            recipe.train_mode()
            recipe.begin_step(i)  # schedules: proxy refreshes, stage switches
        else:
            for m in modules.values():
                m.train()
        # 9b. this rank's samples: target clips (same random crop over a clip), source crops
        clips = (
            [
                video.sample(
                    rng,
                    recipe.clip_length(),
                    cfg.max_distance,
                    cfg.crop,
                    max_dt=recipe.max_dt(),
                )
                for _ in range(cfg.batch)
            ]
            if video is not None
            else []
        )
        src = (
            source.sample(rng, cfg.batch, cfg.crop)
            if source is not None and recipe.uses_source
            else None
        )
        # 9c. the recipe's loss
        loss, logs = recipe.loss(clips, src) if whole else recipe.loss(clips)
        # 9d. backward (DDP averages the gradients across ranks here), clip, step, decay lr
        optim.zero_grad(set_to_none=True)
        loss.backward()
        if not whole:
            distributed.average_gradients(trainable, info)
        torch.nn.utils.clip_grad_norm_(trainable, 5.0)
        optim.step()
        sched.step()
        # 9e. EMA teachers follow the student
        recipe.after_step()
        history.append({'iteration': i + 1, 'loss': float(loss.detach()), **logs})
        bar.set_postfix(loss=f'{float(loss.detach()):.3f}')
        # 9f. resumable state and periodic evaluation
        if cfg.save_every and (i + 1) % cfg.save_every == 0:
            save_state(i + 1)
        if do_eval and (i + 1) % cfg.eval_every == 0 and (i + 1) < cfg.iterations:
            run_eval(i + 1)
    seconds = time.perf_counter() - t0

    # 10. Export: the (adapted or unchanged) network + the trained temporal modules, in one vsda
    #     checkpoint that `vsda eval --model`, `vsda segment` and the node load unchanged.
    net = recipe.export_network().eval() if whole else model
    temporal = recipe.export()
    extra = temporal.to_extra()
    extra['recipe'] = {
        'name': cfg.recipe,
        'config': cfg.to_dict(),
        'seconds': seconds,
        'world_size': info.world,
    }
    if temporal.loaded():
        net.meta.provenance['temporal_recipe'] = cfg.recipe
    if whole and cfg.trains_base:
        net.meta.provenance['adapt_recipe'] = cfg.recipe
        net.meta.provenance['base_model'] = cfg.model
    digest = weights_digest(net)
    trained = {
        name: weights_digest(m)
        for name, m in modules.items()
        if any(p.requires_grad for p in m.parameters())
    }
    if info.main:
        save_checkpoint(net, Path(cfg.out), extra=extra)
    save_state(cfg.iterations)
    if cfg.val and info.main:
        evaluations.append({'iteration': cfg.iterations, **eval_pass(cfg.iterations)})
    distributed.barrier(info)
    summary = {
        'recipe': cfg.recipe,
        'out': str(out),
        'iterations': cfg.iterations,
        'train_seconds': seconds,
        'final': history[-1] if history else {},
        'evaluations': evaluations,
        'weights_sha256': digest,
        'trained_sha256': trained,
        'rank': info.rank,
        'world_size': info.world,
        'losses': [h['loss'] for h in history],
    }
    if info.main:
        Path(str(out) + '.json').write_text(json.dumps(summary, indent=2) + '\n')
    return summary


def _load_target(cfg: AdaptConfig, verbose: bool) -> TargetVideo:
    video = TargetVideo.load(
        cast('list[str | Path]', cfg.target),
        height=cfg.height,
        stride=cfg.video_stride,
        folder_fps=cfg.folder_fps,
    )
    if cfg.frame_size:  # exactly the size the node / vsda eval feed the network
        size = tuple(cfg.frame_size)
        video.sequences = {
            k: [
                f
                if (f.shape[1], f.shape[0]) == size
                else cv2.resize(f, size, interpolation=cv2.INTER_AREA)
                for f in v
            ]
            for k, v in video.sequences.items()
        }
    if verbose:
        print(
            'target sequences: '
            + ', '.join(
                f'{k} ({len(v)} frames, {video.dt[k]:.3f} s apart)'
                for k, v in video.sequences.items()
            )
        )
    return video


def evaluate_network(
    recipe: NetworkRecipe,
    model,  # noqa: ARG001 - the signature of evaluate (the loop calls either)
    cfg: AdaptConfig,
    progress: bool = False,
    desc: str = 'eval',
) -> dict:
    """Per-frame mIoU (and TC) of the network being adapted on the labelled clip ``cfg.val``
    (``label_map`` maps model classes to label classes, e.g. ``cityscapes-camvid``); with a
    trained fusion block (``tsl``) also the ``fusion`` strategy's. What is evaluated is what
    would be exported now. ``progress``: a progress bar per strategy, ``desc`` + its name."""
    from vsda_ros.evaluation.temporal import evaluate_strategy, load_clip
    from vsda_ros.inference import Segmenter, SegmenterConfig
    from vsda_ros.temporal.factory import build_strategy
    from vsda_ros.temporal.strategy import StrategyConfig

    net = recipe.export_network()
    clip = load_clip(
        cast(str, cfg.val),  # called with a val clip only
        cfg.val_labels,
        net.meta,
        cfg.label_map,
        max_frames=cfg.val_frames or None,
    )
    seg = Segmenter(
        net, SegmenterConfig(input_size=cfg.val_size, device=str(next(net.parameters()).device))
    )
    modules = recipe.export()
    out = {}
    names = ['per_frame'] + (['fusion'] if modules.fusion is not None else [])
    try:
        for name in names:
            res = evaluate_strategy(
                build_strategy(name, seg, StrategyConfig(), modules),
                clip,
                progress=progress,
                desc=f'{desc} {name}',
            )
            out[f'{name}_miou'] = res.get('miou')
            out[f'{name}_tc'] = res['tc']
            if 'per_class_iou' in res:
                out[f'{name}_per_class'] = {
                    k: None if v is None or v != v else round(float(v), 2)  # absent: None
                    for k, v in res['per_class_iou'].items()
                }
    finally:
        recipe.train_mode()
    return out


def evaluate(recipe, model, cfg: AdaptConfig, progress: bool = False, desc: str = 'eval') -> dict:
    """Quick check on the labelled clip: the temporal recipe's strategy (``progress``: with a
    progress bar, ``desc`` + the strategy's name)."""
    from vsda_ros.evaluation.temporal import evaluate_strategy, load_clip
    from vsda_ros.inference import Segmenter, SegmenterConfig
    from vsda_ros.temporal.factory import build_strategy
    from vsda_ros.temporal.strategy import StrategyConfig

    clip = load_clip(
        cast(str, cfg.val),  # called with a val clip only
        cfg.val_labels,
        model.meta,
        cfg.label_map,
        max_frames=cfg.val_frames or None,
    )
    seg = Segmenter(model, SegmenterConfig(input_size=cfg.val_size))
    modules = recipe.export()
    name = 'keyframe' if cfg.recipe == 'davss' else 'fusion'
    strategy = build_strategy(name, seg, StrategyConfig(keyframe_interval=5), modules)
    res = evaluate_strategy(strategy, clip, progress=progress, desc=f'{desc} {name}')
    for m in recipe.modules().values():
        m.train()
    return {f'{name}_miou': res.get('miou'), f'{name}_tc': res['tc']}
