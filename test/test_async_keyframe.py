"""AsyncKeyframe: keyframes computed in the background never stall the stream.

A toy model (conv features + 1×1 head) on textured frames that move a few pixels per frame; a
"slow" copy sleeps in ``forward_features`` so a key pass takes 0.3 s. What is pinned: in-line
mode equals ``Keyframe`` bit for bit; propagated frames return promptly while a slow key runs;
the key is re-anchored once it lands; a reset drops a pending key; ``close()`` leaves no thread;
the simulated-delay mode is deterministic.
"""

from __future__ import annotations

import threading
import time

import cv2
import numpy as np
import pytest
import torch

from uda_synthetic import tiny_model
from vsda_ros.inference import Segmenter, SegmenterConfig
from vsda_ros.temporal.async_keyframe import AsyncKeyframe
from vsda_ros.temporal.keyframe import Keyframe
from vsda_ros.temporal.rate_control import RateControlConfig, RateController
from vsda_ros.temporal.strategy import StrategyConfig

SIZE = (96, 64)  # network input (w, h)
SLOW_S = 0.3  # the slow key network's sleep


class SlowFeatures(torch.nn.Module):
    """The toy model with ``forward_features`` slowed down by ``delay`` seconds."""

    def __init__(self, model: torch.nn.Module, delay: float) -> None:
        super().__init__()
        self.inner, self.delay, self.meta = model, delay, model.meta
        self.calls = 0

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        time.sleep(self.delay)
        return self.inner.forward_features(x)

    def logits_from_features(self, f: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        return self.inner.logits_from_features(f, size)


def _frames(n: int = 12, seed: int = 0) -> list[np.ndarray]:
    """n frames 64×96×3 uint8 of a smooth texture moving 2 px right per frame."""
    rng = np.random.default_rng(seed)
    big = cv2.GaussianBlur(rng.uniform(0, 255, (64, 96 + 2 * n, 3)).astype(np.float32), (0, 0), 2.0)
    big = ((big - big.min()) / (big.max() - big.min()) * 255).astype(np.uint8)
    return [np.ascontiguousarray(big[:, 2 * (n - i) : 2 * (n - i) + 96]) for i in range(n)]


@pytest.fixture()
def segmenter():
    """The toy model on one intra-op thread: a two-thread team on a busy two-core machine
    waits tens of ms for the second core, which would swamp the timings pinned here."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    seg = Segmenter(tiny_model(), SegmenterConfig(input_size=SIZE))
    seg.segment(_frames(1)[0])  # warm-up: the first passes allocate
    yield seg
    torch.set_num_threads(threads)


@pytest.fixture()
def slow_segmenter(segmenter) -> Segmenter:
    segmenter.model = SlowFeatures(segmenter.model, SLOW_S)
    return segmenter


@pytest.mark.parametrize('threshold', [0.0, 0.3])
def test_in_line_mode_equals_keyframe_bit_for_bit(segmenter, threshold) -> None:
    cfg = dict(keyframe_interval=3, distortion_threshold=threshold)
    dm = None
    if threshold:
        from vsda_ros.temporal.correction import DMNet

        torch.manual_seed(0)
        dm = DMNet().eval()
    ref = Keyframe(segmenter, StrategyConfig(**cfg), dmnet=dm)
    test = AsyncKeyframe(segmenter, StrategyConfig(**cfg), dmnet=dm, key_delay_frames=0)
    for i, img in enumerate(_frames(10) + _frames(4, seed=1)):  # a scene cut in the middle
        a, b = ref.step(img, i / 15), test.step(img, i / 15)
        assert np.array_equal(a.labels, b.labels) and np.array_equal(a.confidence, b.confidence)
        assert (a.keyframe, a.kind, a.distortion) == (b.keyframe, b.kind, b.distortion)
    assert threading.active_count() == 1 or test._executor is None


def test_simulated_delay_is_deterministic_and_reanchors(segmenter) -> None:
    cfg = StrategyConfig(keyframe_interval=3)
    runs = []
    for _ in range(2):
        s = AsyncKeyframe(segmenter, cfg, key_delay_frames=2)
        runs.append([s.step(img, i / 15) for i, img in enumerate(_frames(10))])
    kinds = [seg.kind for seg in runs[0]]
    # key at 0 (stream start, in line); started at 3 → lands at 5; started at 6 → lands at 8
    assert kinds == [
        'key',
        'propagated',
        'propagated',
        'pending',
        'pending',
        'reanchored',
        'pending',
        'pending',
        'reanchored',
        'pending',
    ]
    assert all(np.array_equal(a.labels, b.labels) for a, b in zip(*runs, strict=True))
    assert 'key_background' in runs[0][5].timings_ms


def test_slow_key_does_not_stall_the_stream(slow_segmenter) -> None:
    frames = _frames(12)
    with AsyncKeyframe(slow_segmenter, StrategyConfig(keyframe_interval=2)) as s:
        t0 = time.perf_counter()
        assert s.step(frames[0], 0.0).kind == 'key'  # stream start: in line
        assert time.perf_counter() - t0 >= SLOW_S
        slow_segmenter.model.delay = SLOW_S
        kinds, worst = [], 0.0
        for i, img in enumerate(frames[1:6], start=1):
            t = time.perf_counter()
            seg = s.step(img, i / 15)
            worst = max(worst, time.perf_counter() - t)
            kinds.append(seg.kind)
            time.sleep(0.01)
        assert worst < 0.1, f'a propagated frame took {worst * 1e3:.0f} ms'
        assert kinds[:2] == ['propagated', 'pending'] and s.key_pending
        time.sleep(SLOW_S + 0.1)  # the key lands meanwhile
        seg = s.step(frames[6], 6 / 15)
        assert seg.kind == 'reanchored' and seg.timings_ms['key_background'] >= SLOW_S * 1e3
        assert not seg.keyframe


def test_reanchored_result_equals_a_key_propagated_directly(segmenter) -> None:
    """The landed key's features are warped straight from the key frame to the current one."""
    frames = _frames(6)
    s = AsyncKeyframe(segmenter, StrategyConfig(keyframe_interval=2), key_delay_frames=None)
    try:
        s.step(frames[0], 0.0)
        s.step(frames[1], 1 / 15)
        s.step(frames[2], 2 / 15)  # key started on frame 2
        s._job.future.result(timeout=5)
        seg = s.step(frames[4], 3 / 15)  # lands: frame 2 → frame 4 directly
        assert seg.kind == 'reanchored'
        ref = Keyframe(segmenter, StrategyConfig(keyframe_interval=99))
        ref.step(frames[2], 0.0)
        assert np.array_equal(ref.step(frames[4], 1 / 15).labels, seg.labels)
    finally:
        s.close()


def test_reset_drops_a_pending_key(slow_segmenter) -> None:
    frames = _frames(8)
    s = AsyncKeyframe(slow_segmenter, StrategyConfig(keyframe_interval=1))
    try:
        slow_segmenter.model.delay = 0.0
        s.step(frames[0], 0.0)
        slow_segmenter.model.delay = SLOW_S
        assert s.step(frames[1], 1 / 15).kind == 'pending'
        s.reset()
        assert not s.key_pending and s.keys_discarded == 1
        slow_segmenter.model.delay = 0.0
        seg = s.step(frames[5], 2 / 15)  # a new stream: key in line
        assert seg.kind == 'key'
        time.sleep(SLOW_S + 0.1)  # the stale key finishes: ignored
        assert s.step(frames[6], 3 / 15).kind in ('pending', 'propagated', 'reanchored')
        assert s.keys_discarded == 1
    finally:
        s.close()


def test_close_leaves_no_thread(slow_segmenter) -> None:
    before = {t.ident for t in threading.enumerate()}
    s = AsyncKeyframe(slow_segmenter, StrategyConfig(keyframe_interval=1))
    frames = _frames(3)
    s.step(frames[0], 0.0)
    s.step(frames[1], 1 / 15)  # starts the background key
    assert s.key_pending
    s.close()
    s.close()  # idempotent
    assert {t.ident for t in threading.enumerate()} <= before


def test_key_network_error_surfaces_in_step(segmenter) -> None:
    frames = _frames(3)
    s = AsyncKeyframe(segmenter, StrategyConfig(keyframe_interval=1))
    try:
        s.step(frames[0], 0.0)

        def broken(x: torch.Tensor) -> torch.Tensor:
            raise RuntimeError('key network failed')

        s._key_features = broken
        s.step(frames[1], 1 / 15)
        s._job.future.exception(timeout=5)
        with pytest.raises(RuntimeError, match='key network failed'):
            s.step(frames[2], 2 / 15)
    finally:
        s.close()


def test_rate_controller_hook_sets_the_interval(segmenter) -> None:
    s = Keyframe(segmenter, StrategyConfig(keyframe_interval=5))
    ctrl = RateController(RateControlConfig(target_rate=1e6, max_interval=7))
    s.attach_rate_controller(ctrl)
    for i, img in enumerate(_frames(6)):
        s.step(img, i / 15)
    # an impossible target: the largest interval, and the reason says so
    assert s.config.keyframe_interval == 7 and 'cannot keep up' in s.rate_decision.reason


def test_bad_arguments(segmenter) -> None:
    with pytest.raises(ValueError, match='key_delay_frames'):
        AsyncKeyframe(segmenter, None, key_delay_frames=-1)
    with pytest.raises(ValueError, match='flow_downscale'):
        Keyframe(segmenter, None, flow_downscale=0)
