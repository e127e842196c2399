"""``keyframe`` whose keyframes never stall the stream: the key network runs in the background.

:class:`AsyncKeyframe` is the :class:`~vsda_ros.temporal.keyframe.Keyframe` strategy (same
flow, warping, optional DMNet/CFNet correction, head) with one difference: when a keyframe is
due on frame *k*, the key network (``model.forward_features``, the expensive part) is handed
to a background thread, and :meth:`step` returns at once with frame *k* propagated from the
previous frame. Frames *k+1…* keep being propagated frame to frame (kind ``pending``) until the
key's features land; the first frame *t* after that is propagated **directly from frame k**
(flow k → t on the frames at the feature resolution, kind ``reanchored``), and the chain goes on
from *t*. The next key is due ``keyframe_interval`` frames after the previous one was *started*;
while one is still running no second one is started (the effective interval is then the key's
own duration in frames). Only the first frame of a stream (nothing to propagate from) runs the
key network in line, blocking.

Modes (``key_delay_frames``):

- ``None`` — a real background thread (the node; the thread starts on the first key handed
  over, :meth:`close` stops it);
- ``0`` — keys computed in line when due: results equal :class:`Keyframe` bit for bit;
- ``d ≥ 1`` — deterministic simulation for offline evaluation: the key is computed in line when
  due but its features are only used from the *d*-th frame after, as if the background had
  taken *d* frame periods; results depend only on the frames.

Threads: torch's intra-op thread count is process-wide (``torch.set_num_threads``), so the key
network and the foreground (flow, warp, head) share it; compiled backends fix their thread
count per compiled graph (OpenVINO ``INFERENCE_NUM_THREADS``, set from torch's count when the
graph is compiled). On two cores one intra-op thread each (``torch.set_num_threads(1)`` before
building the pipeline) is the split measured in docs/design/temporal.md, *Real time*.
"""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from vsda_ros.frames import Segmentation
from vsda_ros.inference import Segmenter
from vsda_ros.temporal.keyframe import Keyframe
from vsda_ros.temporal.strategy import StrategyConfig


@dataclass
class _KeyJob:
    """One key network pass: frame ``index``'s input, its small copy, and the result."""

    generation: int
    index: int
    small: np.ndarray  # h×w×3 uint8: the key frame at the feature resolution
    future: Future | None = None  # background mode
    feat: torch.Tensor | None = None  # 1×F×h×w (in-line modes: computed at once)
    ms: float = 0.0  # the key network's wall time


