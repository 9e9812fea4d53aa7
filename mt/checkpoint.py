"""Checkpoints and files that are never half-written: atomic writes, safe (weights-only) loading,
the newest complete checkpoint of a run, rotation and averaging."""

from __future__ import annotations

import logging
import os
import pickle
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import torch
from torch import nn

from mt.errors import MTError

log = logging.getLogger(__name__)


class CheckpointError(MTError):
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
    except Exception as e:  # torch raises many kinds on a damaged file (IndexError, KeyError, ...)
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


def load_model_state(model: nn.Module, weights: dict, path: Path) -> None:
    """Load weights into `model`; a checkpoint of another shape names the mismatching tensors."""
    own = model.state_dict()
    problems = [
        f"{name}: checkpoint {tuple(t.shape)} vs model {tuple(own[name].shape)}"
        for name, t in weights.items()
        if name in own and own[name].shape != t.shape
    ]
    missing = sorted(set(own) - set(weights))
    unexpected = sorted(set(weights) - set(own))
    if problems or missing or unexpected:
        details = (
            problems
            + [f"missing {n}" for n in missing[:5]]
            + [f"unexpected {n}" for n in unexpected[:5]]
        )
        raise CheckpointError(f"{path} does not match the model config: " + "; ".join(details[:8]))
    model.load_state_dict(weights)


PARTIAL = re.compile(r"^\.(last|step-\d+)\.pt\..+\.tmp$")  # atomic_write's temporary names


def step_checkpoints(folder: Path) -> list[Path]:
    """The step-N.pt files of a run's checkpoint folder, oldest first."""
    return sorted(Path(folder).glob("step-*.pt"), key=lambda p: int(p.stem.split("-")[1]))


def newest(folder: Path, map_location: str | torch.device = "cpu") -> tuple[Path, dict] | None:
    """The readable checkpoint with the most updates among last.pt and step-N.pt, or None.

    last.pt is saved on a time interval and after step-N.pt at a validation, so either may be the
    newer one when a process is killed; an unreadable file is skipped with a warning.
    """
    best: tuple[int, Path, dict] | None = None
    candidates = [Path(folder) / "last.pt", *reversed(step_checkpoints(folder))]
    for path in candidates:
        if not path.exists():
            continue
        if best is not None and path.name != "last.pt" and int(path.stem.split("-")[1]) <= best[0]:
            break  # step-N.pt files come newest first: none of the rest is newer
        try:
            state = load(path, map_location)
        except CheckpointError as e:
            log.warning("%s; trying an older checkpoint", e)
            continue
        step = state["progress"]["step"]
        if best is None or step > best[0]:
            best = (step, path, state)
        if path.name != "last.pt":
            break
    return (best[1], best[2]) if best else None


def remove_partial(folder: Path) -> list[Path]:
    """Delete the temporary files of last.pt and step-N.pt saves that never finished (a process
    killed while writing one); only the training that holds the run's lock writes those. Returns
    the files deleted."""
    partial = [p for p in Path(folder).glob(".*.tmp") if PARTIAL.match(p.name)]
    for path in partial:
        path.unlink(missing_ok=True)
    return partial


def prune(folder: Path, keep: int) -> None:
    """Delete all but the `keep` newest step-N.pt files."""
    steps = step_checkpoints(folder)
    for path in steps[: max(0, len(steps) - keep)]:
        path.unlink()


def average_kept(folder: Path) -> list[Path]:
    """averaged.pt: the mean weights of the kept step-N.pt checkpoints; returns those averaged."""
    steps = step_checkpoints(folder)
    if len(steps) >= 2:
        save(
            Path(folder) / "averaged.pt",
            {"model": average(steps), "averaged": [p.name for p in steps]},
        )
        return steps
    return []
