import numpy as np
import pytest
import torch

from gsmc_core.checkpoint import Checkpoint, ModelMeta, save_checkpoint
from gsmc_core.frames.predictor import Predictor
from gsmc_core.labels import CANONICAL_CLASSES
from gsmc_core.model import GSMCNet


@pytest.fixture(scope="module")
def predictor(tmp_path_factory):
    torch.manual_seed(4)
    meta = ModelMeta(arch="resnet18", classes=CANONICAL_CLASSES, input_size=112, output_stride=16)
    path = tmp_path_factory.mktemp("ckpt") / "m.pt"
    save_checkpoint(Checkpoint(meta=meta, state_dict=GSMCNet(8).state_dict()), path)
    return Predictor.from_checkpoint(path, device="cpu")


def test_predicts_astronaut_crops(predictor, astronaut_rgb):
    crops = [astronaut_rgb[60:300, 150:360], astronaut_rgb[100:200, 200:260], astronaut_rgb]
    preds = predictor.predict(crops)
    assert len(preds) == 3
    for crop, p in zip(crops, preds, strict=True):
        assert p.probabilities.shape == (8,)
        assert p.probabilities.sum() == pytest.approx(1.0, abs=1e-5)
        assert (p.probabilities >= 0).all()
        assert p.label == CANONICAL_CLASSES[p.index] == CANONICAL_CLASSES[p.probabilities.argmax()]
        assert p.heatmap.shape == crop.shape[:2]
        assert p.heatmap.min() == pytest.approx(0.0) and p.heatmap.max() == pytest.approx(1.0)
        assert p.cams.shape == (8, 7, 7)
        assert p.cam_class == p.index


def test_batch_equals_single(predictor, astronaut_rgb):
    crops = [astronaut_rgb[60:300, 150:360], astronaut_rgb[:256, :256]]
    batch = predictor.predict(crops)
    single = [predictor.predict([c])[0] for c in crops]
    for b, s in zip(batch, single, strict=True):
        np.testing.assert_allclose(b.probabilities, s.probabilities, atol=1e-5)


def test_bgr_input_matches_rgb(predictor, astronaut_rgb):
    crop = np.ascontiguousarray(astronaut_rgb[60:300, 150:360])
    rgb = predictor.predict([crop])[0]
    bgr = predictor.predict([crop[..., ::-1].copy()], bgr=True)[0]
    np.testing.assert_allclose(rgb.probabilities, bgr.probabilities, atol=1e-6)
    swapped = predictor.predict([crop[..., ::-1].copy()])[0]
    assert not np.allclose(rgb.probabilities, swapped.probabilities, atol=1e-6)


def test_requested_cam_class(predictor, astronaut_rgb):
    crop = astronaut_rgb[60:300, 150:360]
    p = predictor.predict([crop], cam_class="fear")[0]
    assert p.cam_class == CANONICAL_CLASSES.index("fear")
    other = predictor.predict([crop], cam_class=0)[0]
    assert not np.allclose(p.heatmap, other.heatmap)
    with pytest.raises(ValueError, match="unknown class 'joy'"):
        predictor.predict([crop], cam_class="joy")


def test_grayscale_crop_and_bad_crops(predictor, astronaut_rgb):
    gray = astronaut_rgb[60:300, 150:360, 1].copy()
    assert predictor.predict([gray])[0].heatmap.shape == gray.shape
    assert predictor.predict([]) == []
    with pytest.raises(ValueError, match="crop 0: expected a non-empty uint8"):
        predictor.predict([np.zeros((10, 10, 3), np.float32)])


def test_flip_tta_averages_a_face_with_its_mirror(predictor, astronaut_rgb):
    crop = np.ascontiguousarray(astronaut_rgb[60:300, 150:360])
    mirror = np.ascontiguousarray(crop[:, ::-1])
    plain, plain_mirror = predictor.predict([crop, mirror])
    assert not np.allclose(plain.probabilities, plain_mirror.probabilities, atol=1e-4)
    predictor.tta = True
    try:
        tta, tta_mirror = predictor.predict([crop, mirror])
    finally:
        predictor.tta = False
    # a face and its mirror get the same answer, and the mirror's CAMs are the flipped ones
    np.testing.assert_allclose(tta.probabilities, tta_mirror.probabilities, atol=1e-5)
    np.testing.assert_allclose(tta.cams, tta_mirror.cams[:, :, ::-1], atol=1e-4)
    logits = np.log(plain.probabilities) + np.log(plain_mirror.probabilities)  # up to a constant
    expected = np.exp(logits / 2) / np.exp(logits / 2).sum()
    np.testing.assert_allclose(tta.probabilities, expected, atol=1e-5)
