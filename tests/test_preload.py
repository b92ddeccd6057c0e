"""The in-memory training path (``preload``), soft vote targets, bf16 and the fused EMA: each
test fails on one plausible breakage (an epoch order that repeats, ranks sharing samples,
augmentations that differ on resume, unreadable images dropped silently, soft targets that do
not sum to one or ignore the votes, an EMA that no longer matches the formula)."""

import cv2
import numpy as np
import pytest
import torch

from gsmc_core.checkpoint import ModelMeta
from gsmc_core.errors import UsageError
from gsmc_core.labels import class_list
from gsmc_core.model import GSMCNet
from gsmc_core.training.config import TrainConfig
from gsmc_core.training.data.batch_augment import eac_augment, normalize, published_augment, to_float
from gsmc_core.training.data.preload import MemoryLoader, preload_split
from gsmc_core.training.data.readers import ferplus_soft, read_split
from gsmc_core.training.data.samples import DataError, Sample, Split
from gsmc_core.training.loop import train
from gsmc_core.training.losses import ema_alpha
from gsmc_core.training.methods import classification_loss, make_method

META = ModelMeta(arch="resnet18", classes=class_list(8), input_size=32, output_stride=16,
                 color="gray")


@pytest.fixture(scope="module")
def ferplus_40(ferplus_root):
    return read_split("ferplus", ferplus_root, "train").subset(40, seed=1)


def test_ferplus_soft_targets_are_the_vote_shares(ferplus_40):
    # votes: neutral 6, happiness 3, contempt 1 (an outlier, zeroed), unknown 2 (left out)
    soft = ferplus_soft([6, 3, 0, 0, 0, 0, 0, 1, 2, 0], class_list(8))
    assert soft == pytest.approx((6 / 9, 3 / 9, 0, 0, 0, 0, 0, 0))
    targets = ferplus_40.soft_targets()
    assert targets.shape == (40, 8)
    torch.testing.assert_close(targets.sum(1), torch.ones(40))
    # the majority label is the largest share
    assert (targets.argmax(1) == torch.tensor(ferplus_40.labels())).all()
    assert (targets.max(1).values < 1).any()  # real votes disagree sometimes
    # a changed (noisy) label drops the votes that contradict it
    noisy = ferplus_40.with_labels([(y + 1) % 8 for y in ferplus_40.labels()])
    assert noisy.soft_targets() is None


def test_soft_cross_entropy_equals_hard_cross_entropy_on_one_hot_targets():
    logits = torch.randn(5, 8)
    labels = torch.tensor([0, 3, 7, 1, 1])
    one_hot = torch.nn.functional.one_hot(labels, 8).float()
    torch.testing.assert_close(classification_loss(logits, labels, one_hot),
                               classification_loss(logits, labels, None))