class AsyncKeyframe(Keyframe):
    """Keyframe propagation with keyframes computed in the background; see the module
    docstring.

    Args:
        segmenter, config, dmnet, cfnet, flow_downscale: as for :class:`Keyframe`.
        key_delay_frames: ``None`` = background thread; ``0`` = in line (equals
            :class:`Keyframe`); ``d ≥ 1`` = simulated background of *d* frames.
            ``ValueError`` below 0.

    Not thread-safe itself: call :meth:`step` from one thread (the node's worker). The
    segmenter's model is used from two threads at once (``forward_features`` in the
    background, ``logits_from_features`` in the caller's), which torch modules in inference
    mode and the compiled backends (one inference request per graph) allow.
    """

    name = 'keyframe_async'

    def __init__(
        self,
        segmenter: Segmenter,
        config: StrategyConfig | None,
        dmnet: nn.Module | None = None,
        cfnet: nn.Module | None = None,
        flow_downscale: int | None = None,
        key_delay_frames: int | None = None,
    ) -> None:
        super().__init__(segmenter, config, dmnet, cfnet, flow_downscale)
        if key_delay_frames is not None and int(key_delay_frames) < 0:
            raise ValueError(f'key_delay_frames must be ≥ 0 or None, got {key_delay_frames}')
        self.key_delay_frames = None if key_delay_frames is None else int(key_delay_frames)
        self._executor: ThreadPoolExecutor | None = None
        self._job: _KeyJob | None = None
        self._generation = 0
        self._index = 0
        self.keys_started = 0  # key network passes handed over (diagnostics)
        self.keys_discarded = 0  # ... whose result a reset made useless
        runners = getattr(segmenter.model, 'runners', None)
        if runners is not None and self.background:
            runners['features'], runners['head']  # noqa: B018 - compile both before threads

    @property
    def background(self) -> bool:
        """Whether keys run in a real background thread."""
        return self.key_delay_frames is None

    @property
    def key_pending(self) -> bool:
        """Whether a key network pass has been started and its result not used yet."""
        return self._job is not None

    def close(self) -> None:
        """Stop the background thread (waits for a running key pass; idempotent)."""
        self._discard_job()
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None

    def __enter__(self) -> AsyncKeyframe:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _discard_job(self) -> None:
        if self._job is not None:
            if self._job.future is not None:
                self._job.future.cancel()  # no effect once running: the result is dropped
            self.keys_discarded += 1
        self._job = None
        self._generation += 1

    def _reset(self) -> None:
        super()._reset()
        self._discard_job()

    # ------------------------------------------------------------------ the key network
    def _run_key(self, x: torch.Tensor) -> tuple[torch.Tensor, float]:
        """The key network on 1×3×H×W ``x`` → (1×F×h×w features, wall ms); any thread."""
        t0 = time.perf_counter()
        with torch.inference_mode():
            feat = self._key_features(x)
            if self.segmenter.device.type == 'cuda':
                torch.cuda.synchronize(self.segmenter.device)
        return feat, (time.perf_counter() - t0) * 1e3

    def _start_key(self, x: torch.Tensor, small: np.ndarray) -> None:
        """Hand frame ``self._index`` to the key network (in line in the offline modes)."""
        job = _KeyJob(self._generation, self._index, small)
        if self.background:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(1, thread_name_prefix='vsda-keyframe')
            job.future = self._executor.submit(self._run_key, x)
        else:
            job.feat, job.ms = self._run_key(x)
        self._job = job
        self.keys_started += 1
        self._since_key = 0

    def _landed(self) -> _KeyJob | None:
        """The started key if its features are ready now (then no key is pending), else
        ``None``. Re-raises an exception of the key network here, in the caller's thread."""
        job = self._job
        if job is None:
            return None
        if job.future is not None:
            if not job.future.done():
                return None
            self._job = None
            job.feat, job.ms = job.future.result()
        else:
            assert self.key_delay_frames is not None  # no future: not the background mode
            if self._index - job.index < int(self.key_delay_frames):
                return None
        self._job = None
        return job

    # ------------------------------------------------------------------ one frame
    def _step(self, image: np.ndarray) -> Segmentation:
        t_start = time.perf_counter()
        self._index += 1
        seg = self._async_step(image)
        step_ms = (time.perf_counter() - t_start) * 1e3
        if self.rate_controller is not None:
            key_ms = seg.timings_ms.get('key_background')
            if key_ms is not None:
                self.rate_controller.observe('key', key_ms)
            self.rate_controller.observe('key' if seg.kind == 'key' else 'nonkey', step_ms)
            self.rate_decision = self.rate_controller.decide(background_keys=self.background)
            self.config.keyframe_interval = self.rate_decision.interval
        return seg

    @torch.inference_mode()
    def _async_step(self, image: np.ndarray) -> Segmentation:
        if self._feat is None and self._job is None:  # a stream starts: key in line
            return self._keyframe_step(image)
        timings: dict[str, float] = {}
        x = self._preprocess(image, timings)
        assert self._feat is not None  # features exist after a stream's 1st frame
        cur_small = self._small_of(x, self._feat)
        earlier = self._landed()
        if self._is_key() and self._job is None:
            return self._key_or_propagate(image, x, cur_small, earlier, timings)
        return self._propagate_frame(image, x, cur_small, earlier, timings)

    def _key_or_propagate(
        self,
        image: np.ndarray,
        x: torch.Tensor,
        cur_small: np.ndarray,
        earlier: _KeyJob | None,
        timings: dict[str, float],
    ) -> Segmentation:
        """A key is due on this frame: start it; use it now if it is ready (in-line mode)."""
        t_key = time.perf_counter()
        self._start_key(x, cur_small)
        # in the background mode the key frame itself is always propagated (even if a fast
        # key happens to be done already), so frame kinds do not depend on thread timing
        now = None if self.background else self._landed()
        if now is not None:
            assert now.feat is not None  # a landed key has its features
            self._since_key = 1
            return self._output(image, x, now.feat, cur_small, 'key', timings, None, t_key)
        return self._propagate_frame(image, x, cur_small, earlier, timings)

    def _propagate_frame(
        self,
        image: np.ndarray,
        x: torch.Tensor,
        cur_small: np.ndarray,
        earlier: _KeyJob | None,
        timings: dict[str, float],
    ) -> Segmentation:
        """Carry features onto this frame: from a key that just landed, else from the
        previous frame; a distortion above the threshold starts a key."""
        src = None
        if earlier is not None:
            assert earlier.feat is not None  # a landed key has its features
            src = (earlier.feat, earlier.small)
            timings['key_background'] = earlier.ms
        feat, dmap, small, t = self._propagate(x, src, cur_small)
        timings.update(t)
        distortion, want_key = self._distortion_key(dmap)
        self._since_key += 1
        if want_key and self._job is None:
            t_key = time.perf_counter()
            self._start_key(x, small)
            now = None if self.background else self._landed()
            if now is not None:
                assert now.feat is not None  # a landed key has its features
                self._since_key = 1
                return self._output(image, x, now.feat, small, 'key', timings, distortion, t_key)
        kind = (
            'reanchored'
            if earlier is not None
            else ('pending' if self._job is not None else 'propagated')
        )
        return self._output(image, x, feat, small, kind, timings, distortion)
