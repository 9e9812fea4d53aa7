"""Process set-up: glibc keeps freed memory for the next allocation (mt.process.keep_freed_memory)."""

import subprocess
import sys

import pytest

# page faults of three steps of an output layer's forward and backward (64 MiB of logits a step),
# after four steps in which the heap grew to hold them: the fewest of three such windows, since the
# host's kernel may reclaim idle pages of a process that the other work on the cores slows down
# (seen on a VM whose DAMON pages out cold memory: 16,000 faults in one window, 0 when idle)
FAULTS = """
import resource, sys, torch
from mt import process
from mt.loss import label_smoothed_loss
if sys.argv[1] == "keep":
    assert process.keep_freed_memory()
torch.manual_seed(0)
x = torch.randn(2048, 128, requires_grad=True)
w = torch.randn(8000, 128, requires_grad=True)
target = torch.randint(4, 8000, (1, 2048))
def step():
    label_smoothed_loss((x @ w.T)[None], target, 0.1).backward()
for _ in range(4):
    step()
counts = []
for _ in range(3):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    step(), step(), step()
    counts.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(min(counts))
"""


def faults(mode: str) -> int:
    out = subprocess.run(
        [sys.executable, "-c", FAULTS, mode], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    return int(out.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_kept_memory_is_reused_without_faulting_its_pages_in_again():
    pages = 3 * (64 << 20) // 4096  # the logits of three steps
    assert faults("default") > pages // 2  # glibc unmapped them: their pages fault in again
    assert faults("keep") < pages // 50