def test_preload_lists_unreadable_images_and_refuses_when_none_can_be_read(ferplus_40, tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not a png")
    samples = [*ferplus_40.samples[:5], Sample("broken.png", 0, bad),
               Sample("gone.png", 1, tmp_path / "gone.png")]
    data = preload_split(Split("ferplus", "train", class_list(8), samples), META)
    assert data.images.shape == (5, 32, 32, 3) and data.images.dtype == torch.uint8
    assert [u.key for u in data.unreadable] == ["broken.png", "gone.png"]
    assert data.indices.tolist() == [0, 1, 2, 3, 4]
    # the first batch of each epoch reports them
    loader = MemoryLoader(data, META, batch_size=2, augment=published_augment)
    assert [b.skipped for b in loader] == [2, 0]
    with pytest.raises(DataError, match="none of the 2 train images.*broken.png"):
        preload_split(Split("ferplus", "train", class_list(8), samples[5:]), META)


def test_memory_loader_orders_shards_and_augments_reproducibly(ferplus_40):
    data = preload_split(ferplus_40, META)
    loader = MemoryLoader(data, META, batch_size=8, augment=published_augment, seed=3)
    assert len(loader) == 5
    first = list(loader)
    again = list(loader)
    for a, b in zip(first, again, strict=True):  # same epoch: the same order and augmentation
        assert torch.equal(a.indices, b.indices) and torch.equal(a.images, b.images)
    loader.set_epoch(1)
    order0 = torch.cat([b.indices for b in first])
    order1 = torch.cat([b.indices for b in loader])
    assert sorted(order0.tolist()) == sorted(order1.tolist()) == list(range(40))
    assert not torch.equal(order0, order1)
    # two torchrun ranks see disjoint halves of the same epoch
    ranks = [MemoryLoader(data, META, 8, published_augment, seed=3, rank=r, world_size=2) for r in (0, 1)]
    seen = [torch.cat([b.indices for b in r]).tolist() for r in ranks]
    assert len(seen[0]) == len(seen[1]) == 16 and not set(seen[0]) & set(seen[1])
    # evaluation: every image in order, normalised, not augmented
    evaluation = list(MemoryLoader(data, META, batch_size=16))
    assert [len(b.labels) for b in evaluation] == [16, 16, 8]
    x = evaluation[0].images[0]
    expected = cv2.resize(cv2.imread(str(ferplus_40.samples[0].path)), (32, 32),
                          interpolation=cv2.INTER_AREA)[..., ::-1]
    raw = (x * torch.tensor(META.std).view(3, 1, 1) + torch.tensor(META.mean).view(3, 1, 1)) * 255
    assert np.abs(raw.permute(1, 2, 0).numpy() - expected).max() < 1.5


def test_batch_augmentations_change_images_within_bounds(ferplus_40):
    data = preload_split(ferplus_40, META)
    gen = torch.Generator().manual_seed(0)
    x = published_augment(data.images, META, gen)
    assert x.shape == (40, 3, 32, 32) and torch.isfinite(x).all()
    plain = (data.images.permute(0, 3, 1, 2).float() / 255 - 0.5)
    assert (x - (plain - torch.tensor(META.mean).view(1, 3, 1, 1) + 0.5)).abs().mean() > 0.05
    pairs = eac_augment(data.images, META, torch.Generator().manual_seed(0))
    assert pairs.shape == (40, 2, 3, 32, 32)
    # view 1 is the mirror of the raw image wherever it was not erased
    raw = normalize(to_float(data.images), META)
    kept = pairs[:, 1].flip(-1) != 0
    assert torch.allclose(pairs[:, 1].flip(-1)[kept], raw[kept], atol=1e-5)


def test_fused_ema_matches_the_formula_and_copies_integer_buffers():
    torch.manual_seed(2)
    model = GSMCNet(4, output_stride=16)
    teacher = make_method(TrainConfig(method="gsmc", data_root="x").resolved(), model).teacher
    before = [p.detach().clone() for p in teacher.module.parameters()]
    for _ in range(3):
        teacher.update_parameters(model)  # steps 1-3 with an unchanged student
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p))
        model.backbone.bn1.num_batches_tracked += 7
    teacher.update_parameters(model)  # step 4
    a = ema_alpha(4, 0.999)
    for old, new, cur in zip(before, teacher.module.parameters(), model.parameters(), strict=True):
        torch.testing.assert_close(new, a * old + (1 - a) * cur)
    assert teacher.module.backbone.bn1.num_batches_tracked == model.backbone.bn1.num_batches_tracked


@pytest.mark.slow
def test_preloaded_soft_label_bf16_run_learns_and_resumes_identically(ferplus_root, tmp_path):
    common = dict(method="gsmc", dataset="ferplus", data_root=str(ferplus_root), input_size=32,
                  output_stride=16, batch_size=32, limit_train=192, limit_eval=64, workers=0,
                  preload=True, soft_labels=True, precision="bf16", threads=1)
    full = train(TrainConfig(**common, epochs=2, out=str(tmp_path / "full")))
    assert [round(r["val_acc"], 6) for r in full.history] and full.history[0]["skipped"] == 0
    assert full.history[-1]["train_acc"] > 0.15
    train(TrainConfig(**common, epochs=1, out=str(tmp_path / "half")))
    resumed = train(TrainConfig(**common, epochs=2, out=str(tmp_path / "half"), resume=True))
    assert resumed.history[-1]["loss"] == pytest.approx(full.history[-1]["loss"], rel=1e-5)
    assert resumed.history[-1]["val_acc"] == full.history[-1]["val_acc"]
    with pytest.raises(ValueError, match="soft labels .* label noise"):
        TrainConfig(**common, noise_rate=0.3, out=str(tmp_path / "x")).resolved()


