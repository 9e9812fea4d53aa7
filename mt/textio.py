"""Lines of text from a pipe or a terminal as they arrive, read safely: bad UTF-8 is replaced and
named, and every input line gives exactly one output line."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator


def arrived_lines(fd: int, max_lines: int) -> Iterator[list[bytes]]:
    """The complete lines that have arrived on file descriptor `fd`, in lists of up to `max_lines`.

    Whatever one read returns is decoded together: a person typing (or a program that writes a line
    and waits for its answer) gets each line translated at once, a file or a pipe in full batches.
    A last line without a line break is a line too.
    """
    pending = b""
    while chunk := os.read(fd, 1 << 16):
        *lines, pending = (pending + chunk).split(b"\n")
        for start in range(0, len(lines), max_lines):
            yield lines[start : start + max_lines]
    if pending:
        yield [pending]


def decode_line(raw: bytes, number: int) -> str:
    """One input line as text: invalid UTF-8 is read as U+FFFD, with a warning naming the line."""
    raw = raw.removesuffix(b"\r")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        print(
            f"mt: warning: input {number}: invalid UTF-8 (byte {e.start}: {raw[e.start : e.start + 4]!r});"
            " undecodable bytes read as U+FFFD",
            file=sys.stderr,
        )
        return raw.decode("utf-8", errors="replace")


def one_line(text: str) -> str:
    """`text` on one output line, whatever line breaks it holds."""
    return " ".join(text.splitlines()) if text else text
