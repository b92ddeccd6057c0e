"""torchrun's process layout, the random state a resumable checkpoint carries, and a digest that
tells whether two processes ended with identical weights."""

import hashlib
import os
import random
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch


@dataclass
class Distributed:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls) -> "Distributed":
        """torchrun's RANK / WORLD_SIZE / LOCAL_RANK; a single process without them."""
        return cls(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
                   int(os.environ.get("LOCAL_RANK", 0)))


def rng_state() -> dict[str, Any]:
    state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [state[0], torch.from_numpy(state[1].astype(np.int64)), *state[2:]],
        "python": random.getstate(),
    }


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        # one state per GPU the saving process could see: a machine (or CUDA_VISIBLE_DEVICES)
        # with fewer GPUs restores those it has
        for device, gpu_state in enumerate(state["cuda"][: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(gpu_state, device)
    kind, keys, *rest = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), *rest))
    random.setstate(state["python"])


def weights_digest(model: torch.nn.Module) -> str:
    """A hash of every parameter and buffer: equal digests mean identical weights."""
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]
