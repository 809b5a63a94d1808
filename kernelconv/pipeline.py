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
from kernelconv.dicom.dataset import decode_hu, read_dataset, read_file, resolve_pixel_spacing
from kernelconv.dicom.derived import (
    Derivation,
    build_derived,
    derivation_of,
    derived_uid,
    verify_encoding,
)
from kernelconv.dicom.discovery import Discovery, Series, discover
from kernelconv.dicom.paths import file_names, is_within, series_dir
from kernelconv.engines import Engine
from kernelconv.errors import (
    InputError,
    KernelconvError,
    KernelError,
    OutputError,
    SeriesError,
    UsageError,
)
from kernelconv.fileio import atomic_path, atomic_write_text
from kernelconv.hu import HU_MAX, HU_MIN
from kernelconv.hu_check import DEFAULT_MAX_BIAS_HU, LOWPASS_SIGMA_MM, HuCheck
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
    #: the target kernel as asked for (--to): what the derived series' ConvolutionKernel says
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
    #: the engine's kernel (domain) that ``target`` names; set by :func:`resolve_kernels`
    target_domain: str | None = None


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
    #: the engine's kernels the series was (or would be) converted between, where known
    source_domain: str | None = None
    target_domain: str | None = None
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


def resolve_kernels(options: ConvertOptions, table: KernelAliases, owner: str) -> None:
    """Resolve ``--to`` (and check ``--from``) against the engine's kernels, before any series
    is read: UsageError naming ``owner``'s kernels when one is unknown. Sets
    ``options.target_domain``; ``options.target`` keeps the name asked for (the written
    label), in the domain's spelling when it is the domain itself. Convert and listen both
    call it."""
    domain = table.resolve_target(options.target, owner)
    asked = options.target.strip()
    options.target = domain if asked.lower() == domain.lower() else asked
    options.target_domain = domain
    if options.source_override:
        try:
            table.resolve(options.source_override)
        except KernelError:
            raise UsageError(f"--from {options.source_override.strip()}: not one of the "
                             f"kernels of {owner} ({table.listing()}); add an alias with "
                             "--kernel-map") from None


def plan_series(series: Series, table: KernelAliases, options: ConvertOptions) -> Planned:
    """Decide what to do with one series: convert, skip (already at the target, or derived
    by kernelconv) or fail. ``options`` must have been through :func:`resolve_kernels`."""
    target, source_override = options.target_domain, options.source_override
    assert target is not None, "resolve_kernels(options, ...) first"
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
    columns), its pixel size, the output file name it gets, where its first frame lies in the
    series, and (filled batch by batch) its converted frames."""

    path: Path
    ds: Dataset
    stored: np.ndarray
    hu: np.ndarray
    pixel_mm: float
    name: str = ""
    offset: int = 0
    converted: np.ndarray | None = None

    @property
    def frames(self) -> int:
        return int(self.hu.shape[0])

    @property
    def engine_key(self) -> tuple[tuple[int, ...], float]:
        """Images with the same key go through the engine together: matrix size and spacing."""
        return self.hu.shape[1:], self.pixel_mm


def _load(path: Path) -> LoadedImage:
    ds = read_dataset(path)
    stored, hu = decode_hu(ds, path)
    try:
        spacing = resolve_pixel_spacing(ds).mm
    except SeriesError as exc:
        raise SeriesError(f"{path}: {exc}") from None
    return LoadedImage(path, ds, stored, hu, spacing)


def _write(ds: Dataset, path: Path) -> None:
    with atomic_path(path) as part:
        ds.save_as(part, enforce_file_format=True)


def _remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


class OutputExistsError(SeriesError):
    """The output folder of a series holds another conversion (other settings, an older
    kernelconv or foreign files); --overwrite replaces it."""


def output_dir(out: Path, series: Series, target_label: str) -> Path:
    """Where a series' conversion to ``target_label`` goes: one folder per source series and
    target kernel, whatever the settings (OUT/<study>/<target>_<source SeriesInstanceUID>/),
    so that a rerun with other settings finds, and never silently keeps, the earlier result."""
    return series_dir(out, series.study_uid, target_label, series.series_uid)


def _existing_conversion(folder: Path, key: str) -> tuple[set[str], str | None]:
    """The file names in an existing output folder, and None when every file holds the
    conversion ``key`` names, else what the folder holds instead (for a message). The
    derivation is read back from each file's header."""
    names: set[str] = set()
    other: str | None = None
    for path in sorted(folder.iterdir()):
        if not path.is_file() or path.name.startswith("."):
            continue
        names.add(path.name)
        if other is not None:
            continue
        try:
            made = derivation_of(read_file(path, header_only=True))
        except Exception:  # noqa: BLE001 - an unreadable file is not our conversion
            made = None
        if made is None:
            other = f"files kernelconv did not write ({path.name})"
        elif made.key is None:
            other = (f"a conversion {made.source_kernel} -> {made.target_kernel} by an older "
                     "kernelconv that did not record its settings")
        elif made.key != key:
            other = (f"another conversion of this series ({made.source_kernel} -> "
                     f"{made.target_kernel}, {made.method_id or 'another method'})")
    return names, other


