"""Score reductions (labels = first argmax over C, confidence = round(max softmax × 255)):
the OpenVINO graphs and the numpy/torch path agree with torch's definitions, ties and NaN
included, from several threads at once (issue 26 item 5: the publish path's largest cost)."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from vsda_ros.inference.backends import installed
from vsda_ros.inference.reduction import ScoreReducer, max_softmax_255

ENGINES = [False] + ([True] if installed('openvino') else [])


def _torch_reference(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    t = torch.from_numpy(scores)
    best, idx = t.max(dim=0)
    return idx.numpy().astype(np.uint8), max_softmax_255(t, best).to(torch.uint8).numpy()


@pytest.mark.parametrize('use_openvino', ENGINES, ids=lambda v: 'openvino' if v else 'torch')
@pytest.mark.parametrize('shape', [(11, 36, 48), (19, 64, 128), (3, 7, 5), (1, 4, 4)])
def test_labels_and_confidence_match_torch(use_openvino, shape):
    reducer = ScoreReducer(2, use_openvino=use_openvino)
    assert reducer.engine == ('openvino' if use_openvino else 'torch')
    rng = np.random.default_rng(sum(shape))
    scores = (rng.standard_normal(shape) * 4).astype(np.float32)
    labels, best = reducer.labels(scores)
    ref_labels, ref_conf = _torch_reference(scores)
    assert np.array_equal(labels, ref_labels)
    assert np.array_equal(best, scores.max(axis=0))
    conf = reducer.confidence(scores, best)
    assert conf.dtype == np.uint8 and conf.shape == shape[1:]
    diff = np.abs(conf.astype(int) - ref_conf)
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-3  # exp implementations differ in ulps


@pytest.mark.parametrize('use_openvino', ENGINES, ids=lambda v: 'openvino' if v else 'torch')
def test_ties_go_to_the_lowest_class_and_nan_is_refused(use_openvino):
    reducer = ScoreReducer(2, use_openvino=use_openvino)
    scores = np.random.default_rng(0).integers(-2, 2, (7, 30, 40)).astype(np.float32)
    labels, _ = reducer.labels(scores)
    assert np.array_equal(labels, torch.from_numpy(scores).max(dim=0).indices.numpy())
    scores[:, 3, 4] = 1.0  # an all-equal pixel → class 0
    assert reducer.labels(scores)[0][3, 4] == 0
    scores[2, 5, 5] = np.nan
    assert reducer.labels(scores) is None  # the caller falls back to torch


@pytest.mark.skipif(not installed('openvino'), reason='openvino not installed')
def test_threads_get_their_own_requests():
    reducer = ScoreReducer(1, use_openvino=True)
    rng = np.random.default_rng(3)
    inputs = [(rng.standard_normal((5, 40 + i, 30)) * 3).astype(np.float32) for i in range(4)]
    wrong: list[int] = []

    expected = [_torch_reference(x)[1] for x in inputs]

    def work(i: int) -> None:
        for _ in range(20):
            conf = reducer.confidence(inputs[i], inputs[i].max(axis=0))
            if conf.shape != expected[i].shape or np.abs(conf.astype(int) - expected[i]).max() > 1:
                wrong.append(i)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not wrong


def test_segmenter_postprocess_uses_the_reducer_and_torch_on_nan():
    import copy

    from vsda_ros.inference import Segmenter
    from vsda_ros.models.zoo import ZOO, build

    seg = Segmenter(build(copy.deepcopy(ZOO['espnet-camvid'].meta)).eval())
    logits = torch.randn(1, 11, 24, 32) * 3
    labels, confidence = seg.postprocess(logits, (48, 64))
    up = torch.nn.functional.interpolate(
        logits, size=(48, 64), mode='bilinear', align_corners=False
    )[0]
    ref_labels, ref_conf = _torch_reference(up.numpy())
    assert np.array_equal(labels, ref_labels)
    assert np.abs(confidence().astype(int) - ref_conf).max() <= 1
    logits[0, 4, 3, 3] = float('nan')
    labels, confidence = seg.postprocess(logits, (24, 32))
    assert labels[3, 3] == 4 and confidence().shape == (24, 32)  # torch's max: the NaN's index