def test_robust_augmentation_brings_each_shift(ferplus_40, monkeypatch):
    """Each part of the robust recipe, forced on alone, does what it says; the whole is
    reproducible from its generator and needs preload."""
    import gsmc_core.training.data.batch_augment as aug

    data = preload_split(ferplus_40, META)
    x = aug.robust_augment(data.images, META, torch.Generator().manual_seed(3))
    assert x.shape == (40, 3, 32, 32) and torch.isfinite(x).all()
    assert torch.equal(x, aug.robust_augment(data.images, META, torch.Generator().manual_seed(3)))
    with pytest.raises(UsageError, match="robust augmentation works on preloaded batches"):
        TrainConfig(data_root="x", augment="robust").resolved()

    # JPEG alone (p 1): the images change, by what quality 20-70 does to 32 px faces
    monkeypatch.setattr(aug, "ROBUST_JPEG_P", 1.0)
    jpeg = aug._jpeg(data.images, torch.Generator().manual_seed(0))
    change = (jpeg.float() - data.images.float()).abs().mean()
    assert 1.0 < change < 12.0
    # blur alone (p 1, each image by its own amount): less fine detail in every image
    monkeypatch.setattr(aug, "ROBUST_BLUR_P", 1.0)
    raw = to_float(data.images)
    blurred = aug._blur(raw, torch.Generator().manual_seed(0))
    ratio = ((blurred[..., 1:] - blurred[..., :-1]).abs().mean((1, 2, 3))
             / (raw[..., 1:] - raw[..., :-1]).abs().mean((1, 2, 3)))
    assert (ratio < 1).all() and ratio.min() < 0.7 and ratio.mean() < 0.9
    full = aug._gaussian_matrix(32, 0.8) @ raw[0, 0] @ aug._gaussian_matrix(32, 0.8).T  # as OpenCV blurs
    reference = cv2.GaussianBlur(raw[0, 0].numpy(), (0, 0), 0.8, borderType=cv2.BORDER_REPLICATE)
    np.testing.assert_allclose(full.numpy(), reference, atol=2e-3)
    # half the face hidden (p 1, no JPEG/gamma/blur/erasing): 13 of 32 rows grey, top or bottom
    for name in ("ROBUST_JPEG_P", "ROBUST_GAMMA_P", "ROBUST_BLUR_P"):
        monkeypatch.setattr(aug, name, 0.0)
    monkeypatch.setattr(aug, "ROBUST_HIDE_P", 1.0)
    monkeypatch.setattr(aug, "random_erase", lambda t, gen: t)
    hidden = aug.robust_augment(data.images, META, torch.Generator().manual_seed(0))
    grey = normalize(torch.full((1, 3, 1, 1), 0.5), META)
    top = torch.isclose(hidden[:, :, :13], grey.expand(40, 3, 13, 32), atol=1e-5).flatten(1).all(1)
    bottom = torch.isclose(hidden[:, :, -13:], grey.expand(40, 3, 13, 32), atol=1e-5).flatten(1).all(1)
    assert (top ^ bottom).all() and 5 < int(top.sum()) < 35
    # the occluded pair (hide p 1): the student's view hidden, the teachers' the same view whole
    monkeypatch.setattr(aug, "OCCLUDED_HIDE_P", 1.0)
    pair = aug.occluded_augment(data.images, META, torch.Generator().manual_seed(0))
    assert pair.shape == (40, 2, 3, 32, 32)
    student, whole = pair[:, 0], pair[:, 1]
    top = torch.isclose(student[:, :, :13], grey.expand(40, 3, 13, 32), atol=1e-5).flatten(1).all(1)
    bottom = torch.isclose(student[:, :, -13:], grey.expand(40, 3, 13, 32), atol=1e-5).flatten(1).all(1)
    assert (top ^ bottom).all() and 5 < int(top.sum()) < 35
    middle = slice(13, 19)  # never hidden: the two views are the same face, the same crop
    assert torch.equal(student[:, :, middle], whole[:, :, middle])
    assert not torch.isclose(whole[:, :, :13], grey.expand(40, 3, 13, 32), atol=1e-5).flatten(1).all(1).any()
    monkeypatch.setattr(aug, "OCCLUDED_HIDE_P", 0.4)  # as trained: about 40 % of the faces
    pair = aug.occluded_augment(torch.cat([data.images] * 10), META, torch.Generator().manual_seed(1))
    hidden = (pair[:, 0] != pair[:, 1]).flatten(1).any(1).float().mean().item()
    assert 0.3 < hidden < 0.5
