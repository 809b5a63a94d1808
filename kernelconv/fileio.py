"""Atomic file writes (the one owner of the temporary-file + ``os.replace`` pattern), checking
an output location before any work, and reading a JSON settings file.

A reader (or a crash) never sees a half-written file: content goes to a temporary sibling
named ``<name>.<pid>-<thread>.part`` in the same folder (same file system), which replaces the
target only once it is complete; on any error the temporary file is removed. Model files,
checkpoints, reports, spooled instances, status files and derived images are written this way.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import stat
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from kernelconv.errors import OutputError, UsageError

PART_SUFFIX = ".part"


_HOST = socket.gethostname().split(".")[0] or "host"


def part_path(path: Path) -> Path:
    """The temporary sibling used while ``path`` is being written (unique per thread, and
    per machine: ranks on several nodes may write into one shared folder)."""
    return path.with_name(f"{path.name}.{_HOST}-{os.getpid()}-{threading.get_ident()}"
                          f"{PART_SUFFIX}")


def _kind(path: Path) -> str | None:
    """"dir", "other" (a file, a device...) or None (nothing there), from one stat call: the
    answer cannot mix two moments of a folder another process creates or removes."""
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return None
    return "dir" if stat.S_ISDIR(mode) else "other"


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


def _reason(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


@contextlib.contextmanager
def output_errors(path: Path, what: str) -> Iterator[None]:
    """Turn an OSError while writing ``what`` (e.g. "--preview") at ``path`` into a one-line
    OutputError (exit 5) naming both."""
    try:
        yield
    except OSError as exc:
        raise OutputError(f"{what} {path}: cannot write ({_reason(exc)})") from None


def probe_output(path: Path, what: str, folder: bool) -> None:
    """Check before any work that ``path`` (a folder, or a file when not ``folder``) can be
    written, so that an unusable location fails at once (OutputError, exit 5) rather than after
    hours of work. Creates the missing folders and a temporary file in the one that would hold
    the output, then removes everything it created: the location is left as it was."""
    if folder and _kind(path) == "other":
        raise OutputError(f"{what} {path}: exists and is not a folder")
    if not folder and _kind(path) == "dir":
        raise OutputError(f"{what} {path}: is a folder, not a file")
    holder = path if folder else path.parent
    # other processes may probe the same place at once (torchrun ranks): a folder one of them
    # creates is not an error here, and one it removes again before our probe is written is
    # created anew (a few tries)
    for attempt in range(PROBE_TRIES):
        try:
            _probe_once(path, holder, what)
            return
        except FileNotFoundError:
            if attempt == PROBE_TRIES - 1:
                raise OutputError(f"{what} {path}: cannot write (its folder keeps "
                                  "disappearing)") from None


PROBE_TRIES = 5


def _probe_once(path: Path, holder: Path, what: str) -> None:
    missing = []
    for parent in (holder, *holder.parents):
        kind = _kind(parent)
        if kind == "dir":
            break
        if kind == "other":
            raise OutputError(f"{what} {path}: {parent} is not a folder")
        missing.append(parent)
    created: list[Path] = []
    try:
        try:
            for d in reversed(missing):
                try:
                    d.mkdir()
                    created.append(d)
                except FileExistsError:
                    kind = _kind(d)
                    if kind == "other":
                        raise OutputError(f"{what} {path}: {d} is not a folder") from None
                    if kind is None:  # made and removed again by another process: retry
                        raise FileNotFoundError(d) from None
            probe = part_path(holder / ".kernelconv-probe")
            probe.write_bytes(b"")
            probe.unlink()
        except FileNotFoundError:
            raise
        except OSError as exc:
            raise OutputError(f"{what} {path}: cannot write ({_reason(exc)})") from None
    finally:
        for d in reversed(created):
            with contextlib.suppress(OSError):
                d.rmdir()


def write_output_text(path: Path, text: str, what: str) -> None:
    """Write a text output (atomically, creating its folder); a failure is an OutputError
    naming ``what`` and the path."""
    with output_errors(path, what):
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, text)


def read_settings_file(path: Path, what: str) -> dict[str, Any]:
    """The settings of a JSON config file (a JSON object); a one-line usage error naming the
    file and ``what`` it should be (e.g. "training config") otherwise. The caller validates
    the keys and values."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path}: cannot read {what} ({exc})") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path}: a {what} is a JSON object of settings")
    return data
