"""The shipped training recipes in configs/ load as TrainConfig, as the model card's commands need."""

from pathlib import Path

import pytest

from gsmc_core.training.config import TrainConfig

CONFIG_DIR = Path(__file__).parent.parent / "configs"
CONFIGS = sorted(CONFIG_DIR.glob("*.yaml"))


def test_the_default_model_stages_are_all_there():
    names = {p.name for p in CONFIGS}
    assert {"ferplus_stage1.yaml", "ferplus_default.yaml", "ferplus_stage3.yaml"} <= names


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


def test_stage3_is_the_recipe_of_the_shipped_model():
    from gsmc_core.checkpoint import load_checkpoint
    from gsmc_core.resources import DEFAULT_CHECKPOINT

    shipped = load_checkpoint(DEFAULT_CHECKPOINT).train_config
    stage3 = TrainConfig.from_yaml(CONFIG_DIR / "ferplus_stage3.yaml")
    for key in ("method", "epochs", "lr", "batch_size", "scheduler", "input_size", "output_stride",
                "soft_labels", "preload", "seed", "color"):
        assert getattr(stage3, key) == shipped[key], key
    assert stage3.augment == "webcam"  # the batched augmentation that run used (not published)
    text = (CONFIG_DIR / "ferplus_stage3.yaml").read_text()
    calibrate = next(line for line in text.splitlines() if "gsmc calibrate" in line)
    assert "--refit-head" not in calibrate  # 0.4 is a logit adjustment alone (tau 0.15)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_only_stage3_names_the_command_that_overwrites_the_shipped_model(path):
    exports = "export_default_model.py" in path.read_text()
    assert exports == (path.name == "ferplus_stage3.yaml")