#: a noise ratio this far on the wrong side of 1 draws a warning (measurement spread)
NOISE_DIRECTION_MARGIN = 0.05


def _noise_direction_warning(check: HuCheck, sharper: bool) -> str | None:
    """A warning when the output's noise moved against the kernel change: a soft -> sharp
    result smoother than its input, or a sharp -> soft result noisier. (The figures are in
    the HU check beside it.)"""
    measured, expected = check.noise_ratio, check.expected_noise_ratio
    if measured is None:
        return None
    up = expected > 1.0 if expected is not None else sharper
    if up and measured < 1.0 - NOISE_DIRECTION_MARGIN:
        return ("the result is smoother than its input although the target kernel is "
                "sharper: check the kernel names")
    if not up and measured > 1.0 + NOISE_DIRECTION_MARGIN:
        return ("the result is noisier than its input although the target kernel is "
                "softer: check the kernel names")
    return None


def convert_series(
    series: Series,
    source_domain: str,
    engine: Engine,
    out: Path,
    options: ConvertOptions,
    on_images: Callable[[int], None] = lambda n: None,
) -> SeriesResult:
    """Convert one series into OUT/<study>/<target>_<source series UID>/, all or nothing.

    Frames go through the engine and the HU check ``options.batch_size`` at a time, whatever
    the files hold (an Enhanced CT file of 600 frames is converted in batches), so memory
    beyond the file being converted is bounded by the batch. Each derived file is decoded
    again before it is written and compared with the conversion (:func:`verify_encoding`).
    """
    target = options.target_domain or options.target
    label = options.target
    start = time.perf_counter()
    sharp = engine.domain_sharpness
    derivation = Derivation(
        source_kernel=options.source_override or series.kernel or source_domain,
        target_kernel=label, method=engine.description, method_id=engine.method_id,
        smoothing=sharp.get(target, 0.0) < sharp.get(source_domain, 0.0),
        series_number_offset=options.series_number_offset,
        source_domain=source_domain, target_domain=target,
        table_digest=engine.kernel_table.digest(source_domain, target),
    )
    new_series_uid = derived_uid("series", series.series_uid, derivation.key)
    final = output_dir(out, series, label)
    result = SeriesResult(
        folder=series.folder, series_uid=series.series_uid, series_number=series.series_number,
        source_kernel=derivation.source_kernel, target_kernel=label,
        images=series.n_images, status="converted", output=str(final), warnings=list(series.warnings),
        source_domain=source_domain, target_domain=target,
    )
    if not is_within(final, out):
        raise OutputError(f"{series.label()}: output path escapes {out}")
    names = file_names([s.path for s in series.slices])
    merge = options.merge
    if final.is_dir():
        present, other = _existing_conversion(final, derivation.key)
        if other is not None:
            if not options.overwrite:
                raise OutputExistsError(f"its output folder already holds {other}: not "
                                        "replaced (use --overwrite to replace it, or another "
                                        "output folder)")
            merge = False  # replace the other conversion whole, never mix the two
        elif set(names) <= present and not options.overwrite:
            result.status, result.reason = "skipped", \
                "output exists, same conversion (use --overwrite to redo)"
            return result
    tmp = final.parent / (TMP_PREFIX + final.name)
    _remove_tree(tmp)
    tmp.mkdir(parents=True)
    check = HuCheck(max_bias=options.max_bias,
                    expected_noise_ratio=engine.kernel_table.expected_noise_ratio(
                        source_domain, target, highpass_sigma_mm=LOWPASS_SIGMA_MM))
    middle = series.n_images // 2
    batch_size = max(1, options.batch_size)
    try:
        with ThreadPoolExecutor(options.read_workers, "kc-read") as readers, \
                ThreadPoolExecutor(options.write_workers, "kc-write") as writers:
            writes: list[Future[None]] = []
            #: the batch: (image, first frame, end frame) pieces, batch_size frames in all
            pending: list[tuple[LoadedImage, int, int]] = []

            def finish(image: LoadedImage) -> None:
                conv = image.converted
                assert conv is not None
                if options.keep_preview and image.offset <= middle < image.offset + image.frames:
                    i = middle - image.offset
                    result.preview = (image.hu[i].copy(), conv[i].copy())
                derived = build_derived(image.ds, conv, image.stored, derivation,
                                        new_series_uid)
                verify_encoding(derived, conv, image.stored)
                writes.append(writers.submit(_write, derived, tmp / image.name))
                on_images(image.frames)

            def flush() -> None:
                keys = [img.engine_key for img, _, _ in pending]
                for key in dict.fromkeys(keys):  # one engine call per matrix size and spacing
                    pieces = [p for p, k in zip(pending, keys, strict=True) if k == key]
                    stack = np.concatenate([img.hu[a:b] for img, a, b in pieces])
                    conv = engine.convert(stack, source_domain, target, pixel_mm=key[1])
                    k = 0
                    for img, a, b in pieces:
                        assert img.converted is not None
                        img.converted[a:b] = conv[k:k + b - a]
                        check.add(np.clip(img.hu[a:b], HU_MIN, HU_MAX), conv[k:k + b - a],
                                  key[1])
                        k += b - a
                for img, _, b in pending:
                    if b == img.frames:  # its last piece: the whole file is converted
                        finish(img)
                pending.clear()
                for f in [w for w in writes if w.done()]:
                    f.result()  # surface write errors early
                    writes.remove(f)

            # multi-frame files are large: keep one in hand and one being read
            depth = 2 if series.multiframe else max(2, batch_size * 2)
            loaded = _prefetch(readers, _load, [s.path for s in series.slices], depth)
            offset = 0
            for image, name in zip(loaded, names, strict=True):
                image.name, image.offset = name, offset
                offset += image.frames
                image.converted = np.empty(image.hu.shape, dtype=np.float32)
                first = 0
                while first < image.frames:
                    n = min(image.frames - first, batch_size - sum(b - a for _, a, b in pending))
                    pending.append((image, first, first + n))
                    first += n
                    if sum(b - a for _, a, b in pending) >= batch_size:
                        flush()
            if pending:
                flush()
            for f in writes:
                f.result()
        result.hu_check = check.to_json()
        warning = _noise_direction_warning(check, sharp.get(target, 0.0) >
                                           sharp.get(source_domain, 0.0))
        if warning:
            result.warnings.append(warning)
        if not check.passed:  # nothing of a refused series is installed
            raise HuCheckError(check.reason(), result.hu_check)
        _install(tmp, final, merge)
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
    (NoSeriesError, exit 4) and when the run is interrupted (Ctrl-C: the series in progress is
    recorded as failed, "interrupted"), so the reasons are on record.
    """
    start = time.perf_counter()
    if not input_path.exists():
        raise InputError(f"{input_path}: no such file or directory")
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out}: exists and is not a folder")
    if input_path.resolve() == out.resolve():
        raise OutputError(f"{out}: the output folder must differ from the input folder")
    table = KernelAliases.for_domains(domains, options.kernel_map)
    resolve_kernels(options, table, owner)
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
    engine = _LazyEngine(engine_factory, report)
    try:
        for p in plans:
            report.results.append(_run_planned(p, out, options, engine, report, progress))
    except KeyboardInterrupt:
        report.seconds = time.perf_counter() - start
        if report_path is not None and not options.dry_run:
            with contextlib.suppress(KernelconvError):
                write_report(report, report_path)
        raise
    report.seconds = time.perf_counter() - start
    if report_path is not None and not options.dry_run:
        write_report(report, report_path)
    return report


def _run_planned(p: Planned, out: Path, options: ConvertOptions, lazy: _LazyEngine,
                 report: RunReport, progress: Any) -> SeriesResult:
    """Carry out one series' plan; its line of the report. On Ctrl-C the series is recorded
    in ``report`` as failed ("interrupted") before the interrupt goes on."""
    s = p.series
    base = SeriesResult(
        folder=s.folder, series_uid=s.series_uid, series_number=s.series_number,
        source_kernel=options.source_override or s.kernel, target_kernel=options.target,
        images=s.n_images, status=p.status, reason=p.reason, warnings=list(s.warnings),
        source_domain=p.source_domain, target_domain=options.target_domain,
    )
    if p.status != "convert" or options.dry_run:
        if p.status == "convert":
            base.status = "planned"
            base.output = str(output_dir(out, s, options.target))
        return base
    engine = lazy.get()
    if not out.exists():
        try:
            out.mkdir(parents=True)
        except OSError as exc:
            raise OutputError(f"{out}: cannot create output folder ({exc.strerror})") from None
    token = progress.start(s.label(), s.n_images) if progress else None

    def on_images(n: int) -> None:
        if progress:
            progress.advance(token, n)

    try:
        assert p.source_domain is not None
        return convert_series(s, p.source_domain, engine, out, options, on_images)
    except KeyboardInterrupt:
        base.status, base.reason = "failed", "interrupted"
        report.results.append(base)
        raise
    except HuCheckError as exc:
        base.status, base.reason, base.hu_check = "failed", str(exc), exc.check
    except KernelconvError as exc:
        base.status, base.reason = "failed", str(exc)
    except OSError as exc:
        base.status, base.reason = "failed", f"write error: {exc.strerror} ({exc.filename})"
    except Exception as exc:  # noqa: BLE001 - one bad series must not stop the run
        base.status = "failed"
        base.reason = f"unexpected error ({type(exc).__name__}: {exc}); please report it"
    finally:
        if progress:
            progress.finish(token)
    return base


class _LazyEngine:
    """The run's engine, built on first use (a run whose series are all skipped never loads
    a model); its description goes into the report."""

    def __init__(self, factory: Callable[[], Engine], report: RunReport) -> None:
        self.factory, self.report = factory, report
        self.engine: Engine | None = None

    def get(self) -> Engine:
        if self.engine is None:
            self.engine = self.factory()
            self.report.method = self.engine.description
        return self.engine


def default_report_path(out: Path, rank: int = 0, world_size: int = 1) -> Path:
    """OUT/kernelconv-report.json; one file per rank in a multi-process run."""
    return out / (REPORT_NAME if world_size == 1 else f"kernelconv-report.rank{rank}.json")


def write_report(report: RunReport, path: Path) -> None:
    """Write the run's JSON report; OutputError (exit 5) naming the path when it cannot."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(report.to_json(), indent=2) + "\n")
    except OSError as exc:
        raise OutputError(f"{path}: cannot write the report ({exc.strerror})") from None
