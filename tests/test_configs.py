"""The shipped training recipes in configs/ load as TrainConfig, as the model card's commands need."""

from pathlib import Path

import pytest

from gsmc_core.train_config import TrainConfig

CONFIG_DIR = Path(__file__).parent.parent / "configs"
CONFIGS = sorted(CONFIG_DIR.glob("*.yaml"))


def test_the_default_model_stages_are_all_there():
    names = {p.name for p in CONFIGS}
    assert {"ferplus_stage1.yaml", "ferplus_default.yaml", "ferplus_stage3.yaml"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_loads(path):
    cfg = TrainConfig.from_yaml(path)
    assert cfg.dataset == "ferplus" and cfg.num_classes == 8 and cfg.epochs > 0


def test_stage3_continues_stage2():
    stage2 = TrainConfig.from_yaml(CONFIG_DIR / "ferplus_default.yaml")
    stage3 = TrainConfig.from_yaml(CONFIG_DIR / "ferplus_stage3.yaml")
    assert stage3.init == f"{stage2.out}/best.pt"
    assert (stage3.method, stage3.soft_labels, stage3.input_size, stage3.output_stride) == \
        ("ce", True, stage2.input_size, stage2.output_stride)
