"""read -> infer -> write, with decoding and encoding overlapped with compute.

``convert`` (folders) uses :func:`run_convert`; the PACS listener will call
:func:`convert_series` on the series it has spooled. Each series is written into a hidden
temporary folder next to its final place and renamed into place only when every image has been
written, so an interrupted or failed series leaves no partial output, and an existing output
series is complete by construction (a rerun skips it unless ``overwrite``).
"""

from __future__ import annotations

import contextlib
import dataclasses
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
from kernelconv.dicom.dataset import (
    decode_hu,
    frame_rescales,
    read_dataset,
    read_file,
    resolve_pixel_spacing,
)
from kernelconv.dicom.derived import (
    Derivation,
    build_derived,
    derivation_of,
    derived_uid,
    verify_encoding,
)
from kernelconv.dicom.discovery import Discovery, Series, discover
from kernelconv.dicom.paths import file_names, is_within, series_dir
from kernelconv.engines import Engine, describe_direction, direction_method_id
from kernelconv.errors import (
    InputError,
    KernelconvError,
    KernelError,
    OutputError,
    SeriesError,
    UsageError,
)
from kernelconv.fileio import atomic_path, atomic_write_text
from kernelconv.fingerprint import MAX_SLICES, Fingerprint, check_claim, reconstruction_notes
from kernelconv.fingerprint import estimate as estimate_fingerprint
from kernelconv.hu import HU_MAX, HU_MIN
from kernelconv.hu_check import DEFAULT_MAX_BIAS_HU, LOWPASS_SIGMA_MM, HuCheck
from kernelconv.kernel_response import KernelTable
from kernelconv.kernels import KernelAliases

TMP_PREFIX = ".kernelconv-tmp-"
#: what --kernel-check may say (ConvertOptions.kernel_check)
KERNEL_CHECKS = ("refuse", "warn", "off")
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
    #: the source kernel's fingerprint (its response estimated from the images) against the
    #: header's claim: "refuse" a series whose images contradict its kernel name, "warn", or
    #: "off" (no fingerprint, unknown kernels fail as before)
    kernel_check: str = "refuse"


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
    #: the source kernel's response estimated from the images (kernelconv.fingerprint),
    #: with the check of the header's claim
    fingerprint: dict[str, Any] | None = None
    #: what converted this series where it differs from the run's method (a model that runs
    #: its filter in this direction); empty otherwise
    method: str = ""
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
    source_domain: str | None  # None with "convert": the kernel is estimated from the images
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
    estimating = options.kernel_check != "off"
    if not kernel:
        if estimating:
            return Planned(series, None, "convert", "no ConvolutionKernel in the header: its "
                           "response is estimated from the images")
        return Planned(series, None, "failed",
                       "no ConvolutionKernel in the header; give the source kernel with --from")
    try:
        domain = table.resolve(kernel)
    except SeriesError as exc:
        if estimating:
            return Planned(series, None, "convert", f"kernel {kernel.strip()} is not in the "
                           "kernel table: its response is estimated from the images")
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


class KernelClaimError(SeriesError):
    """The images contradict the series' kernel name (its fingerprint is another kernel's),
    and the conversion would rest on that name."""

    def __init__(self, message: str, fingerprint: dict[str, Any]) -> None:
        super().__init__(message)
        self.fingerprint = fingerprint


def fingerprint_series(series: Series, kernel: str | None) -> Fingerprint:
    """The source kernel's response estimated from up to ``MAX_SLICES`` slices (frames)
    spread over the series (:mod:`kernelconv.fingerprint`), with the headers' evidence of an
    iterative or deep-learning reconstruction (which makes it not valid)."""
    paths = [s.path for s in series.slices]
    if len(paths) > MAX_SLICES:
        paths = [paths[int(i)] for i in np.linspace(0, len(paths) - 1, MAX_SLICES)]
    images = [_load(p) for p in paths]
    first = images[0]
    frames = [f for im in images if im.engine_key == first.engine_key for f in im.hu]
    # identical slices (copies) carry no more information; counted twice they would make
    # the bootstrap's spread, and the uncertainty, too small
    unique = {f.tobytes(): f for f in frames}
    stack = np.stack(list(unique.values()))
    if len(stack) > MAX_SLICES:
        stack = stack[np.linspace(0, len(stack) - 1, MAX_SLICES).astype(int)]
    step = abs(frame_rescales(first.ds)[0][0])
    fp = estimate_fingerprint(stack, first.pixel_mm, kernel or "unnamed", hu_step=step)
    notes = reconstruction_notes(first.ds, kernel)
    if notes:
        fp = dataclasses.replace(fp, notes=notes, reason=fp.reason or (
            f"the headers say iterative or deep-learning reconstruction ({notes[0]}): its "
            "noise does not show its kernel"))
    return fp


