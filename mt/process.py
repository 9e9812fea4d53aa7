"""Process set-up shared by every command: logging, CPU threads, the device, the code's version."""

from __future__ import annotations

import ctypes
import logging
import os
import subprocess
from pathlib import Path

import torch


def resolve_device(name: str) -> torch.device:
    """`auto`: CUDA, else MPS, else the CPU; any other name is taken as torch spells it."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    return torch.device(name)


def set_threads(threads: int | None) -> None:
    """`threads` per process, or the machine's cores shared among the processes torchrun started."""
    per_process = (os.cpu_count() or 1) // int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    torch.set_num_threads(threads or max(1, per_process))


def keep_freed_memory() -> bool:
    """Ask glibc to serve large allocations from its heap and keep freed memory for the next one.

    By default glibc maps every allocation over 32 MiB afresh and unmaps it when freed, and trims
    the heap: a training step allocates its (target tokens x vocabulary) logits and gradients anew
    each update, and the kernel zero-fills each of their pages on first touch — about a tenth of a
    CPU update of `transformer_tiny` (docs/BENCHMARKS.md). The cost is that the process keeps its
    peak memory until it ends. False where the C library is not glibc (nothing changed)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_top_pad, m_mmap_max = -1, -2, -4
    # no mapping of its own for any allocation; freed memory kept up to 1 GiB; the heap grown 64 MiB
    # beyond each request, so that a block freed next to its top fits an aligned request of its size
    settings = ((m_mmap_max, 0), (m_trim_threshold, 1 << 30), (m_top_pad, 64 << 20))
    return all(mallopt(option, value) == 1 for option, value in settings)


def git_commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).parent,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def setup_logging(run_dir: Path | None = None, main: bool = True) -> None:
    """Log to the console, and to the run's train.log once there is a run; a process other than
    the main one (torchrun's rank 0) logs warnings only, to the console."""
    root = logging.getLogger()
    root.setLevel(logging.INFO if main else logging.WARNING)
    if not main:
        run_dir = None
    formatter = logging.Formatter(
        "%(asctime)s %(levelname)s %(name)s: %(message)s", "%Y-%m-%d %H:%M:%S"
    )
    if not any(
        isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)
        for h in root.handlers
    ):
        console = logging.StreamHandler()
        console.setFormatter(formatter)
        root.addHandler(console)
    if run_dir is not None:
        path = str((run_dir / "train.log").resolve())
        for handler in [h for h in root.handlers if isinstance(h, logging.FileHandler)]:
            if handler.baseFilename != path:  # another run's log (the previous job of a sweep)
                root.removeHandler(handler)
                handler.close()
        if not any(isinstance(h, logging.FileHandler) for h in root.handlers):
            handler = logging.FileHandler(path)
            handler.setFormatter(formatter)
            root.addHandler(handler)
    for noisy in ("datasets", "httpx", "urllib3", "fsspec"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
