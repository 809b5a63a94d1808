"""read -> infer -> write, with decoding and encoding overlapped with compute.

``convert`` (folders) uses :func:`run_convert`; the PACS listener will call
:func:`convert_series` on the series it has spooled. Each series is written into a hidden
temporary folder next to its final place and renamed into place only when every image has been
written, so an interrupted or failed series leaves no partial output, and an existing output
series is complete by construction (a rerun skips it unless ``overwrite``).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataset import Dataset

from kernelconv import __version__
from kernelconv.dicom.dataset import decode_hu, pixel_spacing_mm, read_dataset
from kernelconv.dicom.derived import Derivation, build_derived, derived_uid
from kernelconv.dicom.discovery import Discovery, Series, discover
from kernelconv.dicom.paths import file_names, is_within, series_dir
from kernelconv.engines import Engine
from kernelconv.errors import InputError, KernelconvError, OutputError, SeriesError
from kernelconv.fileio import atomic_path, atomic_write_text
from kernelconv.hu import HU_MAX, HU_MIN
from kernelconv.hu_check import DEFAULT_MAX_BIAS_HU, LOWPASS_SIGMA_MM, HuCheck
from kernelconv.kernel_response import REFERENCE_PIXEL_MM, predicted_noise_ratio
from kernelconv.kernels import KernelAliases

TMP_PREFIX = ".kernelconv-tmp-"
OLD_PREFIX = ".kernelconv-old-"
REPORT_NAME = "kernelconv-report.json"


class NoSeriesError(InputError):
    """Nothing under the input can be converted (the report says why for each file)."""


class HuCheckError(SeriesError):
    """The conversion moved local mean HU by more than the limit; the series is not written."""

    def __init__(self, message: str, check: dict[str, Any]) -> None:
        super().__init__(message)
        self.check = check


@dataclass
class ConvertOptions:
    target: str
    source_override: str | None = None
    kernel_map: dict[str, str] = field(default_factory=dict)
    batch_size: int = 4
    overwrite: bool = False
    dry_run: bool = False
    series_number_offset: int = 1000
    read_workers: int = 2
    write_workers: int = 2
    keep_preview: bool = False  # keep a middle slice (source, converted) per series in memory
    #: add to an existing output series (same derived UIDs) instead of replacing it: the
    #: listener's later rounds of late instances
    merge: bool = False
    #: convert series that kernelconv itself derived (skipped by default)
    include_derived: bool = False
    #: refuse a series whose conversion moved local mean HU (soft tissue, fat or lung) by more
    #: than this many HU (kernelconv.hu_check); inf: no limit (the check is still reported)
    max_bias: float = DEFAULT_MAX_BIAS_HU


@dataclass
class SeriesResult:
    """One line of the run report (no patient data: folder, UIDs, kernels, counts)."""

    folder: str
    series_uid: str
    series_number: int | None
    source_kernel: str | None
    target_kernel: str
    images: int
    status: str  # converted | skipped | failed | planned
    reason: str = ""
    seconds: float = 0.0
    output: str = ""
    warnings: list[str] = field(default_factory=list)
    #: the HU check of a converted (or refused) series: low-pass bias per region, noise ratio
    hu_check: dict[str, Any] | None = None
    preview: tuple[np.ndarray, np.ndarray] | None = field(default=None, repr=False)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("preview")
        d["seconds"] = round(self.seconds, 3)
        return d


@dataclass
class RunReport:
    input: str
    output: str
    target: str
    method: str
    results: list[SeriesResult]
    skipped: list[dict[str, str]]
    seconds: float = 0.0
    rank: int = 0
    world_size: int = 1

    @property
    def failed(self) -> int:
        return sum(r.status == "failed" for r in self.results)

    def to_json(self) -> dict[str, Any]:
        counts: dict[str, int] = {}
        for r in self.results:
            counts[r.status] = counts.get(r.status, 0) + 1
        return {
            "kernelconv": __version__, "input": self.input, "output": self.output,
            "target": self.target, "method": self.method, "seconds": round(self.seconds, 3),
            "rank": self.rank, "world_size": self.world_size, "counts": counts,
            "series": [r.to_json() for r in self.results], "skipped_files": self.skipped,
        }


# ---------------------------------------------------------------------------- planning

@dataclass
class Planned:
    series: Series
    source_domain: str | None
    status: str  # "convert" | "skipped" | "failed"
    reason: str = ""


def plan_series(series: Series, table: KernelAliases, options: ConvertOptions) -> Planned:
    """Decide what to do with one series: convert, skip (already at the target, or derived
    by kernelconv) or fail."""
    target, source_override = options.target, options.source_override
    if series.error:
        return Planned(series, None, "failed", series.error)
    made = series.derived_by_kernelconv
    if made is not None and not options.include_derived:
        return Planned(series, None, "skipped",
                       f"derived by kernelconv ({made.source_kernel} -> {made.target_kernel}); "
                       "converting it again compounds the estimate (--include-derived to do "
                       "it anyway)")
    kernel = source_override or series.kernel
    if not kernel:
        return Planned(series, None, "failed",
                       "no ConvolutionKernel in the header; give the source kernel with --from")
    try:
        domain = table.resolve(kernel)
    except SeriesError as exc:
        return Planned(series, None, "failed", str(exc))
    if domain == target:
        return Planned(series, domain, "skipped", f"already at the target kernel ({kernel})")
    return Planned(series, domain, "convert")


def shard(series: list[Series], rank: int, world_size: int) -> list[Series]:
    """This rank's disjoint share: greedy balance by image count, deterministic."""
    if world_size <= 1:
        return series
    load = [0] * world_size
    mine: set[str] = set()
    for s in sorted(series, key=lambda s: (-s.n_images, s.series_uid)):
        r = min(range(world_size), key=lambda i: (load[i], i))
        load[r] += s.n_images
        if r == rank:
            mine.add(s.series_uid)
    return [s for s in series if s.series_uid in mine]


