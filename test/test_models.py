"""The ESPNet / ESPNetv2 re-implementations: shapes, structure, and the published weights.

The first group needs no data (random init). The ``data`` group loads the published weights with
``strict=True`` from ``VSDA_DATA_DIR/weights`` and checks one real CamVid frame; it skips with a
reason when the data is absent. Accuracy over the whole CamVid clip is tested elsewhere.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from vsda_ros.models.espnet import ESPNet
from vsda_ros.models.espnetv2 import ESPNetv2
from vsda_ros.paths import data_dir

SIZES = [(360, 480), (512, 1024), (170, 250)]  # (H, W): CamVid, Cityscapes-native, odd

# name → (constructor, parameter count of the published file, feature channels, outputs)
NETS = {
    'espnetv2': (lambda: ESPNetv2(20), 789_242, 32, 20),
    'espnet-cityscapes': (lambda: ESPNet(20, b1_skip=False), 364_569, 20, 20),
    'espnet-camvid': (lambda: ESPNet(12, b1_skip=True), 354_517, 12, 12),
}


def _half(n: int) -> int:
    return (n + 1) // 2


@pytest.fixture(scope='module', params=list(NETS))
def net(request) -> tuple[str, torch.nn.Module]:
    torch.manual_seed(0)
    return request.param, NETS[request.param][0]().eval()


def test_parameter_count(net) -> None:
    name, model = net
    assert sum(p.numel() for p in model.parameters()) == NETS[name][1]


def test_espnetv2_state_dict_size() -> None:
    assert len(ESPNetv2().state_dict()) == 526


@pytest.mark.parametrize('size', SIZES, ids=lambda s: f'{s[1]}x{s[0]}')
def test_shapes(net, size: tuple[int, int]) -> None:
    name, model = net
    channels, outputs = NETS[name][2:]
    h, w = size
    with torch.inference_mode():
        feats = model.forward_features(torch.randn(1, 3, h, w))
        logits = model.forward_head(feats)
    assert feats.shape == (1, channels, _half(h), _half(w))
    head_size = (_half(h), _half(w)) if name == 'espnetv2' else (2 * _half(h), 2 * _half(w))
    assert logits.shape == (1, outputs, *head_size)
    assert torch.isfinite(logits).all()


def test_forward_is_head_of_features_and_deterministic(net) -> None:
    _, model = net
    x = torch.randn(2, 3, 96, 128)
    with torch.inference_mode():
        out = model(x)
        split = model.forward_head(model.forward_features(x))
        again = model(x)
        single = model(x[1:])
    assert torch.equal(out, again)
    torch.testing.assert_close(out, split)
    torch.testing.assert_close(out[1:], single, rtol=1e-4, atol=1e-4)  # no cross-batch mixing


def test_wrapper_returns_input_size_and_kept_classes() -> None:
    from vsda_ros.models.zoo import ZOO, build

    kept_classes = {'espnetv2-cityscapes': 19, 'espnet-cityscapes': 19, 'espnet-camvid': 11}
    for name, kept in kept_classes.items():
        model = build(ZOO[name].meta).eval()
        with torch.inference_mode():
            out = model(torch.rand(1, 3, 170, 250))
        assert out.shape == (1, kept, 170, 250), name


# ---- published weights ---------------------------------------------------------------------

FRAME = '0016E5_07959.png'


def _data() -> Path:
    ddir = data_dir()
    if ddir is None or not (ddir / 'weights').is_dir():
        pytest.skip(
            f'real data not found (set VSDA_DATA_DIR; looked at {ddir}): '
            'needs weights/ from ../shared/data'
        )
    return ddir


def _load(name: str):
    from vsda_ros.models.zoo import ZOO, load_model

    path = _data() / 'weights' / ZOO[name].filename
    if not path.is_file():
        pytest.skip(f'weights {path.name} not found in VSDA_DATA_DIR ({path.parent})')
    return load_model(name, weights=path)  # strict=True inside


def _frame() -> tuple[torch.Tensor, np.ndarray]:
    cv2 = pytest.importorskip('cv2')
    ddir = _data()
    img_path, lab_path = ddir / 'camvid/val' / FRAME, ddir / 'camvid/valannot' / FRAME
    if not (img_path.is_file() and lab_path.is_file()):
        pytest.skip(f'CamVid frame {FRAME} not found in VSDA_DATA_DIR ({ddir})')
    rgb = cv2.cvtColor(cv2.imread(str(img_path)), cv2.COLOR_BGR2RGB)
    x = torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255.0
    return x, cv2.imread(str(lab_path), cv2.IMREAD_UNCHANGED).astype(np.int64)


@pytest.mark.data
@pytest.mark.parametrize(
    'name, params',
    [('espnetv2-cityscapes', 789_242), ('espnet-cityscapes', 364_569), ('espnet-camvid', 354_517)],
)
def test_published_weights_load_strictly(name: str, params: int) -> None:
    model = _load(name)
    assert sum(p.numel() for p in model.net.parameters()) == params
    assert not model.training


@pytest.mark.data
def test_wrong_variant_is_rejected() -> None:
    from vsda_ros.models.zoo import ZOO, load_state_dict

    path = _data() / 'weights' / ZOO['espnet-camvid'].filename
    if not path.is_file():
        pytest.skip(f'weights {path.name} not found in VSDA_DATA_DIR ({path.parent})')
    with pytest.raises(RuntimeError, match='size mismatch'):  # conv: 19+C vs 16+C inputs
        ESPNet(12, b1_skip=False).load_state_dict(load_state_dict(path), strict=False)


@pytest.mark.data
@pytest.mark.parametrize(
    'name, min_acc',
    [('espnet-camvid', 0.90), ('espnetv2-cityscapes', 0.80), ('espnet-cityscapes', 0.65)],
)
def test_real_frame_prediction_is_sensible(name: str, min_acc: float) -> None:
    """One real CamVid frame (480×360): pixel accuracy and road recall against its label."""
    from vsda_ros.models.zoo import CAMVID_VOID, CITYSCAPES_TO_CAMVID

    model = _load(name)
    x, label = _frame()
    with torch.inference_mode():
        feats = model.forward_features(x)
        pred = model(x)
    assert feats.shape[-2:] == (180, 240)
    assert pred.shape == (1, model.num_classes, 360, 480)
    pred = pred.argmax(1)[0].numpy()
    if name != 'espnet-camvid':
        pred = np.asarray(CITYSCAPES_TO_CAMVID)[pred]
    valid = label != CAMVID_VOID
    acc = float((pred[valid] == label[valid]).mean())
    road = label == 3
    assert acc >= min_acc, f'{name}: pixel accuracy {acc:.3f} < {min_acc} on {FRAME}'
    assert (pred[road] == 3).mean() >= 0.8, f'{name}: road mostly missed on {FRAME}'
