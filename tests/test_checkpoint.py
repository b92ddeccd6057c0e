from pathlib import Path

import pytest
import torch

from gsmc_core.checkpoint import (
    Checkpoint,
    CheckpointError,
    FaceCrop,
    ModelMeta,
    load_checkpoint,
    save_checkpoint,
)
from gsmc_core.labels import CANONICAL_CLASSES, SEVEN_CLASSES
from gsmc_core.model import GSMCNet


def _checkpoint(classes=CANONICAL_CLASSES, arch="resnet18") -> Checkpoint:
    torch.manual_seed(0)
    meta = ModelMeta(
        arch=arch,
        classes=tuple(classes),
        input_size=112,
        output_stride=16,
        color="gray",
        face_crop=FaceCrop(margin=0.25, square=True, align=True),
    )
    model = GSMCNet(len(classes), arch=arch)
    return Checkpoint(
        meta=meta,
        state_dict=model.state_dict(),
        train_config={"method": "gsmc", "lr": 0.001},
        metrics={"val_accuracy": 0.5},
    )


def test_round_trip_keeps_weights_and_metadata(tmp_path):
    ckpt = _checkpoint()
    path = save_checkpoint(ckpt, tmp_path / "m.pt")
    loaded = load_checkpoint(path)
    assert loaded.meta == ckpt.meta
    assert loaded.train_config == {"method": "gsmc", "lr": 0.001}
    assert loaded.metrics == {"val_accuracy": 0.5}
    assert loaded.created and loaded.package_version
    for key, value in ckpt.state_dict.items():
        assert torch.equal(loaded.state_dict[key], value), key
    x = torch.randn(1, 3, 112, 112)
    original = ckpt.meta.build_model()
    original.load_state_dict(ckpt.state_dict)
    with torch.no_grad():
        torch.testing.assert_close(loaded.build_model()(x)[0], original.eval()(x)[0])


def test_half_precision_file_loads_as_float32(tmp_path):
    ckpt = _checkpoint()
    full = save_checkpoint(ckpt, tmp_path / "full.pt")
    half = save_checkpoint(ckpt, tmp_path / "half.pt", half=True)
    assert half.stat().st_size < 0.6 * full.stat().st_size
    model = load_checkpoint(half).build_model()
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_atomic_write_leaves_no_temp_files_and_keeps_old_file_on_failure(tmp_path, monkeypatch):
    path = save_checkpoint(_checkpoint(), tmp_path / "m.pt")
    before = path.read_bytes()

    def broken_save(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(_checkpoint(SEVEN_CLASSES), path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="nope.pt: file not found"):
        load_checkpoint(tmp_path / "nope.pt")


def test_truncated_file(tmp_path):
    path = save_checkpoint(_checkpoint(), tmp_path / "m.pt")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"m\.pt: cannot be opened as a model: the file is damaged"):
        load_checkpoint(path)


def test_text_file_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "notes.pt"
    path.write_text("hello")
    with pytest.raises(CheckpointError, match="notes.pt: cannot be opened as a model"):
        load_checkpoint(path)


def test_a_web_page_saved_as_a_checkpoint_is_named_as_one(tmp_path):
    path = tmp_path / "model.pt"
    path.write_text("\n  <!DOCTYPE html><html><head><title>Sign in</title></head></html>")
    with pytest.raises(CheckpointError, match="model.pt: is a web page, not a model: the download"):
        load_checkpoint(path)


def test_foreign_torch_file_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "resnet.pth"
    torch.save(GSMCNet(8).backbone.state_dict(), path)
    with pytest.raises(CheckpointError, match="resnet.pth: is not a GSMC checkpoint.*import-weights"):
        load_checkpoint(path)


def test_class_count_mismatch_between_metadata_and_weights(tmp_path):
    ckpt = _checkpoint()
    ckpt.meta = ModelMeta(**{**ckpt.meta.__dict__, "classes": SEVEN_CLASSES})
    path = save_checkpoint(ckpt, tmp_path / "m.pt")
    with pytest.raises(CheckpointError, match="classifier has 8 outputs but the metadata names 7"):
        load_checkpoint(path)


def test_expected_class_count_mismatch(tmp_path):
    path = save_checkpoint(_checkpoint(), tmp_path / "m.pt")
    with pytest.raises(CheckpointError, match="has 8 classes, but 7 are needed"):
        load_checkpoint(path, expect_classes=7)


def test_unknown_architecture(tmp_path):
    ckpt = _checkpoint()
    ckpt.meta = ModelMeta(**{**ckpt.meta.__dict__, "arch": "vgg13"})
    path = save_checkpoint(ckpt, tmp_path / "m.pt")
    with pytest.raises(CheckpointError, match="unknown architecture 'vgg13'"):
        load_checkpoint(path)


def test_weights_of_another_architecture(tmp_path):
    ckpt = _checkpoint(arch="resnet50")
    ckpt.meta = ModelMeta(**{**ckpt.meta.__dict__, "arch": "resnet18"})
    path = save_checkpoint(ckpt, tmp_path / "m.pt")
    with pytest.raises(CheckpointError, match="m.pt"):
        load_checkpoint(path)


def test_directory_is_not_a_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="is not a file"):
        load_checkpoint(Path(tmp_path))