# ---------------------------------------------------------------------------- conversion

def _prefetch(
    pool: ThreadPoolExecutor, fn: Callable[[Path], Any], items: list[Path], depth: int
) -> Iterator[Any]:
    """Map ``fn`` over ``items`` in ``pool`` keeping at most ``depth`` results in flight."""
    pending: deque[Future[Any]] = deque()
    it = iter(items)
    for item in it:
        pending.append(pool.submit(fn, item))
        if len(pending) >= depth:
            break
    while pending:
        result = pending.popleft().result()
        nxt = next(it, None)
        if nxt is not None:
            pending.append(pool.submit(fn, nxt))
        yield result


@dataclass
class LoadedImage:
    """One source file, read and decoded: its dataset, stored values and HU (frames, rows,
    columns), and the output file name it gets."""

    path: Path
    ds: Dataset
    stored: np.ndarray
    hu: np.ndarray
    name: str = ""

    @property
    def frames(self) -> int:
        return int(self.hu.shape[0])

    @property
    def engine_key(self) -> tuple[tuple[int, ...], float]:
        """Images with the same key go through the engine together: matrix size and spacing."""
        return self.hu.shape[1:], pixel_spacing_mm(self.ds) or REFERENCE_PIXEL_MM


def _load(path: Path) -> LoadedImage:
    ds = read_dataset(path)
    stored, hu = decode_hu(ds, path)
    return LoadedImage(path, ds, stored, hu)


def _write(ds: Dataset, path: Path) -> None:
    with atomic_path(path) as part:
        ds.save_as(part, enforce_file_format=True)


