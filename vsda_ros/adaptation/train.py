"""``train(cfg)``: the readable training loop behind ``vsda adapt``."""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from vsda_ros.adaptation.config import AdaptConfig
from vsda_ros.adaptation.recipes import RECIPE_CLASSES
from vsda_ros.adaptation.video import TargetVideo
from vsda_ros.models.checkpoint import save_checkpoint
from vsda_ros.models.zoo import load_model


def _state_path(out: Path) -> Path:
    return out.with_name(out.name + '.state.pt')


def train(cfg: AdaptConfig, progress: bool = True) -> dict:
    """Train the recipe's modules on the target video and write ``cfg.out``.

    Returns a summary (iterations, seconds, final losses, evaluations). Resumes from
    ``<out>.state.pt`` when it exists and matches the recipe.

    Raises:
        ValueError / FileNotFoundError: bad config or inputs.
    """
    cfg.validate()
    out = Path(cfg.out)
    # 1. Determinism: one seed for numpy (sampling, degradations) and torch (init).
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    torch.set_num_threads(cfg.threads)

    # 2. The frozen base network: eval mode (BN statistics fixed), no gradients.
    model = load_model(cfg.model, progress=progress).to(cfg.device).eval()
    for p in model.parameters():
        p.requires_grad_(False)

    # 3. The unlabelled target video, in memory.
    video = TargetVideo.load(cfg.target, height=cfg.height, stride=cfg.video_stride)
    print('target sequences: ' + ', '.join(f'{k} ({len(v)} frames, {video.dt[k]:.3f} s apart)'
                                           for k, v in video.sequences.items()))

    # 4. The recipe decides what is trained and how the loss is computed.
    recipe = RECIPE_CLASSES[cfg.recipe](model, cfg)
    trainable = [p for m in recipe.modules().values() for p in m.parameters() if p.requires_grad]
    optim = torch.optim.AdamW(trainable, lr=cfg.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.LambdaLR(
        optim, lambda i: (1 - i / cfg.iterations) ** 0.9)  # poly decay

    # 5. Resume if a matching state exists.
    start, history = 0, []
    state_file = _state_path(out)
    if state_file.is_file():
        state = torch.load(str(state_file), map_location='cpu', weights_only=False)
        if state.get('recipe') == cfg.recipe and state.get('iteration', 0) < cfg.iterations:
            for name, module in recipe.modules().items():
                module.load_state_dict(state['modules'][name])
            optim.load_state_dict(state['optim'])
            sched.load_state_dict(state['sched'])
            rng.bit_generator.state = state['rng']
            torch.set_rng_state(state['torch_rng'])
            start, history = state['iteration'], state.get('history', [])
            print(f'resuming {cfg.recipe} from iteration {start} ({state_file})')

    def save_state(i: int) -> None:
        out.parent.mkdir(parents=True, exist_ok=True)
        torch.save({'recipe': cfg.recipe, 'iteration': i, 'history': history,
                    'modules': {k: m.state_dict() for k, m in recipe.modules().items()},
                    'optim': optim.state_dict(), 'sched': sched.state_dict(),
                    'rng': rng.bit_generator.state, 'torch_rng': torch.get_rng_state()},
                   str(state_file))

    # 6. The loop: sample clips, compute the recipe's loss, step, update EMA teachers.
    t0 = time.perf_counter()
    evaluations = []
    bar = tqdm(range(start, cfg.iterations), desc=f'adapt {cfg.recipe}', unit='it',
               disable=not progress, initial=start, total=cfg.iterations)
    for i in bar:
        for m in recipe.modules().values():
            m.train()
        clips = [video.sample(rng, recipe.clip_length(), cfg.max_distance, tuple(cfg.crop),
                              max_dt=recipe.max_dt())
                 for _ in range(cfg.batch)]
        loss, logs = recipe.loss(clips)
        optim.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 5.0)
        optim.step()
        sched.step()
        recipe.after_step()
        history.append({'iteration': i + 1, 'loss': float(loss.detach()), **logs})
        bar.set_postfix(loss=f'{float(loss.detach()):.3f}')
        if cfg.save_every and (i + 1) % cfg.save_every == 0:
            save_state(i + 1)
        if cfg.eval_every and cfg.val and (i + 1) % cfg.eval_every == 0:
            evaluations.append({'iteration': i + 1, **evaluate(recipe, model, cfg)})
            print(f"\n[eval @ {i + 1}] {json.dumps(evaluations[-1])}")
    seconds = time.perf_counter() - t0

    # 7. Export: the base model unchanged + the trained temporal modules.
    modules = recipe.export()
    extra = modules.to_extra()
    extra['recipe'] = {'name': cfg.recipe, 'config': cfg.to_dict(), 'seconds': seconds}
    model.meta.provenance['temporal_recipe'] = cfg.recipe
    save_checkpoint(model, out, extra=extra)
    save_state(cfg.iterations)
    final = evaluate(recipe, model, cfg) if cfg.val else {}
    summary = {'recipe': cfg.recipe, 'out': str(out), 'iterations': cfg.iterations,
               'train_seconds': seconds, 'final': history[-1] if history else {},
               'evaluations': evaluations + ([{'iteration': cfg.iterations, **final}]
                                             if final else [])}
    Path(str(out) + '.json').write_text(json.dumps(summary, indent=2) + '\n')
    return summary


def evaluate(recipe, model, cfg: AdaptConfig) -> dict:
    """Quick check on the labelled clip: the recipe's strategy vs per-frame."""
    from vsda_ros.evaluation.temporal import evaluate_strategy, load_clip
    from vsda_ros.inference import Segmenter
    from vsda_ros.temporal.strategy import StrategyConfig, build_strategy

    clip = load_clip(cfg.val, cfg.val_labels, model.meta, cfg.label_map)
    seg = Segmenter(model)
    modules = recipe.export()
    name = 'keyframe' if cfg.recipe == 'davss' else 'fusion'
    res = evaluate_strategy(build_strategy(name, seg, StrategyConfig(keyframe_interval=5),
                                           modules), clip, progress=False)
    for m in recipe.modules().values():
        m.train()
    return {f'{name}_miou': res.get('miou'), f'{name}_tc': res['tc']}
