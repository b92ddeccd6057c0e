"""A real, non-editable install: the wheel carries the default model, the face-detector models
and the sample media as package data, so `gsmc predict` works from any folder straight after
`pip install`; and the Python API in the README works as written."""

import json
import os
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest
from conftest import shared_path

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_installed_wheel_predicts_offline_from_any_folder(tmp_path):
    # build isolation: pip fetches the setuptools pyproject.toml asks for (a fresh venv of Python
    # 3.11 has an older one)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                    "-w", str(tmp_path / "wheels"), str(REPO)], check=True, capture_output=True)
    wheel = next((tmp_path / "wheels").glob("gsmc-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in ("gsmc_core/assets/models/gsmc_default.pt",
                 "gsmc_core/assets/models/face_detection_short_range.tflite",
                 "gsmc_core/assets/models/face_detection_full_range_sparse.tflite",
                 "gsmc_core/assets/videos/carphone_qcif.mp4", "gsmc_core/py.typed"):
        assert name in names, name
    assert any(n.endswith("licenses/LICENSE") for n in names)
    # a fresh environment that sees this one's dependencies but not its editable gsmc
    env_dir = tmp_path / "fresh"
    venv.create(env_dir, with_pip=False)
    fresh_python = env_dir / "bin" / "python"
    site = subprocess.run([str(fresh_python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                          check=True, capture_output=True, text=True).stdout.strip()
    Path(site, "deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    subprocess.run([str(fresh_python), "-m", "pip", "install", "--no-deps", "--no-index", str(wheel)],
                   check=True, capture_output=True)
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": ""}
    run = dict(cwd=work, env=env, capture_output=True, text=True, timeout=300)
    where = subprocess.run([str(fresh_python), "-c", "import gsmc_core; print(gsmc_core.__file__)"], **run)
    assert where.stdout.startswith(site), where.stdout  # the installed copy, not the checkout
    version = subprocess.run([str(env_dir / "bin" / "gsmc"), "--version"], **run)
    assert version.stdout.strip() == f"gsmc {_version()}"
    photo = str(shared_path("images", "astronaut.png"))
    predict = subprocess.run([str(env_dir / "bin" / "gsmc"), "predict", photo, "--json"], **run)
    assert predict.returncode == 0, predict.stderr[-2000:]
    faces = json.loads(predict.stdout)[0]["faces"]
    assert len(faces) == 1 and faces[0]["expression"] in faces[0]["probabilities"]
    api = subprocess.run([str(fresh_python), "-c", README_EXAMPLE.replace("photo.jpg", photo)], **run)
    assert api.returncode == 0, api.stderr[-2000:]
    lines = api.stdout.splitlines()
    assert len(lines) == 2 and lines[0].startswith("(") and lines[1].split()[0] == "crop:"


def _version() -> str:
    namespace: dict = {}
    text = (REPO / "gsmc_core" / "__init__.py").read_text()
    exec(next(line for line in text.splitlines() if line.startswith("__version__")), namespace)
    return namespace["__version__"]


def _readme_example() -> str:
    text = (REPO / "README.md").read_text()
    start = text.index("```python\n", text.index("## Python API")) + len("```python\n")
    return text[start : text.index("```", start)]


README_EXAMPLE = _readme_example()


def test_readme_python_example_runs_on_a_real_photo(tmp_path):
    photo = str(shared_path("images", "astronaut.png"))
    code = README_EXAMPLE.replace("photo.jpg", photo)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                            env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    box_line, crop_line = result.stdout.splitlines()
    x, y, w, h = eval(box_line.split(")")[0] + ")")  # the printed box tuple
    assert abs(x + w / 2 - 225) < 20 and abs(y + h / 2 - 125) < 20
    assert crop_line.startswith("crop:") and len(crop_line.split()) == 3
