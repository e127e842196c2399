"""The two temporal-module recipes, and :data:`RECIPE_CLASSES`, the one table of every recipe
(the whole-network ones are in :mod:`.uda`; this module imports them, none imports it back).
Each temporal recipe is a class with ``modules()`` (what is trained), ``loss(batch_frames)`` (one
step's loss and logged values) and ``export()`` (what is saved). The fusion block and the
synthetic weather come from :mod:`.fusion_setup`, shared with ``tsl``.

The base network is frozen (eval mode, no gradients) in both, so training is CPU-feasible.

``davss`` — DMNet and CFNet for keyframe propagation (DAVSS, Zhuang et al.):
    for a short clip f_0, f_1, …, f_S (1..max_distance frames apart), the keyframe features of
    f_0 are propagated step by step with DIS flow; at step k,
    - DMNet's target is the XOR of argmax(head(warped features)) and the per-frame argmax on
      f_k (where warping changed the answer = distorted), as the fraction of such pixels per
      feature cell; loss: BCE;
    - CFNet is trained through the FCM output ``F = F_warp·(1−D) + F_cf·D`` (and its own head
      output) with a distortion-weighted cross-entropy against the per-frame labels of f_k;
    - the corrected features become the next step's previous features, so later steps learn
      from their own propagated input (dual deep supervision for S = 2).

``fusion`` — the adjacent-frame fusion block, teacher–student under temporal weather:
    for a pair (previous, current) of closely spaced frames (``max_pair_dt``),
    - the **target** mixes the EMA teacher block on the *clean* (current, previous) scores with
      the clean previous scores warped onto the current frame by optical flow (DIS medium):
      ``P = (1 − λ)·softmax(teacher) + λ·warp(softmax(prev))``, λ = ``temporal_target``;
      its argmax is the pseudo-label, its max the pixel weight. The flow-warped term is what
      makes the block temporally consistent (λ = 0 is a pure EMA teacher, which only teaches
      the block to repeat the per-frame answer on clean frames);
    - the **student** block sees the scores of the same two frames under one temporally
      correlated synthetic weather (:mod:`vsda_ros.weather`, ``weather_kinds``,
      ``weather_intensity``) and, with ``clean_weight``, the clean pair; both learn the
      pseudo-labels (confidence-weighted cross-entropy);
    - an **alignment** term (``align_weight``) trains the deformable steps directly: the
      aligned previous scores (block size) must predict the target (soft cross-entropy), or,
      with ``align_to: flow``, the flow-warped previous scores, plus a smooth-L1 term pulling
      every tap's summed offset onto the flow (:func:`offset_flow_loss`): optical flow is
      distilled into the offsets and the block stays flow-free at run time;
    - ``soft_target`` makes the fused outputs learn the target distribution itself instead of
      its confidence-weighted argmax;
    - an **anchor** term (``anchor_weight``, :func:`class_prior_penalty`) keeps the block
      class-agnostic: the 1×1 fusion conv may learn one blend of current and aligned scores
      shared by all classes, but no per-class gains, cross-class weights or biases, and the
      deformable convs stay near their identity initialisation. Without it the block learns
      the training video's class priors (seen in a run whose anchor left the bias free: a
      highway dashcam has no pedestrians, poles, signs or bicyclists, and the block learned
      negative biases for exactly those).
"""

from __future__ import annotations

import copy
from typing import Any, Callable, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vsda_ros.adaptation.fusion_setup import fusion_block, weather_degrade
from vsda_ros.adaptation.uda.common import batch_flow
from vsda_ros.adaptation.uda.i2vda import I2vdaRecipe
from vsda_ros.adaptation.uda.source import SourceRecipe
from vsda_ros.adaptation.uda.tps import TpsRecipe
from vsda_ros.adaptation.uda.tsl import TslRecipe
from vsda_ros.adaptation.uda.vat_vst import VatVstRecipe
from vsda_ros.models.base import SegmentationModel
from vsda_ros.temporal.correction import fcm
from vsda_ros.temporal.flow import DISFlow, resize_flow, warp
from vsda_ros.temporal.fusion_block import FusionBlock, conv_bias, conv_weight, summed_offsets
from vsda_ros.temporal.guided_fusion import GuidedFusionBlock
from vsda_ros.temporal.modules import TemporalModules, make_module, module_args


def to_tensor(frames: list[np.ndarray], device) -> torch.Tensor:
    """list of H×W×3 uint8 RGB → B×3×H×W float in [0, 1]."""
    x = torch.from_numpy(np.stack(frames)).to(device)
    return x.permute(0, 3, 1, 2).float().div_(255.0)


class DavssRecipe:
    """DMNet + CFNet training; see the module docstring."""

    def __init__(self, model: SegmentationModel, cfg) -> None:
        self.model, self.cfg = model, cfg
        with torch.no_grad():
            probe = model.forward_features(torch.zeros(1, 3, 64, 64, device=_dev(model)))
        self.feat_ch = int(probe.shape[1])
        self.dmnet = make_module(
            'dmnet', width=cfg.dmnet_width, downscale=cfg.correction_downscale
        ).to(_dev(model))
        self.cfnet = make_module(
            'cfnet',
            out_ch=self.feat_ch,
            width=cfg.cfnet_width,
            out_stride=cfg.cfnet_stride,
            guide_ch=self.feat_ch if cfg.cfnet_guided else 0,
            downscale=cfg.correction_downscale,
        ).to(_dev(model))
        self.flow = DISFlow('balanced')  # the keyframe strategy's default

    def modules(self) -> dict[str, nn.Module]:
        return {'dmnet': self.dmnet, 'cfnet': self.cfnet}

    def clip_length(self) -> int:
        return self.cfg.steps + 1

    def max_dt(self) -> float | None:
        return self.cfg.max_pair_dt

    def loss(self, clips: list[list[np.ndarray]]) -> tuple[torch.Tensor, dict]:
        model, dev = self.model, _dev(self.model)
        xs = [to_tensor([c[k] for c in clips], dev) for k in range(len(clips[0]))]
        h, w = xs[0].shape[-2:]
        with torch.no_grad():
            feat = model.forward_features(xs[0])  # keyframe features
        fh, fw = feat.shape[-2:]
        small = [F.interpolate(x, size=(fh, fw), mode='area') for x in xs]
        total: torch.Tensor | float = 0.0
        logs: dict[str, float] = {}
        for k in range(1, len(xs)):
            with torch.no_grad():
                y = model(xs[k]).argmax(1)  # per-frame labels B×h×w
                flow = batch_flow(self.flow, small[k], small[k - 1])
            f_warp = warp(feat, flow)
            with torch.no_grad():
                y_warp = model.logits_from_features(f_warp, (h, w)).argmax(1)
                distorted = (y_warp != y).float()[:, None]  # XOR of the two argmaxes
                target = F.adaptive_avg_pool2d(distorted, (fh, fw))  # fraction per cell
                img_warp = warp(small[k - 1], flow)
            d_logit = self.dmnet(img_warp, small[k], out_size=(fh, fw), return_logit=True)
            # calibrated BCE (no class re-weighting): D is used as a mixing weight in FCM, so
            # it should estimate the probability that the warped answer is wrong
            loss_dm = F.binary_cross_entropy_with_logits(d_logit, target)
            dmap = torch.sigmoid(d_logit).detach()
            f_cf = self.cfnet(
                small[k], out_size=(fh, fw), guide=f_warp.detach() if self.cfnet.guide_ch else None
            )
            fused = fcm(f_warp, f_cf, dmap)
            weight = 1.0 + 4.0 * distorted[:, 0]  # distortion-weighted CE
            ce_fused = F.cross_entropy(
                model.logits_from_features(fused, (h, w)), y, reduction='none'
            )
            ce_cf = F.cross_entropy(model.logits_from_features(f_cf, (h, w)), y, reduction='none')
            loss_cf = (weight * ce_fused).mean() + 0.5 * (weight * ce_cf).mean()
            total = total + loss_dm + loss_cf
            logs[f'dm{k}'] = float(loss_dm.detach())
            logs[f'cf{k}'] = float(loss_cf.detach())
            logs[f'distorted{k}'] = float(distorted.mean())
            feat = fused.detach()  # propagate onward
        mean = total / (len(xs) - 1)
        assert isinstance(mean, torch.Tensor)  # steps ≥ 1: at least one step's loss added
        return mean, logs

    def after_step(self) -> None:
        pass

    def export(self) -> TemporalModules:
        return TemporalModules(dmnet=self.dmnet.eval(), cfnet=self.cfnet.eval())


