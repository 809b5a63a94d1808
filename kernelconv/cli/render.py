"""Rendering for every command, in one place: consoles, one-line errors, progress bars, tables
that fit an 80-column terminal, and short paths."""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table

err = Console(stderr=True, highlight=False)
out = Console(highlight=False)

#: longest path shown in a table cell; longer ones keep their end ("...tail")
PATH_CELL = 30
#: longest label of a progress bar: bar, counts and time left then fit 80 columns
BAR_LABEL = 36


def fail(message: str, code: int) -> NoReturn:
    """One line on stderr (never wrapped, never a traceback), then exit with ``code``."""
    print(f"kernelconv: error: {' '.join(message.split())}", file=sys.stderr)
    sys.exit(code)


def progress_columns(unit: str, *extra: ProgressColumn) -> tuple[ProgressColumn, ...]:
    """The columns of every progress bar: label, bar, done/total, unit, time left."""
    return (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn(unit), TimeRemainingColumn(), *extra)


class RichProgress:
    """Adapter from the pipeline's progress protocol to a rich progress display: one line per
    series, its label shortened to fit; a series that made no progress (skipped because its
    output exists, or failed before its first slice) leaves no empty bar behind."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress

    def start(self, label: str, total: int) -> Any:
        return self.progress.add_task(short_label(label), total=total)

    def advance(self, token: Any, n: int) -> None:
        self.progress.advance(token, n)

    def finish(self, token: Any) -> None:
        task = next((t for t in self.progress.tasks if t.id == token), None)
        if task is not None and not task.completed:
            self.progress.remove_task(token)
        self.progress.refresh()


def short_label(label: str, limit: int = BAR_LABEL) -> str:
    """A progress label of at most ``limit`` characters: "series #12 in a/long/folder" keeps
    its head up to " in " and the end of the folder ("series #12 in ...g/folder")."""
    if len(label) <= limit:
        return label
    head, sep, tail = label.partition(" in ")
    if not sep or len(head) + len(sep) + 6 > limit:
        return "..." + label[-(limit - 3):]
    return head + sep + short_path(tail, limit=limit - len(head) - len(sep))


def unique_labels(labels: Sequence[str], keys: Sequence[str]) -> list[str]:
    """``labels`` made unique: a label that several items share gets the end of each item's
    ``key`` (e.g. its SeriesInstanceUID), "data #2 (...4711)"; identical keys get a count."""
    counts: dict[str, int] = {}
    for label in labels:
        counts[label] = counts.get(label, 0) + 1
    result = []
    seen: dict[str, int] = {}
    for label, key in zip(labels, keys, strict=True):
        if counts[label] > 1:
            label = f"{label} (...{key[-6:]})"
        seen[label] = seen.get(label, 0) + 1
        result.append(label if seen[label] == 1 else f"{label} [{seen[label]}]")
    return result


def new_table(title: str, headers: Sequence[str], wrap: Sequence[str] = (),
              widths: Mapping[str, int] | None = None) -> Table:
    """A table that fits an 80-column terminal without cutting its headers: every column is at
    least as wide as the longest word of its header (or ``widths[header]``, for values such as
    "converted"); a header of several words may wrap at its spaces, and the columns named in
    ``wrap`` (paths, free text) give up width, folding their values onto more lines."""
    table = Table(title=title, show_lines=False, pad_edge=False, collapse_padding=True)
    for header in headers:
        longest = max((len(w) for w in header.split()), default=1)
        table.add_column(header, min_width=max(longest, (widths or {}).get(header, 0)),
                         overflow="fold", no_wrap=header not in wrap and " " not in header)
    return table


def number(value: float | None, spec: str = ".2f") -> str:
    """A figure for a table cell; "-" where it could not be measured (None or NaN: no lung in
    the QA phantom, no edge...)."""
    if value is None or math.isnan(value):
        return "-"
    return format(value, spec)


def short_path(path: str | Path, root: str | Path | None = None, limit: int = PATH_CELL) -> str:
    """``path`` relative to ``root`` when it lies inside it, and at most ``limit`` characters:
    a longer one keeps its end (the part that tells series apart) after "..."."""
    text = str(path)
    if root is not None:
        try:
            rel = Path(path).resolve().relative_to(Path(root).resolve())
            text = str(rel) if str(rel) != "." else Path(path).name or text
        except (ValueError, OSError):
            pass
    return text if len(text) <= limit else "..." + text[-(limit - 3):]
