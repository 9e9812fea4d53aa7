"""Files that are never half-written: atomic writes, safe (weights-only) checkpoint loading, averaging."""

from __future__ import annotations

import os
import pickle
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import torch


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be trusted or used; the message names the file."""


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Write `path` through `write(file)` into a temporary file beside it, then rename.

    A reader (or a crash) sees the old file or the new one, never a part of one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(
            tmp, 0o666 & ~current_umask()
        )  # mkstemp makes files private; a run's files are not
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def save(path: Path, state: dict[str, Any]) -> None:
    """torch.save `state` atomically."""
    atomic_write(path, lambda f: torch.save(state, f))


def load(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """A checkpoint loaded with weights_only=True: tensors and plain containers, never code.

    A missing, truncated or crafted file raises CheckpointError naming it.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0]
        raise CheckpointError(
            f"{path}: refused to load (not a plain weights file: {first})"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError) as e:
        raise CheckpointError(
            f"{path}: truncated or corrupt checkpoint ({type(e).__name__}: {e})"
        ) from None


def average(paths: list[Path]) -> dict[str, torch.Tensor]:
    """The element-wise mean of the model weights of several checkpoints (Vaswani et al. 2017)."""
    states = [load(path)["model"] for path in paths]
    return {
        name: torch.stack([s[name].double() for s in states]).mean(0).to(t.dtype)
        if t.is_floating_point()
        else t
        for name, t in states[0].items()
    }