class FusionRecipe:
    """Fusion-block teacher–student training; see the module docstring.

    ``degrade(frames, rng) -> frames`` replaces the synthetic weather (tests, other
    corruptions).
    """

    def __init__(self, model: SegmentationModel, cfg, degrade=None) -> None:
        self.model, self.cfg = model, cfg
        self.rng = np.random.default_rng(cfg.seed + 1)
        self.guided = cfg.fusion_variant == 'guided'
        self.student = fusion_block(cfg, model.num_classes, _dev(model))
        self.teacher = copy.deepcopy(self.student).eval()
        # torch types Module attributes as tensors or modules; this one is a plain dict
        self.teacher.vsda_args = dict(module_args(self.student))  # type: ignore[assignment]
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        self.anchors = {
            n: p.detach().clone()
            for n, p in self.student.named_parameters()
            if n.startswith('deforms.')
        }
        self.degrade = degrade or weather_degrade(
            list(cfg.weather_kinds), tuple(cfg.weather_intensity)
        )
        self.flow = DISFlow('medium')

    def modules(self) -> dict[str, nn.Module]:
        return {'fusion': self.student, 'fusion_teacher': self.teacher}

    def clip_length(self) -> int:
        return 2

    def max_dt(self) -> float | None:
        return self.cfg.max_pair_dt

    def loss(self, clips: list[list[np.ndarray]]) -> tuple[torch.Tensor, dict]:
        if self.guided:
            if self.cfg.fusion_stage == 'motion':
                return self._motion_loss(clips)
            return self._guided_loss(clips)
        model, dev, cfg = self.model, _dev(self.model), self.cfg
        prev, cur = (to_tensor([c[k] for c in clips], dev) for k in (0, 1))
        degraded = [self.degrade(c, self.rng) for c in clips]
        dprev, dcur = (to_tensor([d[k] for d in degraded], dev) for k in (0, 1))
        with torch.no_grad():
            s_prev, s_cur = model(prev), model(cur)  # clean scores
            d_prev, d_cur = model(dprev), model(dcur)  # weather scores
            target = torch.softmax(self.teacher(s_cur, s_prev), 1)  # EMA teacher
            lam = float(cfg.temporal_target)
            warped = flow = None
            if lam > 0 or cfg.align_to == 'flow':  # flow-warped previous
                flow = batch_flow(self.flow, cur, prev)
                warped = warp(torch.softmax(s_prev, 1), flow)
            if lam > 0:
                assert warped is not None  # computed above when lam > 0
                target = (1 - lam) * target + lam * warped
            conf, pseudo = target.max(1)
        out_deg = self.student(d_cur, d_prev)
        offsets: list[torch.Tensor] = []
        out_clean, aligned = self.student(s_cur, s_prev, return_aligned=True, offsets=offsets)
        if cfg.soft_target:
            loss_deg = _soft_ce(out_deg, target)
            loss_clean = _soft_ce(out_clean, target)
        else:
            loss_deg = (conf * F.cross_entropy(out_deg, pseudo, reduction='none')).mean()
            loss_clean = (conf * F.cross_entropy(out_clean, pseudo, reduction='none')).mean()
        align_target = warped if cfg.align_to == 'flow' else target
        assert align_target is not None  # warped is computed when align_to is flow
        loss_align = _soft_ce(aligned, F.adaptive_avg_pool2d(align_target, aligned.shape[-2:]))
        if cfg.align_to == 'flow' and offsets:
            assert flow is not None  # computed when align_to is flow
            loss_align = loss_align + offset_flow_loss(offsets, flow)
        # the guided variant returned above: this is the score-only block
        loss_anchor = class_prior_penalty(cast(FusionBlock, self.student), self.anchors)
        with torch.no_grad():
            base = (d_cur.argmax(1) == pseudo).float().mean()
        logs = {
            'deg': float(loss_deg.detach()),
            'clean': float(loss_clean.detach()),
            'align': float(loss_align.detach()),
            'anchor': float(loss_anchor.detach()),
            'deg_agree_per_frame': float(base),
        }
        total = (
            loss_deg
            + cfg.clean_weight * loss_clean
            + cfg.align_weight * loss_align
            + cfg.anchor_weight * loss_anchor
        )
        return total, logs

    def _degrade_pairs(self, clips: list[list[np.ndarray]]) -> tuple[list, list[str]]:
        """Each (previous, current) pair under one temporal weather, or — with probability
        ``transient_prob`` — only its current frame degraded (a transient hit), or with half
        that probability only its previous frame, or (half that too) each frame under its own
        independent draw of the weather."""
        out, modes = [], []
        p = float(self.cfg.transient_prob)
        for c in clips:
            d = self.degrade(c, self.rng)
            u = self.rng.random()
            if u < p:
                d, mode = [c[0], d[1]], 'cur'
            elif u < 1.5 * p:
                d, mode = [d[0], c[1]], 'prev'
            elif u < 2 * p:  # i.i.d.: each frame its own draw of the weather
                d, mode = [d[0], self.degrade(c, self.rng)[1]], 'iid'
            else:
                mode = 'both'
            out.append(d)
            modes.append(mode)
        return out, modes

    def _motion_loss(self, clips: list[list[np.ndarray]]) -> tuple[torch.Tensor, dict]:
        """``fusion_stage: motion``: only the motion field (encoder, correlation, refinement)
        learns the clean pair's DIS flow, from the clean and from the degraded pair; the
        network is not run, so an iteration costs little more than the flow."""
        dev = _dev(self.model)
        block = cast(GuidedFusionBlock, self.student)  # fusion_variant 'guided'
        prev, cur = (to_tensor([c[k] for c in clips], dev) for k in (0, 1))
        degraded, _ = self._degrade_pairs(clips)
        dprev, dcur = (to_tensor([d[k] for d in degraded], dev) for k in (0, 1))
        with torch.no_grad():
            flow_s = resize_flow(
                batch_flow(self.flow, cur, prev), block.block_size(*cur.shape[-2:])
            )
        m_clean, _ = block.motion_field(block.guide(cur), block.guide(prev))
        m_deg, _ = block.motion_field(block.guide(dcur), block.guide(dprev))
        epe_c = (m_clean - flow_s).norm(dim=1).mean()
        epe_d = (m_deg - flow_s).norm(dim=1).mean()
        logs = {
            'epe': float(epe_c.detach()),
            'epe_degraded': float(epe_d.detach()),
            'epe_zero': float(flow_s.norm(dim=1).mean()),
        }
        return epe_c + epe_d, logs

    def _guided_loss(self, clips: list[list[np.ndarray]]) -> tuple[torch.Tensor, dict]:
        """The image-guided block (``fusion_variant: guided``): no EMA target.

        - target ``T = (1 − λ)·softmax(s_cur) + λ·warp(softmax(s_prev))`` on the *clean* pair
          (DIS medium flow), λ = ``temporal_target``; the fused output on the degraded pair
          (and, with ``clean_weight``, on the clean pair) learns it (soft cross-entropy): the
          gate learns how much of the aligned previous scores to take, more where the current
          frame was hit;
        - ``flow_weight``: the block's motion field, on the clean and on the degraded pair,
          must equal the clean pair's DIS flow at the block size (end-point error, block px):
          flow is distilled, not computed at run time, and it is taught to hold under weather;
        - ``align_weight``: the aligned previous scores must predict the flow-warped previous
          scores (soft cross-entropy at the block size);
        - ``anchor_weight``: the deformable convs stay near their identity initialisation
          (squared distance), so the aligned scores keep the scale of the scores they align
          (a recurrent block feeds them back).
        """
        model, dev, cfg = self.model, _dev(self.model), self.cfg
        block = cast(GuidedFusionBlock, self.student)  # fusion_variant 'guided'
        prev, cur = (to_tensor([c[k] for c in clips], dev) for k in (0, 1))
        degraded, modes = self._degrade_pairs(clips)
        dprev, dcur = (to_tensor([d[k] for d in degraded], dev) for k in (0, 1))
        with torch.no_grad():
            s_prev, s_cur = model(prev), model(cur)
            d_prev, d_cur = model(dprev), model(dcur)
            flow = batch_flow(self.flow, cur, prev)  # B×2×H×W into prev
            warped = warp(torch.softmax(s_prev, 1), flow)
            lam = float(cfg.temporal_target)
            target = (1 - lam) * torch.softmax(s_cur, 1) + lam * warped
        small = block.block_size(*cur.shape[-2:])
        flow_s = resize_flow(flow, small)
        aux_d: dict = {}
        aux_c: dict = {}
        out_deg = block(d_cur, d_prev, block.guide(dcur), block.guide(dprev), aux=aux_d)
        out_clean = block(s_cur, s_prev, block.guide(cur), block.guide(prev), aux=aux_c)
        loss_deg = _soft_ce(out_deg, target)
        loss_clean = _soft_ce(out_clean, target)
        loss_flow = (aux_c['motion'] - flow_s).norm(dim=1).mean() + (aux_d['motion'] - flow_s).norm(
            dim=1
        ).mean()
        loss_align = _soft_ce(aux_c['aligned'], F.adaptive_avg_pool2d(warped, small))
        loss_anchor = sum(
            (
                ((p - self.anchors[n]) ** 2).sum()
                for n, p in block.named_parameters()
                if n in self.anchors
            ),
            torch.zeros((), device=dev),
        )
        with torch.no_grad():
            epe = (aux_c['motion'] - flow_s).norm(dim=1).mean()
            epe0 = flow_s.norm(dim=1).mean()
            hit = torch.tensor([m == 'cur' for m in modes], device=dev)
            after = torch.tensor([m == 'prev' for m in modes], device=dev)
            gate = aux_d['gate'].mean((1, 2, 3))
        logs = {
            'deg': float(loss_deg.detach()),
            'clean': float(loss_clean.detach()),
            'flow': float(loss_flow.detach()),
            'align': float(loss_align.detach()),
            'anchor': float(loss_anchor.detach()),
            'epe': float(epe),
            'epe_zero': float(epe0),
            'gate_clean': float(aux_c['gate'].detach().mean()),
            'gate_hit': float(gate[hit].mean()) if bool(hit.any()) else float('nan'),
            'gate_prev_hit': float(gate[after].mean()) if bool(after.any()) else float('nan'),
        }
        total = (
            loss_deg
            + cfg.clean_weight * loss_clean
            + cfg.flow_weight * loss_flow
            + cfg.align_weight * loss_align
            + cfg.anchor_weight * loss_anchor
        )
        return total, logs

    @torch.no_grad()
    def after_step(self) -> None:
        for t, s in zip(self.teacher.parameters(), self.student.parameters(), strict=False):
            t.mul_(self.cfg.ema).add_(s.detach(), alpha=1 - self.cfg.ema)

    def export(self) -> TemporalModules:
        return TemporalModules(fusion=self.teacher.eval())


