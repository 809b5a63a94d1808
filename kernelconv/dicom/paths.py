"""Safe output paths: built from sanitised UIDs, kernel names and source file names only.

No header value can steer a write outside the output folder (no separators, no '..', no
leading dot), and patient names never appear in paths.
"""

from __future__ import annotations

import re
from pathlib import Path

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
MAX_COMPONENT = 120


def sanitise(component: str, fallback: str = "unnamed") -> str:
    """One path component made of [A-Za-z0-9._-], no leading dot, at most 120 characters."""
    text = _UNSAFE.sub("_", component.strip())
    text = text.lstrip(".")
    text = text[:MAX_COMPONENT].rstrip(".")
    return text or fallback


def series_dir(out: Path, study_uid: str, target_kernel: str, derived_series_uid: str) -> Path:
    """OUT/<StudyInstanceUID>/<target kernel>_<derived SeriesInstanceUID>/"""
    return out / sanitise(study_uid, "unknown-study") / (
        f"{sanitise(target_kernel, 'kernel')}_{sanitise(derived_series_uid, 'series')}"
    )


def file_names(sources: list[Path]) -> list[str]:
    """Output file names: the source file names, sanitised, made unique with a suffix."""
    used: set[str] = set()
    names = []
    for src in sources:
        base = sanitise(src.name, "image")
        name, n = base, 1
        while name.lower() in used:
            n += 1
            stem, dot, ext = base.rpartition(".")
            name = f"{stem}_{n}.{ext}" if dot and stem else f"{base}_{n}"
        used.add(name.lower())
        names.append(name)
    return names


def is_within(child: Path, parent: Path) -> bool:
    try:
        child.resolve().relative_to(parent.resolve())
        return True
    except ValueError:
        return False
