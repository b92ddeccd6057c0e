"""Peak memory and time of each bad input, beside the same command on a good one (issue 25).

    python scripts/bomb_memory.py [--checkpoint MODEL]

Runs each command in its own process and follows the child's peak resident set size (VmHWM in
/proc, every 20 ms; ru_maxrss would carry this script's own size into the child across fork),
so the figures are what a user's machine sees. The rule: a bad input costs at most
1 GB above the command's normal use and is refused with a message within 5 s.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import PIL.Image
import torch

from gsmc_core.resources import DEFAULT_CHECKPOINT


def measure(argv: list[str]) -> tuple[int, float, float, str]:
    """(exit status, peak RSS in MB, seconds, last line of stderr) of ``gsmc argv``."""
    start = time.perf_counter()
    err_file = tempfile.TemporaryFile(mode="w+")
    proc = subprocess.Popen([sys.executable, "-m", "gsmc_core.cli", *argv], stdout=subprocess.DEVNULL,
                            stderr=err_file, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    peak_kb = 0
    while proc.poll() is None:
        try:
            status = Path(f"/proc/{proc.pid}/status").read_text()
            peak_kb = max(peak_kb, int(status.split("VmHWM:")[1].split()[0]))
        except (OSError, IndexError, ValueError):
            pass
        time.sleep(0.02)
    seconds = time.perf_counter() - start
    err_file.seek(0)
    lines = [line for line in err_file.read().strip().splitlines() if "error" in line or "wrote" in line]
    return proc.returncode, peak_kb / 1024, seconds, (lines or [""])[-1][:110]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT)
    args = p.parse_args()
    model = str(args.checkpoint)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        good = tmp / "good.png"
        PIL.Image.new("RGB", (640, 480), (128, 128, 128)).save(good)
        tiff = tmp / "bomb.tif"
        PIL.Image.new("1", (30000, 30000)).save(tiff, compression="group4")
        webp = tmp / "big.webp"
        PIL.Image.new("RGB", (11000, 10000)).save(webp, lossless=True)
        payload = torch.load(model, map_location="cpu", weights_only=True)
        payload["state_dict"] = dict(payload["state_dict"])
        payload["state_dict"]["backbone.conv1.weight"] = torch.zeros(1).expand(10**6, 10**6)
        expanded = tmp / "expanded.pt"
        torch.save(payload, expanded)
        deflate = tmp / "deflate.pt"
        with zipfile.ZipFile(model) as source, zipfile.ZipFile(deflate, "w", zipfile.ZIP_DEFLATED) as out:
            for info in source.infolist():
                out.writestr(info.filename, source.read(info.filename))
            out.writestr("bomb/data/huge", b"\0" * 1_000_000_000)
        yaml_bomb = tmp / "bomb.yaml"
        lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
        lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)]
        yaml_bomb.write_text("\n".join(lines) + "\nepochs: *a8\ndata_root: x\n")
        cases = [
            ("good photo (baseline)", ["predict", str(good), "--checkpoint", model, "--device", "cpu"]),
            ("30000² TIFF, 25 kB", ["predict", str(tiff), "--checkpoint", model, "--device", "cpu"]),
            ("30000² TIFF, --no-detect", ["predict", str(tiff), "--no-detect", "--checkpoint", model,
                                          "--device", "cpu"]),
            ("11000×10000 WebP", ["predict", str(webp), "--checkpoint", model, "--device", "cpu"]),
            ("model info (baseline)", ["info", model]),
            ("expanded 10^12-value tensor", ["info", str(expanded)]),
            ("1 GB deflate record", ["info", str(deflate)]),
            ("YAML alias bomb", ["train", "--config", str(yaml_bomb)]),
        ]
        print("| input | exit | peak RSS (MB) | seconds | message |\n|---|---|---|---|---|")
        for name, argv in cases:
            code, rss, seconds, message = measure(argv)
            print(f"| {name} | {code} | {rss:.0f} | {seconds:.1f} | {message} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
