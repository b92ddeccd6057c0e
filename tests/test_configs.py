"""The shipped training recipes in configs/ load as TrainConfig, as the model card's commands need."""

from pathlib import Path

import pytest

from gsmc_core.training.config import TrainConfig

CONFIG_DIR = Path(__file__).parent.parent / "configs"
CONFIGS = sorted(CONFIG_DIR.glob("*.yaml"))


def test_the_default_model_stages_are_all_there():
    names = {p.name for p in CONFIGS}
    assert {"ferplus_stage1.yaml", "ferplus_default.yaml", "ferplus_stage3.yaml",
            "ferplus_stage4_robust.yaml", "ferplus_stage5_occluded.yaml"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_loads(path):
    cfg = TrainConfig.from_yaml(path)
    assert cfg.dataset == "ferplus" and cfg.num_classes == 8 and cfg.epochs > 0


def test_stage3_continues_stage2_as_shipped():
    stage2 = TrainConfig.from_yaml(CONFIG_DIR / "ferplus_default.yaml")
    stage3 = TrainConfig.from_yaml(CONFIG_DIR / "ferplus_stage3.yaml")
    # initialised from the 0.3 model file as it shipped, which the config's comment takes from git
    assert stage3.init == "runs/default_0.3.pt"
    assert "git show d8e1949:gsmc_core/assets/models/gsmc_default.pt > runs/default_0.3.pt" in \
        (CONFIG_DIR / "ferplus_stage3.yaml").read_text()
    assert (stage3.method, stage3.soft_labels, stage3.input_size, stage3.output_stride) == \
        ("ce", True, stage2.input_size, stage2.output_stride)


SHIPPED_STAGE = "ferplus_stage5_occluded.yaml"  # the last stage of the shipped default model (0.6)


def test_stage4_continues_0_4_as_shipped():
    stage3 = TrainConfig.from_yaml(CONFIG_DIR / "ferplus_stage3.yaml")
    stage4 = TrainConfig.from_yaml(CONFIG_DIR / "ferplus_stage4_robust.yaml")
    # initialised from the 0.4 model file as it shipped, taken from git by the config's comment
    assert stage4.init == "runs/default_0.4.pt"
    assert "git show 3f03518:assets/models/gsmc_default.pt > runs/default_0.4.pt" in \
        (CONFIG_DIR / "ferplus_stage4_robust.yaml").read_text()
    assert (stage4.soft_labels, stage4.output_stride, stage4.color) == \
        (stage3.soft_labels, stage3.output_stride, stage3.color)
    assert stage4.input_size == 65  # 16k + 1: the exact mirror (the EMA teacher sees it too)


def test_stage5_continues_0_5_as_shipped_and_learns_from_it():
    stage4 = TrainConfig.from_yaml(CONFIG_DIR / "ferplus_stage4_robust.yaml")
    stage5 = TrainConfig.from_yaml(CONFIG_DIR / SHIPPED_STAGE)
    # the 0.5 model file as it shipped (from git, by the config's comment) is backbone and teacher
    assert stage5.init == stage5.teachers == "runs/default_0.5.pt"
    assert "git show 38c8fbe:assets/models/gsmc_default.pt > runs/default_0.5.pt" in \
        (CONFIG_DIR / SHIPPED_STAGE).read_text()
    assert (stage5.augment, stage5.lambda_teachers) == ("occluded", 1.0)
    assert (stage5.soft_labels, stage5.input_size, stage5.output_stride, stage5.color) == \
        (stage4.soft_labels, stage4.input_size, stage4.output_stride, stage4.color)


def test_the_shipped_stage_is_the_recipe_of_the_shipped_model():
    from gsmc_core.checkpoint import load_checkpoint
    from gsmc_core.resources import DEFAULT_CHECKPOINT

    shipped = load_checkpoint(DEFAULT_CHECKPOINT)
    stage = TrainConfig.from_yaml(CONFIG_DIR / SHIPPED_STAGE)
    for key in ("method", "epochs", "lr", "batch_size", "scheduler", "input_size", "output_stride",
                "soft_labels", "preload", "seed", "color", "augment", "lambda_kl", "lambda_ac",
                "ema_alpha", "init", "teachers", "lambda_teachers"):
        assert getattr(stage, key) == shipped.train_config[key], key
    assert shipped.meta.input_size == stage.input_size
    # the config's calibrate command is the calibration the shipped file records
    text = (CONFIG_DIR / SHIPPED_STAGE).read_text()
    calibrate = [line for line in text.splitlines() if "gsmc calibrate" in line]
    metrics = shipped.metrics
    assert bool(calibrate) == ("logit_adjustment_tau" in metrics)
    if calibrate:
        assert ("--refit-head" in calibrate[0]) == ("classifier_refit" in metrics)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_only_the_shipped_stage_names_the_command_that_overwrites_the_shipped_model(path):
    overwrites = any("export_default_model.py" in line and "--out" not in line
                     for line in path.read_text().splitlines())
    assert overwrites == (path.name == SHIPPED_STAGE)
