import os
from pathlib import Path

import cv2
import numpy as np
import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


def shared_path(*parts: str) -> Path:
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.fail(f"test data {path} is missing: tests need ../shared beside the checkout")
    return path


@pytest.fixture(scope="session")
def astronaut_rgb() -> np.ndarray:
    bgr = cv2.imread(str(shared_path("images", "astronaut.png")), cv2.IMREAD_COLOR)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


@pytest.fixture(scope="session")
def ferplus_root() -> Path:
    return shared_path("data", "ferplus")


@pytest.fixture(scope="session")
def random_checkpoint(tmp_path_factory) -> Path:
    """A random-weights 8-class model: real shapes and metadata, meaningless predictions."""
    import torch

    from gsmc_core.checkpoint import Checkpoint, ModelMeta, save_checkpoint
    from gsmc_core.labels import CANONICAL_CLASSES
    from gsmc_core.model import GSMCNet

    torch.manual_seed(0)
    meta = ModelMeta(arch="resnet18", classes=CANONICAL_CLASSES, input_size=112, output_stride=16)
    path = tmp_path_factory.mktemp("random-model") / "random.pt"
    save_checkpoint(Checkpoint(meta=meta, state_dict=GSMCNet(8).state_dict()), path)
    return path


@pytest.fixture(scope="session", autouse=True)
def onnx_cache(tmp_path_factory) -> Path:
    """Exported ONNX graphs go to a fresh folder per test session, not the user's cache."""
    folder = tmp_path_factory.mktemp("onnx-cache")
    os.environ["GSMC_CACHE_DIR"] = str(folder)
    return folder


@pytest.fixture(scope="module")
def predictor(random_checkpoint):
    """The random model's Predictor on the CPU (a test module may define its own)."""
    from gsmc_core.frames.predictor import Predictor

    return Predictor.from_checkpoint(random_checkpoint, device="cpu")


@pytest.fixture(scope="module")
def detector():
    """MediaPipe's short-range face detector, one per test module."""
    from gsmc_core.frames.detection import FaceDetector

    with FaceDetector("short") as d:
        yield d


@pytest.fixture
def small_ferplus(tmp_path, ferplus_root) -> Path:
    """A FERPlus root of its own: the first 40 training rows with copies of their faces (a test
    may check the originals stay byte-identical), and links to the real Valid and Test folders."""
    root = tmp_path / "ferplus"
    train = root / "FER2013Train"
    train.mkdir(parents=True)
    rows = (ferplus_root / "FER2013Train" / "label.csv").read_text().splitlines()[:40]
    (train / "label.csv").write_text("\n".join(rows) + "\n")
    for row in rows:
        name = row.split(",")[0]
        (train / name).write_bytes((ferplus_root / "FER2013Train" / name).read_bytes())
    for other in ("FER2013Valid", "FER2013Test"):
        os.symlink(ferplus_root / other, root / other)
    return root