def _remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def convert_series(
    series: Series,
    source_domain: str,
    engine: Engine,
    out: Path,
    options: ConvertOptions,
    on_images: Callable[[int], None] = lambda n: None,
) -> SeriesResult:
    """Convert one series into OUT/<study>/<kernel>_<uid>/, all or nothing."""
    target = options.target
    start = time.perf_counter()
    new_series_uid = derived_uid("series", series.series_uid, engine.method_id, target)
    final = series_dir(out, series.study_uid, target, new_series_uid)
    result = SeriesResult(
        folder=series.folder, series_uid=series.series_uid, series_number=series.series_number,
        source_kernel=options.source_override or series.kernel, target_kernel=target,
        images=series.n_images, status="converted", output=str(final), warnings=list(series.warnings),
    )
    if not is_within(final, out):
        raise OutputError(f"{series.label()}: output path escapes {out}")
    names = file_names([s.path for s in series.slices])
    if final.is_dir() and not options.overwrite:
        present = {p.name for p in final.iterdir() if p.is_file()}
        if set(names) <= present:
            result.status, result.reason = "skipped", "output exists (use --overwrite to redo)"
            return result
    sharp = engine.domain_sharpness
    derivation = Derivation(
        source_kernel=options.source_override or series.kernel or source_domain,
        target_kernel=target, method=engine.description, method_id=engine.method_id,
        smoothing=sharp.get(target, 0.0) < sharp.get(source_domain, 0.0),
        series_number_offset=options.series_number_offset,
    )
    tmp = final.parent / (TMP_PREFIX + final.name)
    _remove_tree(tmp)
    tmp.mkdir(parents=True)
    check = HuCheck(max_bias=options.max_bias, expected_noise_ratio=predicted_noise_ratio(
        source_domain, target, highpass_sigma_mm=LOWPASS_SIGMA_MM))
    middle = series.n_images // 2
    index = 0
    try:
        with ThreadPoolExecutor(options.read_workers, "kc-read") as readers, \
                ThreadPoolExecutor(options.write_workers, "kc-write") as writers:
            writes: list[Future[None]] = []
            # a batch collects whole files; multi-frame files contribute all their frames
            batch: list[LoadedImage] = []
            batch_frames = 0

            def flush() -> None:
                nonlocal batch, batch_frames, index
                if not batch:
                    return
                keys = [b.engine_key for b in batch]
                outs: dict[int, np.ndarray] = {}
                for key in dict.fromkeys(keys):  # one engine call per matrix size and spacing
                    ids = [i for i, k in enumerate(keys) if k == key]
                    stack = np.concatenate([batch[i].hu for i in ids])
                    conv = engine.convert(stack, source_domain, target, pixel_mm=key[1])
                    k = 0
                    for i in ids:
                        outs[i] = conv[k:k + batch[i].frames]
                        k += batch[i].frames
                for i, image in enumerate(batch):
                    check.add(np.clip(image.hu, HU_MIN, HU_MAX), outs[i], keys[i][1])
                    n = image.frames
                    if options.keep_preview and index <= middle < index + n:
                        result.preview = (image.hu[middle - index].copy(),
                                          outs[i][middle - index].copy())
                    index += n
                    derived = build_derived(image.ds, outs[i], image.stored, derivation,
                                            new_series_uid)
                    writes.append(writers.submit(_write, derived, tmp / image.name))
                    on_images(n)
                batch, batch_frames = [], 0
                for f in [w for w in writes if w.done()]:
                    f.result()  # surface write errors early
                    writes.remove(f)

            depth = max(2, options.batch_size * 2)
            loaded = _prefetch(readers, _load, [s.path for s in series.slices], depth)
            for image, name in zip(loaded, names, strict=True):
                image.name = name
                batch.append(image)
                batch_frames += image.frames
                if batch_frames >= options.batch_size:
                    flush()
            flush()
            for f in writes:
                f.result()
        result.hu_check = check.to_json()
        if not check.passed:  # nothing of a refused series is installed
            raise HuCheckError(check.reason(), result.hu_check)
        _install(tmp, final, options.merge)
    except BaseException:
        _remove_tree(tmp)
        with contextlib.suppress(OSError):
            final.parent.rmdir()  # the study folder, when this series was its only content
        raise
    result.seconds = time.perf_counter() - start
    return result


def _install(tmp: Path, final: Path, merge: bool = False) -> None:
    """Move a finished series folder into place, replacing an older one atomically enough;
    with ``merge``, move its files into an existing folder (each replace is atomic)."""
    if merge and final.is_dir():
        for f in sorted(tmp.iterdir()):
            os.replace(f, final / f.name)
        _remove_tree(tmp)
    elif final.exists():
        old = final.parent / (OLD_PREFIX + final.name)
        _remove_tree(old)
        os.replace(final, old)
        os.replace(tmp, final)
        _remove_tree(old)
    else:
        os.replace(tmp, final)


