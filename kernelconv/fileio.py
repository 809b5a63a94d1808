"""Atomic file writes: the one owner of the temporary-file + ``os.replace`` pattern.

A reader (or a crash) never sees a half-written file: content goes to a temporary sibling
named ``<name>.<pid>-<thread>.part`` in the same folder (same file system), which replaces the
target only once it is complete; on any error the temporary file is removed. Model files,
checkpoints, reports, spooled instances, status files and derived images are written this way.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path

PART_SUFFIX = ".part"


def part_path(path: Path) -> Path:
    """The temporary sibling used while ``path`` is being written (unique per thread)."""
    return path.with_name(f"{path.name}.{os.getpid()}-{threading.get_ident()}{PART_SUFFIX}")


@contextlib.contextmanager
def atomic_path(path: Path, fsync: bool = False) -> Iterator[Path]:
    """Yield a temporary path to write ``path``'s content into; on success it replaces
    ``path`` (after an fsync of the file when ``fsync``), on error it is removed."""
    tmp = part_path(path)
    try:
        yield tmp
        if fsync:
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def atomic_write_bytes(path: Path, data: bytes, fsync: bool = False) -> None:
    with atomic_path(path, fsync) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: Path, text: str, fsync: bool = False) -> None:
    with atomic_path(path, fsync) as tmp:
        tmp.write_text(text, encoding="utf-8")