def _sharpness(engine: Engine, kernel: str) -> float:
    """A kernel's sharpness rank for the derivation code: the engine's, else its table's."""
    if kernel in engine.domain_sharpness:
        return engine.domain_sharpness[kernel]
    spec = engine.kernel_table.responses.get(kernel)
    return float(spec.sharpness) if spec is not None else 0.0


def convert_series(
    series: Series,
    source_domain: str | None,
    engine: Engine,
    out: Path,
    options: ConvertOptions,
    on_images: Callable[[int], None] = lambda n: None,
) -> SeriesResult:
    """Convert one series into OUT/<study>/<target>_<source series UID>/, all or nothing.

    The source kernel's response is estimated from the images (its fingerprint) unless
    ``options.kernel_check`` is "off": a kernel the table does not know
    (``source_domain`` None) is converted on that estimate, marked as such in the report and
    the DerivationDescription; a known kernel whose images contradict its name is refused
    (or, with "warn", converted with a warning). Frames go through the engine and the HU
    check ``options.batch_size`` at a time, whatever the files hold (an Enhanced CT file of
    600 frames is converted in batches), so memory beyond the file being converted is bounded
    by the batch. Each derived file is decoded again before it is written and compared with
    the conversion (:func:`verify_encoding`).
    """
    target = options.target_domain or options.target
    label = options.target
    start = time.perf_counter()
    kernel = options.source_override or series.kernel
    fp: Fingerprint | None = None
    note = ""
    if source_domain is None:  # not in the table: convert on the response of the images
        fp = fingerprint_series(series, kernel)
        if not fp.valid or fp.response is None:
            raise SeriesError(
                f"kernel {kernel or '(none in the header)'} is not in the kernel table and its "
                f"response cannot be estimated from the images: {fp.reason}; name it with "
                "--kernel-map or --kernel-table, or give --from")
        source_domain = f"{kernel or 'unnamed'} (estimated)"
        engine.add_kernel(dataclasses.replace(fp.response, name=source_domain))
        note = (f"; the source kernel's response was estimated from the images (MTF50 "
                f"{fp.mtf50:.1f} lp/cm, uncertainty {fp.uncertainty:.0%})")
    method = describe_direction(engine, source_domain, target)
    derivation = Derivation(
        source_kernel=kernel or "unnamed",
        target_kernel=label, method=method + note,
        method_id=direction_method_id(engine, source_domain, target),
        smoothing=_sharpness(engine, target) < _sharpness(engine, source_domain),
        series_number_offset=options.series_number_offset,
        source_domain=source_domain, target_domain=target,
        table_digest=engine.kernel_table.digest(source_domain, target),
    )
    new_series_uid = derived_uid("series", series.series_uid, derivation.key)
    final = output_dir(out, series, label)
    result = SeriesResult(
        folder=series.folder, series_uid=series.series_uid, series_number=series.series_number,
        source_kernel=kernel, target_kernel=label,
        images=series.n_images, status="converted", output=str(final), warnings=list(series.warnings),
        source_domain=source_domain, target_domain=target,
    )
    result.method = _series_method(method, engine)
    if fp is not None:
        result.warnings.append(f"kernel {kernel or '(none)'} estimated from the images: "
                               f"{fp.summary()}")
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
    claim = None
    if fp is None and options.kernel_check != "off":  # a known kernel: does it look like it?
        fp = fingerprint_series(series, kernel)
        described = engine.kernel_table if engine.kernel_table.descriptive \
            else KernelTable.builtin()
        responses = described.responses
        spec = responses.get(kernel or "") or responses.get(source_domain)
        if spec is not None:
            claim = check_claim(fp, kernel or source_domain, spec)
        if claim and options.kernel_check == "refuse":
            raise KernelClaimError(f"{claim}; the conversion would rest on the wrong kernel "
                                   "(check the series, give --from, or --kernel-check warn)",
                                   {**fp.to_json(), "claim": claim})
        if claim:
            result.warnings.append(claim)
    if fp is not None:
        result.fingerprint = {**fp.to_json(), "estimated_source": source_domain.endswith(
            " (estimated)"), "claim": claim or ("agrees" if fp.valid else "not checked")}
    tmp = final.parent / (TMP_PREFIX + final.name)
    _remove_tree(tmp)
    for attempt in range(3):  # another rank may remove the study folder it emptied meanwhile
        try:
            tmp.mkdir(parents=True)
            break
        except FileNotFoundError:
            if attempt == 2:
                raise
    check = HuCheck(max_bias=options.max_bias,
                    expected_noise_ratio=engine.kernel_table.expected_noise_ratio(
                        source_domain, target, highpass_sigma_mm=LOWPASS_SIGMA_MM))
    middle = series.n_images // 2
    batch_size = max(1, options.batch_size)
    try:
        with ThreadPoolExecutor(options.read_workers, "kc-read") as readers, \
                ThreadPoolExecutor(options.write_workers, "kc-write") as writers, \
                ThreadPoolExecutor(1, "kc-check") as checker:
            writes: list[Future[None]] = []
            #: the HU check of a batch runs while the next one converts (one worker: the
            #: series' sums add up in order); at most two batches wait for it
            checks: deque[Future[None]] = deque()
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
                        k += b - a
                    if len(checks) >= 2:
                        checks.popleft().result()
                    checks.append(checker.submit(check.add, np.clip(stack, HU_MIN, HU_MAX),
                                                 conv, key[1]))
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
            for f in [*checks, *writes]:
                f.result()
        result.hu_check = check.to_json()
        warning = _noise_direction_warning(check, not derivation.smoothing)
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
    plan_method: Callable[[str, str], str] | None = None,
) -> RunReport:
    """Discover, plan and convert every series under ``input_path`` into ``out``.

    ``plan_method(source, target)`` says, for a dry run (no engine built), what converts a
    direction where that is not the engine's method (a model running its filter), else "".

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
            report.results.append(_run_planned(p, out, options, engine, report, progress,
                                               plan_method))
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
                 report: RunReport, progress: Any,
                 plan_method: Callable[[str, str], str] | None = None) -> SeriesResult:
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
            if plan_method is not None and p.source_domain is not None:
                base.method = plan_method(p.source_domain,
                                          options.target_domain or options.target)
        return base
    engine = lazy.get()
    if p.source_domain is not None:
        base.method = _series_method(describe_direction(
            engine, p.source_domain, options.target_domain or options.target), engine)
    if not out.is_dir():
        try:  # exist_ok: another rank of a torchrun may create it at the same moment
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"{out}: cannot create output folder ({exc.strerror})") from None
    token = progress.start(s.label(), s.n_images) if progress else None

    def on_images(n: int) -> None:
        if progress:
            progress.advance(token, n)

    try:
        return convert_series(s, p.source_domain, engine, out, options, on_images)
    except KeyboardInterrupt:
        base.status, base.reason = "failed", "interrupted"
        report.results.append(base)
        raise
    except HuCheckError as exc:
        base.status, base.reason, base.hu_check = "failed", str(exc), exc.check
    except KernelClaimError as exc:
        base.status, base.reason, base.fingerprint = "failed", str(exc), exc.fingerprint
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


def _series_method(method: str, engine: Engine) -> str:
    """A series' report ``method``: what converted it where that is not the run's method (a
    model running its filter in this direction), else empty."""
    return "" if method == engine.description else method


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
