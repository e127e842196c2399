"""What the whole-network recipes share: the recipe base class, BatchNorm freezing, EMA,
pseudo-labels, strong augmentation, flow helpers and the output-level discriminator.

Tensors: images B×3×H×W float RGB in [0, 1]; logits/probabilities B×C×H×W; labels B×H×W
int64 with :data:`IGNORE` = 255 where there is no (pseudo-)label; flows B×2×H×W (Δx, Δy) in
pixels, backward convention of :mod:`vsda_ros.temporal.flow`: a flow ``f`` on frame a's grid
"into" frame b means ``I_a(p) ≈ I_b(p + f(p))``, and ``warp(I_b, f)`` estimates ``I_a``.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from vsda_ros.models.base import SegmentationModel
from vsda_ros.temporal.flow import DISFlow, warp
from vsda_ros.temporal.modules import TemporalModules, module_args

IGNORE = 255


# -- tensors ------------------------------------------------------------------------------------


def to_tensor(frames: list[np.ndarray], device) -> torch.Tensor:
    """list of H×W×3 uint8 RGB → B×3×H×W float in [0, 1]."""
    x = torch.from_numpy(np.stack(frames)).to(device)
    return x.permute(0, 3, 1, 2).float().div_(255.0)


def to_u8(x: torch.Tensor) -> list[np.ndarray]:
    """B×3×H×W float in [0, 1] → list of H×W×3 uint8 RGB."""
    u8 = x.detach().clamp(0, 1).mul(255).round().to(torch.uint8).permute(0, 2, 3, 1)
    return [np.ascontiguousarray(a) for a in u8.cpu().numpy()]


def labels_tensor(labels: list[np.ndarray], device) -> torch.Tensor:
    """list of H×W uint8 labels → B×H×W int64."""
    return torch.from_numpy(np.stack(labels)).to(device).long()


# -- network state ------------------------------------------------------------------------------


def freeze_batchnorm(module: nn.Module) -> None:
    """Put every BatchNorm layer of ``module`` in eval mode: running statistics are used and
    never updated (their affine weights still train).

    Why: on the CPU a step sees 1–4 crops; batch statistics of so few correlated samples are
    noisy, and updating the running statistics with them would overwrite the ones the
    pretrained network depends on (the source domain's), which costs more accuracy than any
    adaptation gains. The same holds for DDP: frozen statistics need no synchronisation.
    """
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()


def set_trainable(model: SegmentationModel, train: bool, freeze: Sequence[str] = ()) -> int:
    """Set ``requires_grad`` on the network's parameters: all of them when ``train``, except
    those whose name (in ``model.net``) starts with one of ``freeze``. Returns the number of
    trainable parameters."""
    n = 0
    for name, p in model.net.named_parameters():
        p.requires_grad_(bool(train) and not any(name.startswith(f) for f in freeze))
        n += p.numel() if p.requires_grad else 0
    return n


def frozen_copy(module: nn.Module) -> nn.Module:
    """A deep copy in eval mode with no gradients (teachers, proxies)."""
    twin = copy.deepcopy(module).eval()
    for p in twin.parameters():
        p.requires_grad_(False)
    if hasattr(module, 'vsda_args'):
        # torch types Module attributes as tensors or modules; this one is a plain dict
        twin.vsda_args = dict(module_args(module))  # type: ignore[assignment]
    return twin


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, decay: float) -> None:
    """``θ_t ← decay·θ_t + (1 − decay)·θ_s`` for every parameter; buffers are copied."""
    for t, s in zip(teacher.parameters(), student.parameters(), strict=False):
        t.mul_(decay).add_(s.detach(), alpha=1.0 - decay)
    for tb, sb in zip(teacher.buffers(), student.buffers(), strict=False):
        tb.copy_(sb)


@torch.no_grad()
def copy_weights(dst: nn.Module, src: nn.Module) -> None:
    """``dst``'s parameters and buffers ← ``src``'s (same architecture)."""
    for t, s in zip(dst.parameters(), src.parameters(), strict=False):
        t.copy_(s)
    for tb, sb in zip(dst.buffers(), src.buffers(), strict=False):
        tb.copy_(sb)


# -- losses and pseudo-labels ---------------------------------------------------------------------


def ce_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over labelled pixels (``IGNORE`` skipped); 0 (still part of the graph)
    when no pixel is labelled."""
    if not bool((labels != IGNORE).any()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits, labels, ignore_index=IGNORE)


def confident_labels(
    prob: torch.Tensor,
    threshold: float,
    valid: torch.Tensor | None = None,
    class_balance: float = 0.0,
) -> torch.Tensor:
    """B×C×H×W probabilities → B×H×W argmax labels, ``IGNORE`` where the top probability is
    below ``threshold`` or ``valid`` (B×H×W bool) is false.

    ``class_balance`` > 0 (class-balanced self-training, as in CBST): each predicted class also
    keeps its most confident ``class_balance`` fraction of (valid) pixels in the batch, whatever
    the global threshold. A single threshold keeps mostly the frequent, confidently predicted
    classes (road, sky, building), and training on those alone erodes the rare ones.
    """
    conf, labels = prob.max(1)
    keep = conf >= threshold
    if class_balance > 0:
        for c in labels.unique():
            mask = labels == c
            if valid is not None:
                mask &= valid
            if bool(mask.any()):
                q = torch.quantile(conf[mask].float(), 1.0 - float(class_balance))
                keep |= mask & (conf >= q)
    if valid is not None:
        keep &= valid
    return torch.where(keep, labels, torch.full_like(labels, IGNORE))


def normalised_entropy(prob: torch.Tensor) -> torch.Tensor:
    """B×C×H×W probabilities → B×H×W entropy / log C, in [0, 1]."""
    c = prob.shape[1]
    ent = -(prob * prob.clamp_min(1e-12).log()).sum(1)
    return ent / math.log(c) if c > 1 else ent


# -- optical flow ---------------------------------------------------------------------------------


def batch_flow(flow: DISFlow, onto: torch.Tensor, frm: torch.Tensor) -> torch.Tensor:
    """DIS flow on ``onto``'s grid into ``frm``: ``onto(p) ≈ frm(p + f(p))``, B×2×H×W."""
    fields = [flow(src, dst) for src, dst in zip(to_u8(frm), to_u8(onto), strict=False)]
    return torch.from_numpy(np.stack(fields)).permute(0, 3, 1, 2).to(onto.device)


def inside(flow: torch.Tensor) -> torch.Tensor:
    """B×H×W bool: ``p + flow(p)`` lies inside the image (where warping has data)."""
    _, _, h, w = flow.shape
    xs = torch.arange(w, device=flow.device, dtype=flow.dtype).view(1, 1, w) + flow[:, 0]
    ys = torch.arange(h, device=flow.device, dtype=flow.dtype).view(1, h, 1) + flow[:, 1]
    return (xs >= 0) & (xs <= w - 1) & (ys >= 0) & (ys <= h - 1)


def fb_consistent(f_ab: torch.Tensor, f_ba: torch.Tensor) -> torch.Tensor:
    """Forward–backward check on frame a's grid (B×H×W bool): following ``f_ab`` to frame b and
    ``f_ba`` back lands within ``0.01·(|f_ab|² + |f_ba|²) + 0.5`` px² of the start (the usual
    occlusion test), and the target lies inside the image."""
    back = warp(f_ba, f_ab)
    err = (f_ab + back).pow(2).sum(1)
    bound = 0.01 * (f_ab.pow(2).sum(1) + back.pow(2).sum(1)) + 0.5
    return (err < bound) & inside(f_ab)


# -- strong augmentation --------------------------------------------------------------------------


@dataclass
class AugParams:
    """One sample's augmentation: crop box (x0, y0, w, h) in pixels, horizontal flip, colour
    factors (brightness, contrast, saturation) and blur sigma (0 = none)."""

    box: tuple[int, int, int, int]
    flip: bool
    brightness: float
    contrast: float
    saturation: float
    sigma: float


class StrongAugment:
    """Colour jitter + Gaussian blur + random crop rescaled to the input size (+ flip).

    Geometry is shared by :meth:`images` and :meth:`labels` so pseudo-labels follow their image;
    colour and blur touch images only. All randomness comes from the caller's generator.
    """

    def __init__(self, scale: float = 0.6, jitter: float = 0.3, blur: float = 1.5) -> None:
        self.scale, self.jitter, self.blur = float(scale), float(jitter), float(blur)

    def draw(self, rng: np.random.Generator, batch: int, h: int, w: int) -> list[AugParams]:
        out = []
        for _ in range(batch):
            s = rng.uniform(self.scale, 1.0)
            cw, ch = max(1, int(round(w * s))), max(1, int(round(h * s)))
            x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
            j = self.jitter
            out.append(
                AugParams(
                    (x0, y0, cw, ch),
                    bool(rng.random() < 0.5),
                    rng.uniform(1 - j, 1 + j),
                    rng.uniform(1 - j, 1 + j),
                    rng.uniform(1 - j, 1 + j),
                    rng.uniform(0.1, self.blur) if self.blur > 0 and rng.random() < 0.5 else 0.0,
                )
            )
        return out

    @staticmethod
    def _geometry(x: torch.Tensor, p: AugParams, mode: str) -> torch.Tensor:
        x0, y0, cw, ch = p.box
        h, w = x.shape[-2:]
        crop = x[..., y0 : y0 + ch, x0 : x0 + cw]
        if (ch, cw) != (h, w):
            crop = (
                F.interpolate(crop, size=(h, w), mode='bilinear', align_corners=False)
                if mode == 'bilinear'
                else F.interpolate(crop, size=(h, w), mode='nearest')
            )
        return crop.flip(-1) if p.flip else crop

    def images(self, x: torch.Tensor, params: list[AugParams]) -> torch.Tensor:
        """B×3×H×W in [0, 1] → augmented B×3×H×W."""
        from torchvision.transforms.functional import gaussian_blur

        out = []
        for i, p in enumerate(params):
            y = self._geometry(x[i : i + 1], p, 'bilinear')
            y = y * p.brightness
            mean = y.mean(dim=(1, 2, 3), keepdim=True)
            y = (y - mean) * p.contrast + mean
            gray = 0.299 * y[:, 0:1] + 0.587 * y[:, 1:2] + 0.114 * y[:, 2:3]
            y = (gray + (y - gray) * p.saturation).clamp(0, 1)
            if p.sigma > 0:
                k = 2 * int(math.ceil(3 * p.sigma)) + 1
                y = gaussian_blur(y, [k, k], [p.sigma, p.sigma])
            out.append(y)
        return torch.cat(out)

    def labels(self, y: torch.Tensor, params: list[AugParams]) -> torch.Tensor:
        """B×H×W labels → the same geometry (nearest), B×H×W int64."""
        out = [
            self._geometry(y[i : i + 1, None].float(), p, 'nearest')[:, 0]
            for i, p in enumerate(params)
        ]
        return torch.cat(out).round().long()


# -- adversarial ----------------------------------------------------------------------------------


class Discriminator(nn.Sequential):
    """Fully convolutional patch discriminator on (stacked) softmax maps: three 4×4 stride-2
    convs with leaky ReLU (width, 2·width, 4·width) and a 3×3 conv to one score per patch.

    Input B×``in_ch``×H×W → B×1×H/8×W/8 (least-squares GAN: no sigmoid).
    """

    def __init__(self, in_ch: int, width: int = 32) -> None:
        w = int(width)
        super().__init__(
            nn.Conv2d(in_ch, w, 4, 2, 1),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(w, 2 * w, 4, 2, 1),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(2 * w, 4 * w, 4, 2, 1),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(4 * w, 1, 3, 1, 1),
        )


#: least-squares GAN labels: source = 1 ("real"), target = 0.
SOURCE_LABEL, TARGET_LABEL = 1.0, 0.0


def lsgan_d_loss(d_source: torch.Tensor, d_target: torch.Tensor) -> torch.Tensor:
    """Discriminator loss: ½·[(D(source) − 1)² + (D(target) − 0)²] (means over patches)."""
    return 0.5 * (
        F.mse_loss(d_source, torch.full_like(d_source, SOURCE_LABEL))
        + F.mse_loss(d_target, torch.full_like(d_target, TARGET_LABEL))
    )


def lsgan_g_loss(d_target: torch.Tensor) -> torch.Tensor:
    """The network's adversarial loss: (D(target) − 1)², i.e. target outputs should be scored
    as source."""
    return F.mse_loss(d_target, torch.full_like(d_target, SOURCE_LABEL))


def frozen_call(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``module(x)`` with its parameters detached: gradients reach ``x`` only (the network's
    adversarial term must not train the discriminator)."""
    params = {k: v.detach() for k, v in module.named_parameters()}
    return functional_call(module, params, (x,))


# -- the recipe base class ------------------------------------------------------------------------


class NetworkRecipe:
    """Base of the whole-network recipes; :func:`~vsda_ros.adaptation.train.train` drives it.

    Contract (the temporal recipes' plus a few hooks):

    - ``modules()``: every module whose state is saved for resuming (student, teachers, …);
    - ``trainable()``: the modules the optimiser trains, by name; :meth:`wrap` puts them in
      DDP; :meth:`param_groups` gives their parameter groups (discriminators get ``disc_lr``);
    - ``begin_step(i)`` before, ``after_step()`` after every optimiser step;
    - ``loss(clips, source)``: ``clips`` = ``batch`` target clips of :meth:`clip_length`
      uint8 frames (empty when :attr:`needs_target` is false), ``source`` = (images, labels)
      lists or ``None``; returns (loss, logged floats);
    - ``export_network()`` / ``export()``: the network and temporal modules to save.

    Forward passes that train go through ``self.net`` (the DDP wrapper when distributed), never
    through ``self.model`` directly.
    """

    name = ''
    #: the recipe consumes target clips.
    needs_target = True
    #: the recipe trains a source term when a source set is given.
    uses_source = True

    def __init__(self, model: SegmentationModel, cfg, rank: int = 0) -> None:
        self.model, self.cfg = model, cfg
        self.net: nn.Module = model
        self.device = next(model.parameters()).device
        self.rng = np.random.default_rng([int(cfg.seed), 1, int(rank)])
        self.iteration = 0
        self.augment = StrongAugment(cfg.aug_scale, cfg.aug_jitter, cfg.aug_blur)
        self.flow = DISFlow('fast')
        self.has_source = bool(getattr(cfg, 'source', None))
        set_trainable(model, cfg.trains_base, cfg.freeze)

    # modules
    def modules(self) -> dict[str, nn.Module]:
        return {'network': self.model}

    def trainable(self) -> dict[str, nn.Module]:
        return {'network': self.model}

    def wrap(self, fn) -> None:
        """Route the training forward passes through ``fn(module)`` (DDP)."""
        self.net = fn(self.model)

    def param_groups(self, lr: float) -> list[dict]:
        groups = []
        for name, module in self.trainable().items():
            params = [p for p in module.parameters() if p.requires_grad]
            if params:
                rate = self.cfg.disc_lr if name.startswith('disc') else lr
                groups.append({'params': params, 'lr': rate, 'name': name})
        return groups

    def train_mode(self) -> None:
        """Trainable modules in train mode, BatchNorm frozen; teachers stay in eval mode."""
        for name, module in self.modules().items():
            if name in self.trainable():
                module.train()
                freeze_batchnorm(module)
            else:
                module.eval()

    # schedule
    def begin_step(self, iteration: int) -> None:
        self.iteration = int(iteration)

    def after_step(self) -> None:
        pass

    def clip_length(self) -> int:
        return 2

    def max_dt(self) -> float | None:
        return self.cfg.clip_max_dt or None

    # losses
    def source_term(self, source) -> tuple[torch.Tensor, dict]:
        """Supervised cross-entropy on a source batch (0 without one)."""
        if source is None:
            return torch.zeros((), device=self.device), {}
        x, y = to_tensor(source[0], self.device), labels_tensor(source[1], self.device)
        loss = ce_loss(self.net(x), y)
        return self.cfg.source_weight * loss, {'source': float(loss.detach())}

    def loss(self, clips, source) -> tuple[torch.Tensor, dict]:
        raise NotImplementedError

    # export and resume
    def export_network(self) -> SegmentationModel:
        return self.model

    def export(self) -> TemporalModules:
        return TemporalModules()

    def state_dict(self) -> dict:
        return {'rng': self.rng.bit_generator.state}

    def load_state_dict(self, state: dict) -> None:
        self.rng.bit_generator.state = state['rng']


class AdversarialRecipe(NetworkRecipe):
    """A :class:`NetworkRecipe` with an output-level discriminator (``i2vda``, ``vat_vst``).

    The discriminator is trained, and wrapped for DDP, only when a labelled source set exists;
    without one the recipe is pure self-training and the discriminator stays untouched.
    """

    def _add_discriminator(self, in_channels: int) -> None:
        self.disc = Discriminator(in_channels, self.cfg.disc_width).to(self.device)
        self.disc_net = self.disc

    def trainable(self) -> dict[str, nn.Module]:
        return (
            {'network': self.model, 'disc': self.disc}
            if self.has_source
            else {'network': self.model}
        )

    def wrap(self, fn) -> None:
        super().wrap(fn)
        self.disc_net = fn(self.disc) if self.has_source else self.disc
