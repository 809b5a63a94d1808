"""The spool: every received instance is on disk (fsync'd, atomically renamed) before it is
acknowledged, and stays there until its series has been delivered everywhere.

Layout::

    SPOOL/incoming/<SeriesInstanceUID>/<SOPInstanceUID>.dcm   received, waiting or in work
    SPOOL/failed/<SeriesInstanceUID>/...                      gave up; reason.json beside
    SPOOL/status.json                                         counts and recent series
    SPOOL/listener.lock                                       held by the listener using it

One listener per spool: the spool takes an exclusive ``flock`` on ``listener.lock`` before it
touches anything (its restart recovery removes half-written files, which would be another
listener's instances in flight) and refuses to open when another process holds it. The kernel
releases the lock when its process ends, however it ends, so a lock file left by a killed
listener is stale and taken over (the file only records the holder's pid, for the message).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from kernelconv.dicom.paths import sanitise
from kernelconv.errors import OutputError
from kernelconv.fileio import PART_SUFFIX, atomic_write_bytes, atomic_write_text, output_errors

LOCK_NAME = "listener.lock"


@dataclass
class SeriesRecord:
    series_uid: str
    status: str  # pending | converting | delivered | skipped | failed
    instances: int = 0
    reason: str = ""
    updated: float = field(default_factory=time.time)


class Spool:
    """The spool at ``root``, locked for this process until :meth:`close`. With
    ``retry_failed`` the series in failed/ are moved back to incoming/ first (:attr:`requeued`
    names them) and are converted again like any pending series."""

    def __init__(self, root: Path, retry_failed: bool = False) -> None:
        self.root = root
        self.incoming = root / "incoming"
        self.failed = root / "failed"
        self._lock_fd: int | None = lock_spool(root)
        try:
            with output_errors(root, "--spool"):
                self.incoming.mkdir(parents=True, exist_ok=True)
                self.failed.mkdir(parents=True, exist_ok=True)
                self.requeued = self.requeue_failed() if retry_failed else []
        except BaseException:
            self.close()
            raise
        self._lock = threading.Lock()
        self.last_arrival: dict[str, float] = {}
        self.records: dict[str, SeriesRecord] = {}
        self._busy: set[str] = set()
        for d in sorted(self.incoming.iterdir()):  # restart recovery
            if d.is_dir():
                for part in d.glob(f"*{PART_SUFFIX}"):
                    part.unlink()  # an instance never acknowledged
                files = [f for f in d.iterdir() if f.suffix == ".dcm"]
                if files:
                    self.last_arrival[d.name] = max(f.stat().st_mtime for f in files)
                    self.records[d.name] = SeriesRecord(d.name, "pending", len(files))
                else:
                    shutil.rmtree(d, ignore_errors=True)

    def close(self) -> None:
        """Release the spool's lock (also released when the process ends)."""
        if self._lock_fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None

    def requeue_failed(self) -> list[str]:
        """Move every series of failed/ back to incoming/ (an instance received again since
        is kept as received), dropping its reason.json; the keys of the series moved."""
        moved = []
        for d in sorted(p for p in self.failed.iterdir() if p.is_dir()):
            target = self.incoming / d.name
            target.mkdir(exist_ok=True)
            for f in sorted(d.glob("*.dcm")):
                if (target / f.name).exists():
                    f.unlink()
                else:
                    os.replace(f, target / f.name)
            shutil.rmtree(d)
            moved.append(d.name)
        return moved

    def persist(self, series_uid: str, sop_uid: str, data: bytes) -> Path:
        """Write one instance durably; raises OSError when it cannot."""
        key = sanitise(series_uid, "no-series-uid")
        folder = self.incoming / key
        folder.mkdir(exist_ok=True)
        final = folder / f"{sanitise(sop_uid, 'no-sop-uid')}.dcm"
        resent = final.exists()  # the same instance sent again replaces, does not add
        atomic_write_bytes(final, data, fsync=True)
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)  # the rename itself is durable
        finally:
            os.close(dir_fd)
        with self._lock:
            self.last_arrival[key] = time.time()
            rec = self.records.setdefault(key, SeriesRecord(key, "pending"))
            if rec.status != "pending":  # a new round after a delivered one
                rec.instances = 0
            rec.instances += 0 if resent else 1
            rec.status, rec.updated = "pending", time.time()
        return final

    def stable(self, quiet_seconds: float) -> list[str]:
        """Series with no new instance for ``quiet_seconds``, not already being worked on."""
        now = time.time()
        with self._lock:
            ready = [k for k, t in self.last_arrival.items()
                     if now - t >= quiet_seconds and k not in self._busy]
            self._busy.update(ready)
        return ready

    def folder(self, key: str) -> Path:
        return self.incoming / key

    def snapshot(self, key: str) -> list[Path]:
        """The instance files of a series as they are now."""
        return sorted(p for p in self.folder(key).glob("*.dcm"))

    def finish(self, key: str, status: str, reason: str, delivered: list[Path]) -> None:
        """Remove what was delivered; keep anything that arrived meanwhile for another round."""
        with self._lock:
            if status == "failed":
                target = self.failed / key
                target.mkdir(parents=True, exist_ok=True)
                for f in delivered:
                    if f.exists():
                        os.replace(f, target / f.name)
                (target / "reason.json").write_text(json.dumps({"reason": reason}) + "\n")
            else:
                for f in delivered:
                    f.unlink(missing_ok=True)
            rest = list(self.folder(key).glob("*.dcm"))
            if not rest:
                shutil.rmtree(self.folder(key), ignore_errors=True)
                self.last_arrival.pop(key, None)
            self._busy.discard(key)
            rec = self.records.setdefault(key, SeriesRecord(key, status))
            rec.status, rec.reason, rec.updated = status, reason, time.time()
            if rest:  # arrived during the round: they are the next round
                rec.status, rec.instances = "pending", len(rest)
        self.write_status()

    def write_status(self) -> None:
        with self._lock:
            counts: dict[str, int] = {}
            for r in self.records.values():
                counts[r.status] = counts.get(r.status, 0) + 1
            data = {"updated": time.time(), "counts": counts,
                    "series": [asdict(r) for r in sorted(self.records.values(),
                                                         key=lambda r: -r.updated)[:200]]}
        atomic_write_text(self.root / "status.json", json.dumps(data, indent=1) + "\n")


def lock_spool(root: Path) -> int:
    """Take the spool's exclusive lock (module docstring): the open lock file's descriptor,
    or an OutputError naming the holder's pid when another process holds it."""
    with output_errors(root, "--spool"):
        root.mkdir(parents=True, exist_ok=True)
        fd = os.open(root / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = os.read(fd, 32).decode("ascii", "replace").strip()
        os.close(fd)
        raise OutputError(f"--spool {root}: another kernelconv listen"
                          + (f" (pid {holder})" if holder.isdigit() else "")
                          + " is using this spool; stop it or give another --spool") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd
