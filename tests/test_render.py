import numpy as np
import pytest

from gsmc_core.render import overlay_heatmap


def test_overlay_alpha_extremes_and_purity():
    image = np.full((20, 30, 3), 100, np.uint8)
    keep = image.copy()
    heat = np.zeros((20, 30), np.float32)
    heat[:, 15:] = 1.0
    assert np.array_equal(overlay_heatmap(image, heat, 0.0), image)
    full = overlay_heatmap(image, heat, 1.0)
    # JET: 0 is dark blue, 1 is dark red (RGB)
    assert full[0, 0, 2] > 100 and full[0, 0, 0] < 50
    assert full[0, 29, 0] > 100 and full[0, 29, 2] < 50
    half = overlay_heatmap(image, heat, 0.5)
    assert np.abs(half.astype(int) - (full.astype(int) + 100) / 2).max() <= 1
    assert np.array_equal(image, keep)


def test_overlay_resizes_small_heatmap():
    image = np.zeros((64, 48, 3), np.uint8)
    heat = np.linspace(0, 1, 49, dtype=np.float32).reshape(7, 7)
    out = overlay_heatmap(image, heat, 0.6)
    assert out.shape == image.shape
    assert out[-1, -1, 0] > out[0, 0, 0]  # the hot corner is redder


def test_overlay_rejects_bad_input():
    with pytest.raises(ValueError, match="alpha"):
        overlay_heatmap(np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4)), 1.5)
    with pytest.raises(ValueError, match="uint8"):
        overlay_heatmap(np.zeros((4, 4, 3), np.float32), np.zeros((4, 4)), 0.5)