def run_convert(
    input_path: Path,
    out: Path,
    engine_factory: Callable[[], Engine],
    domains: tuple[str, ...],
    options: ConvertOptions,
    progress: Any = None,
    rank: int = 0,
    world_size: int = 1,
    owner: str = "the model",
    report_path: Path | None = None,
) -> RunReport:
    """Discover, plan and convert every series under ``input_path`` into ``out``.

    ``engine_factory`` is called once, and only if some series needs converting; ``domains``
    are its kernels and ``owner`` says whose they are in messages ("the filter"). ``progress``
    is an optional object with ``start(label, total) -> token``, ``advance(token, n)`` and
    ``finish(token)`` (the CLI passes a rich progress display). With ``report_path`` the JSON
    report is written there (not on a dry run), also when nothing could be converted
    (NoSeriesError, exit 4), so the reasons are on record.
    """
    start = time.perf_counter()
    if not input_path.exists():
        raise InputError(f"{input_path}: no such file or directory")
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out}: exists and is not a folder")
    if input_path.resolve() == out.resolve():
        raise OutputError(f"{out}: the output folder must differ from the input folder")
    table = KernelAliases.for_domains(domains, options.kernel_map)
    options.target = table.resolve_target(options.target, owner)
    found: Discovery = discover(input_path, exclude=[out])
    mine = shard(found.series, rank, world_size)
    report = RunReport(str(input_path), str(out), options.target, "", [],
                       [{"path": s.path, "reason": s.reason} for s in found.skipped],
                       rank=rank, world_size=world_size)
    if not found.series:
        report.seconds = time.perf_counter() - start
        if report_path is not None and not options.dry_run:
            write_report(report, report_path)
        where = f", see {report_path}" if report_path is not None and not options.dry_run \
            else ""
        if not found.skipped:
            raise NoSeriesError(f"{input_path}: no files found")
        raise NoSeriesError(f"{input_path}: no CT series found ({len(found.skipped)} file(s) "
                            f"or series skipped{where})")
    plans = [plan_series(s, table, options) for s in mine]
    engine: Engine | None = None
    for p in plans:
        s = p.series
        base = SeriesResult(
            folder=s.folder, series_uid=s.series_uid, series_number=s.series_number,
            source_kernel=options.source_override or s.kernel, target_kernel=options.target,
            images=s.n_images,
            status=p.status, reason=p.reason, warnings=list(s.warnings),
        )
        if p.status != "convert" or options.dry_run:
            if p.status == "convert":
                base.status = "planned"
            report.results.append(base)
            continue
        if engine is None:
            engine = engine_factory()
            report.method = engine.description
        if not out.exists():
            try:
                out.mkdir(parents=True)
            except OSError as exc:
                raise OutputError(f"{out}: cannot create output folder ({exc.strerror})") \
                    from None
        token = progress.start(s.label(), s.n_images) if progress else None

        def on_images(n: int, token: Any = token) -> None:
            if progress:
                progress.advance(token, n)

        try:
            assert p.source_domain is not None
            res = convert_series(s, p.source_domain, engine, out, options, on_images)
        except HuCheckError as exc:
            base.status, base.reason, base.hu_check = "failed", str(exc), exc.check
            res = base
        except KernelconvError as exc:
            base.status, base.reason = "failed", str(exc)
            res = base
        except OSError as exc:
            base.status, base.reason = "failed", f"write error: {exc.strerror} ({exc.filename})"
            res = base
        except Exception as exc:  # noqa: BLE001 - one bad series must not stop the run
            base.status = "failed"
            base.reason = f"unexpected error ({type(exc).__name__}: {exc}); please report it"
            res = base
        finally:
            if progress:
                progress.finish(token)
        report.results.append(res)
    report.seconds = time.perf_counter() - start
    if report_path is not None and not options.dry_run:
        write_report(report, report_path)
    return report


def default_report_path(out: Path, rank: int = 0, world_size: int = 1) -> Path:
    """OUT/kernelconv-report.json; one file per rank in a multi-process run."""
    return out / (REPORT_NAME if world_size == 1 else f"kernelconv-report.rank{rank}.json")


def write_report(report: RunReport, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(report.to_json(), indent=2) + "\n")