def class_prior_penalty(block: FusionBlock, anchors: dict[str, torch.Tensor]) -> torch.Tensor:
    """Squared distance of a fusion block from the class-agnostic blends.

    For the 1×1 fusion conv (weights C×2C over [current, aligned]): each half's deviation
    from its mean diagonal times the identity (per-class gains and cross-class weights),
    plus the bias; for every parameter named in ``anchors`` (the deformable convs): its
    deviation from the anchored value. 0 at initialisation and for any ``a·current +
    b·aligned`` blend.
    """
    c = block.num_classes
    w = conv_weight(block.fuse)[:, :, 0, 0]
    eye = torch.eye(c, dtype=w.dtype, device=w.device)
    total = (conv_bias(block.fuse) ** 2).sum()
    for half in (w[:, :c], w[:, c:]):
        total = total + ((half - half.diagonal().mean() * eye) ** 2).sum()
    for name, p in block.named_parameters():
        if name in anchors:
            total = total + ((p - anchors[name]) ** 2).sum()
    return total


def offset_flow_loss(offsets: list[torch.Tensor], flow: torch.Tensor) -> torch.Tensor:
    """Smooth-L1 between the fusion block's total displacement and optical flow.

    Args:
        offsets: the deformable steps' B×2k²×h×w (dy, dx) offsets at the block size (as
            collected by ``FusionBlock.forward(..., offsets=[])``).
        flow: B×2×H×W (Δx, Δy) flow on the current frame's grid into the previous frame
            (``warp``'s convention), at any size; it is resized to h×w, rescaling the vectors.
    Returns:
        scalar: every tap's summed offset over the steps must equal the flow (in block
        pixels), i.e. the steps together sample the previous scores where the flow says the
        content came from.
    """
    total = summed_offsets(offsets)  # B×k²×(dy, dx)×h×w
    size = cast('tuple[int, int]', total.shape[-2:])
    target = resize_flow(flow, size).flip(1).unsqueeze(1)  # B×1×(dy, dx)×h×w
    return F.smooth_l1_loss(total, target.expand_as(total))


def _soft_ce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean over pixels of −Σ_c target·log_softmax(logits), both B×C×H×W."""
    return -(target * F.log_softmax(logits, 1)).sum(1).mean()


def _dev(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


#: Every ``vsda adapt`` recipe, by name: the one list of them (``AdaptConfig`` and the CLI
#: read their names from here). A recipe is called as ``cls(model, cfg)`` (whole-network ones
#: also take ``rank``); see :mod:`vsda_ros.adaptation.train` for the contract.
RECIPE_CLASSES: dict[str, Callable[..., Any]] = {
    'davss': DavssRecipe,
    'fusion': FusionRecipe,
    'source': SourceRecipe,
    'tps': TpsRecipe,
    'i2vda': I2vdaRecipe,
    'vat_vst': VatVstRecipe,
    'tsl': TslRecipe,
}
