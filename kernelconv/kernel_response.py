"""The kernel response table: how each reconstruction kernel filters the image.

Not to be confused with the kernel *aliases* of :mod:`kernelconv.kernels` (which header names
mean which model domain): this table says what a kernel DOES, as an apodisation window in
physical frequency. The simulator reconstructs with it, the classical filter engine divides
its windows, `qa` checks measurements against its targets and `export` records its
sharpness ranks; it lives below all of them.

Each kernel is an apodisation window W(f) multiplying the ramp filter |f| of FBP:

    W(f) = (1 + bump_gain * exp(-((f - bump_center) / bump_width)^2))
           * ((1 - floor) / (1 + (f / cutoff)^(2 * order)) + floor)

with f in line pairs per cm (lp/cm). A Butterworth low-pass sets the resolution; the Gaussian
bump gives the mid-frequency boost of edge-enhancing kernels (MTF peak > 1).

Source of the numbers: the project's kernel specification (shared notes, "Kernel response
targets": MTF50, MTF10, MTF peak and noise relative to B30f, approximating published Siemens
body kernels; no vendor table was available). The window parameters below were fitted so that
the window times this scanner's detector aperture and focal-spot response meets those targets
(`python scripts/fit_kernel_windows.py` reruns the fit); `kernelconv qa` then MEASURES the
reconstructed images and tests/test_sim.py asserts every kernel lands inside the spec.

Users add kernels with a JSON file (`--kernel-table FILE` of `simulate` and `qa`), a list
of objects with the fields of :class:`KernelResponse`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import numpy as np

from kernelconv.errors import UsageError
from kernelconv.vendor_kernels import VENDOR_KERNELS
from kernelconv.vendor_kernels import WINDOWS as VENDOR_WINDOWS
from kernelconv.vendor_kernels import targets as vendor_targets

#: the pixel spacing the kernel specification is stated at (350 mm field of view on 512 x 512),
#: and the spacing assumed when a header gives none
REFERENCE_PIXEL_MM = 350.0 / 512.0


@dataclass(frozen=True)
class KernelResponse:
    """One reconstruction kernel: its window parameters and its specification targets."""

    name: str
    cutoff: float  # Butterworth cutoff, lp/cm
    order: float  # Butterworth order
    bump_gain: float = 0.0
    bump_center: float = 0.0  # lp/cm
    bump_width: float = 1.0  # lp/cm
    floor: float = 0.0
    sharpness: float = 0.0  # rank for labels/derivation codes (higher = sharper)
    # specification targets (None: not specified); checked by `kernelconv qa`
    mtf50: tuple[float, float] | None = None  # (target, tolerance) lp/cm
    mtf10: tuple[float, float] | None = None
    peak: tuple[float, float] | None = None  # (min, max) of max MTF
    noise_ratio: tuple[float, float] | None = None  # (min, max) SD relative to noise_reference
    source: str = ""
    #: the kernel ``noise_ratio`` is relative to (the same raw data reconstructed with it)
    noise_reference: str = "B30f"
    #: relative uncertainty of this response as a description of the real kernel (0: exact,
    #: as the project's spec is for the simulator; vendor estimates carry theirs)
    uncertainty: float = 0.0
    #: a measured window instead of the formula: ((f lp/cm, W), ...) with f increasing from 0,
    #: linear between the points and held at the last value beyond them (`kernelconv
    #: calibrate` writes these; the parametric fields then only describe it roughly)
    tabulated: tuple[tuple[float, float], ...] | None = None

    def window(self, f_lpcm: np.ndarray) -> np.ndarray:
        """W(f) for spatial frequencies in lp/cm (any shape), normalised to W(0) = 1."""
        f = np.abs(np.asarray(f_lpcm, dtype=np.float64))
        if self.tabulated:
            pts = np.asarray(self.tabulated, dtype=np.float64)
            return np.interp(f, pts[:, 0], pts[:, 1] / pts[0, 1])
        return self._raw(f) / self._raw(np.zeros(1))[0]

    def _raw(self, f: np.ndarray) -> np.ndarray:
        lowpass = (1.0 - self.floor) / (1.0 + (f / self.cutoff) ** (2.0 * self.order)) + self.floor
        bump = 1.0 + self.bump_gain * np.exp(-(((f - self.bump_center) / self.bump_width) ** 2))
        return lowpass * bump


_SPEC = "project kernel spec (shared/notes/kernel-physics.md), fitted window"

BUILTIN_RESPONSES: tuple[KernelResponse, ...] = (
    KernelResponse("B30f", cutoff=3.8, order=2.0, sharpness=30,
               mtf50=(3.5, 0.3), mtf10=(6.0, 0.4), peak=(0.0, 1.02), noise_ratio=(1.0, 1.0),
               source=_SPEC),
    KernelResponse("B50f", cutoff=5.887, order=1.7281, bump_gain=0.3016, bump_center=3.9802,
               bump_width=2.0031, floor=0.0, sharpness=50,
               mtf50=(5.3, 0.3), mtf10=(8.3, 0.5), peak=(0.0, 1.05), noise_ratio=(2.0, 3.5),
               source=_SPEC),
    KernelResponse("B70f", cutoff=10.2858, order=1.0, bump_gain=1.3982, bump_center=5.4818,
               bump_width=2.2597, floor=0.0267, sharpness=70,
               mtf50=(7.6, 0.4), mtf10=(11.0, 0.6), peak=(1.2, 1.5), noise_ratio=(5.0, 9.0),
               source=_SPEC),
)


def _tuple(v: object) -> tuple[float, float] | None:
    if v is None:
        return None
    pair = list(v)  # type: ignore[call-overload]
    if len(pair) != 2:
        raise ValueError(f"expected [value, tolerance] or [min, max], got {v!r}")
    return float(pair[0]), float(pair[1])


def _tabulated(v: object) -> tuple[tuple[float, float], ...] | None:
    if v is None:
        return None
    try:
        pts = tuple((float(f), float(w)) for f, w in v)  # type: ignore[attr-defined]
    except (TypeError, ValueError):
        raise ValueError(f"tabulated: expected [[f, W], ...], got {str(v)[:60]!r}") from None
    freqs = [f for f, _ in pts]
    if len(pts) < 2 or any(b <= a for a, b in zip(freqs, freqs[1:], strict=False)):
        raise ValueError("tabulated: at least two points with increasing f")
    return pts


#: kernel name -> its response
ResponseTable = dict[str, KernelResponse]


def responses_from_json(items: object) -> ResponseTable:
    """Kernel responses from their JSON form (a list of objects with the fields of
    :class:`KernelResponse`); ValueError naming the problem."""
    if not isinstance(items, list):
        raise ValueError("expected a JSON list of kernels")
    names = {f.name for f in fields(KernelResponse)}
    table: ResponseTable = {}
    for raw in items:
        if not isinstance(raw, dict):
            raise ValueError("each kernel is a JSON object")
        item = dict(raw)
        unknown = set(item) - names
        if unknown:
            raise ValueError(f"unknown field(s) {', '.join(sorted(unknown))}")
        try:
            for key in ("mtf50", "mtf10", "peak", "noise_ratio"):
                item[key] = _tuple(item.get(key))
            item["tabulated"] = _tabulated(item.get("tabulated"))
            spec = KernelResponse(**item)
        except TypeError as exc:
            raise ValueError(str(exc)) from None
        if spec.cutoff <= 0 or spec.order <= 0 or spec.bump_width <= 0:
            raise ValueError(f"{spec.name}: cutoff, order and bump_width must be > 0")
        if spec.tabulated and (spec.tabulated[0][0] != 0.0 or spec.tabulated[0][1] <= 0):
            raise ValueError(f"{spec.name}: a tabulated window starts at f = 0 with W > 0")
        table[spec.name] = spec
    return table


def vendor_responses() -> tuple[KernelResponse, ...]:
    """The vendor kernels of :mod:`kernelconv.vendor_kernels` as kernel responses (window,
    sharpness rank, uncertainty, source)."""
    out = []
    for k in VENDOR_KERNELS:
        cutoff, order = VENDOR_WINDOWS[k.name]
        t50, t10 = vendor_targets(k)
        tol50, tol10 = k.uncertainty * t50, k.uncertainty * t10
        out.append(KernelResponse(
            k.name, cutoff=cutoff, order=order, sharpness=float(k.siemens_number),
            mtf50=(round(t50, 3), round(tol50, 3)), mtf10=(round(t10, 3), round(tol10, 3)),
            uncertainty=k.uncertainty,
            source=f"{k.vendor} {k.use} kernel: {k.basis}; window fitted to MTF50 {t50:.2f} / "
                   f"MTF10 {t10:.2f} lp/cm (kernelconv/vendor_kernels.py)"))
    return tuple(out)


_FULL_TABLE: ResponseTable = {}


def _builtin() -> ResponseTable:
    if not _FULL_TABLE:
        _FULL_TABLE.update({k.name: k for k in BUILTIN_RESPONSES})
        for k in vendor_responses():
            _FULL_TABLE.setdefault(k.name, k)
    return _FULL_TABLE


def builtin_table() -> ResponseTable:
    """The built-in kernels: the project's spec kernels (B30f, B50f, B70f) and the vendor
    kernels of :mod:`kernelconv.vendor_kernels` (estimates with their uncertainty). A copy."""
    return dict(_builtin())


def load_response_table(path: Path | None = None) -> ResponseTable:
    """The built-in kernels (:func:`builtin_table`) plus (overriding by name) those in a JSON
    file: a list of kernels,
    or an object whose "kernels" is that list (what `kernelconv calibrate` writes)."""
    table = builtin_table()
    if path is None:
        return table
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(data, dict) and "kernels" in data:  # a `kernelconv calibrate` table
            data = data["kernels"]
        table.update(responses_from_json(data))
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path}: invalid kernel table ({exc})") from None
    return table


#: (source, target) -> fitted transfer points [[f lp/cm, H], ...] (from `calibrate`)
TransferTable = dict[tuple[str, str], np.ndarray]


def load_transfers(path: Path | None) -> TransferTable:
    """The fitted transfers of a `kernelconv calibrate` table (empty for a plain kernel list
    or no file); UsageError naming the file when they are malformed."""
    if path is None:
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return transfers_from_json(data.get("transfers", []) if isinstance(data, dict) else [])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UsageError(f"{path}: invalid kernel table ({exc})") from None


def transfers_from_json(items: object) -> TransferTable:
    """Fitted transfers from their JSON list (a calibrate table's "transfers", a model file's
    "kernel_transfers"): [{"source", "target", "points": [[0, H0], [f, H], ...]}, ...].
    ValueError (or KeyError/TypeError) when malformed."""
    out: TransferTable = {}
    for item in items if isinstance(items, list) else []:
        pts = np.asarray(item["points"], dtype=np.float64)
        if pts.ndim != 2 or pts.shape[1] != 2 or len(pts) < 2 or pts[0, 0] != 0.0 \
                or np.any(np.diff(pts[:, 0]) <= 0):
            raise ValueError(f"transfer {item.get('source')} -> {item.get('target')}: "
                             "points must be [[0, H0], [f, H], ...] with f increasing")
        out[(str(item["source"]), str(item["target"]))] = pts
    return out


def transfers_to_json(transfers: TransferTable) -> list[dict[str, object]]:
    """:func:`transfers_from_json`'s inverse."""
    return [{"source": s, "target": t, "points": np.asarray(p, dtype=np.float64).tolist()}
            for (s, t), p in sorted(transfers.items())]


def responses_to_json(table: ResponseTable) -> list[dict[str, object]]:
    return [asdict(k) for k in table.values()]


def response_table_json(table: ResponseTable) -> str:
    return json.dumps([asdict(k) for k in table.values()], indent=2)


def sharpness_of(kernel: str, known: Mapping[str, float] | None = None,
                 table: ResponseTable | None = None) -> float | None:
    """A kernel's sharpness rank (higher is sharper): from ``known`` (a model's metadata),
    else the response table's, else None. The one place sharpness ranks come from."""
    if known and kernel in known:
        return float(known[kernel])
    spec = (table if table is not None else _builtin()).get(kernel)
    return float(spec.sharpness) if spec is not None else None


def domain_sharpness(domains: Iterable[str], known: Mapping[str, float] | None = None,
                     table: ResponseTable | None = None) -> dict[str, float]:
    """Sharpness rank per domain; a domain with no known rank gets its label index (a model's
    label order is soft to sharp by convention)."""
    ranks = {}
    for i, d in enumerate(domains):
        rank = sharpness_of(d, known, table)
        ranks[d] = float(i) if rank is None else rank
    return ranks




#: Nyquist frequency (lp/cm) of the projection sampling at the isocentre: the quarter-offset
#: channel pitch of 0.3525 mm of a Siemens Definition-class scanner (and of the simulator).
#: Noise is white per detector sample, so every frequency up to this one reaches the image
#: (aliased above the image's own Nyquist frequency).
PROJECTION_NYQUIST_LPCM = 10.0 / (2.0 * 0.3525)


def _noise_weight(f: np.ndarray, highpass_sigma_mm: float | None) -> np.ndarray:
    """FBP noise variance density over radial frequency f (lp/cm) for a unit window: f^2
    (ramp squared over the backprojection's 1/f density), times (1 - Gaussian)^2 for noise
    measured after removing a Gaussian low-pass of ``highpass_sigma_mm``."""
    weight = f**2
    if highpass_sigma_mm:
        weight = weight * (1.0 - np.exp(-2.0 * (np.pi * highpass_sigma_mm * f / 10.0) ** 2)) ** 2
    return weight


def predicted_noise_ratio(source: str, target: str, table: ResponseTable | None = None,
                          highpass_sigma_mm: float | None = None) -> float | None:
    """Noise SD of ``target`` over that of ``source`` for the same raw data, from the windows.

    FBP noise power at radial frequency f goes as f W(f)^2 (ramp squared over the
    backprojection's 1/f density), so the variance goes as the integral of f^2 W(f)^2 up to
    the projection sampling's Nyquist frequency (the detector blurs the signal, not the
    per-sample noise). With ``highpass_sigma_mm`` the integrand is weighted by
    (1 - Gaussian)^2, as for noise measured after removing a Gaussian low-pass of that sigma.
    On the simulator this predicts B70f/B30f 6.07 and B50f/B30f 2.26, `qa` measures 6.02 and
    2.25. None when a kernel is not in the table.
    """
    tab = table if table is not None else _builtin()
    if source not in tab or target not in tab:
        return None
    f = np.linspace(0.0, PROJECTION_NYQUIST_LPCM, 4096)
    weight = _noise_weight(f, highpass_sigma_mm)

    def variance(name: str) -> float:
        w = tab[name].window(f)
        return float(np.trapezoid(weight * w * w, f))

    return float(np.sqrt(variance(target) / variance(source)))


def allowed_noise_ratio(source: str, target: str, table: ResponseTable | None = None
                        ) -> float | None:
    """The most noise amplification a conversion from ``source`` to ``target`` may bring: the
    ratio the windows predict (:func:`predicted_noise_ratio`), lowered by the kernels'
    combined ``uncertainty`` u (root sum of squares) to one SD below it, ratio x exp(-u), so
    that an uncertain description errs towards less noise, but never below 1 when the ratio
    is above 1: a conversion to a sharper kernel may keep the input's noise, it must not
    remove it (GE STANDARD -> BONE, estimates +-30 % each: 1.27 lowered to 0.84, and the
    filter came out smoother than its input). None when a kernel is not in the table."""
    tab = table if table is not None else _builtin()
    ratio = predicted_noise_ratio(source, target, tab)
    if ratio is None:
        return None
    u = float(np.hypot(tab[source].uncertainty, tab[target].uncertainty))
    lowered = ratio * float(np.exp(-u))  # one SD below, for a log-normal uncertainty u
    return max(lowered, 1.0) if ratio > 1.0 else lowered


def _measured_noise(spec: KernelResponse) -> float | None:
    """A calibrated kernel's measured noise SD relative to its ``noise_reference`` (the middle
    of its range); None for kernels whose noise figures are a specification, not a
    measurement (the window predicts those better: :func:`predicted_noise_ratio`)."""
    if not spec.tabulated or spec.noise_ratio is None:
        return None
    lo, hi = spec.noise_ratio
    return 0.5 * (lo + hi) if lo > 0 and hi > 0 else None


@dataclass(frozen=True)
class KernelTable:
    """The kernel responses one conversion runs on, with a site calibration's fitted
    transfers: the one owner of "which kernel table applies to this conversion".

    The engine converts with it (the filter, a filter_residual model's base filter) and the
    pipeline's HU check takes its expected noise ratio from the same object, so a
    ``--kernel-table`` site calibration or the responses stored in a model file mean the same
    to both. ``label`` names it in messages and method ids ("built-in", a file's stem and
    hash, a model's id); :meth:`digest` enters the derived UIDs, so output converted with
    another table never shares a UID.
    """

    responses: ResponseTable
    transfers: TransferTable = field(default_factory=dict)
    label: str = "built-in"
    #: whether the windows describe the kernels themselves (the built-in table, a site's
    #: calibration) or only their ratios (windows a model learnt from an identity start):
    #: a series' fingerprint is checked against a describing table only
    descriptive: bool = True

    @classmethod
    def builtin(cls) -> KernelTable:
        return cls(builtin_table())

    @classmethod
    def load(cls, path: Path | None) -> KernelTable:
        """The built-in kernels plus a JSON kernel table (and its fitted transfers, from
        `kernelconv calibrate`); labelled by the file's stem and an 8-digit hash of its
        content. UsageError naming the file when it is invalid."""
        if path is None:
            return cls.builtin()
        import hashlib

        try:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()[:8]
        except OSError as exc:
            raise UsageError(f"{path}: cannot read kernel table ({exc.strerror})") from None
        return cls(load_response_table(path), load_transfers(path), f"{path.stem}-{digest}")

    def subset(self, kernels: Iterable[str], transfers: bool = True) -> KernelTable:
        """This table restricted to ``kernels`` (those it has): their responses and the fitted
        transfers between two of them (none where ``transfers`` is False, the windows alone);
        label and descriptiveness kept. A filter_residual model's base filter runs on its
        domains' subset."""
        keep = [k for k in kernels if k in self.responses]
        return replace(self, responses={k: self.responses[k] for k in keep},
                       transfers={pair: h for pair, h in self.transfers.items()
                                  if transfers and pair[0] in keep and pair[1] in keep})

    def __contains__(self, kernel: object) -> bool:
        return kernel in self.responses

    def expected_noise_ratio(self, source: str, target: str,
                             highpass_sigma_mm: float | None = None) -> float | None:
        """Noise SD of ``target`` over ``source`` for the same raw data, as this table knows
        the two kernels: measured by a calibration where both kernels were calibrated against
        the same reference, else through the fitted transfer or the windows with the FBP
        noise model (:func:`predicted_noise_ratio`). None when a kernel is unknown."""
        if source == target:
            return 1.0
        src, dst = self.responses.get(source), self.responses.get(target)
        if src is None or dst is None:
            return None
        ms, mt = _measured_noise(src), _measured_noise(dst)
        if ms is not None and mt is not None and src.noise_reference == dst.noise_reference:
            return mt / ms
        fitted = self.transfers.get((source, target))
        if fitted is None:
            return predicted_noise_ratio(source, target, self.responses, highpass_sigma_mm)
        f = np.linspace(0.0, PROJECTION_NYQUIST_LPCM, 4096)
        h = np.interp(f, fitted[:, 0], fitted[:, 1])
        weight = _noise_weight(f, highpass_sigma_mm) * src.window(f) ** 2
        return float(np.sqrt(np.trapezoid(weight * h * h, f) / np.trapezoid(weight, f)))

    def allowed_noise_ratio(self, source: str, target: str) -> float | None:
        """:func:`allowed_noise_ratio` on this table."""
        return allowed_noise_ratio(source, target, self.responses)

    def digest(self, source: str, target: str) -> str:
        """A 16-digit hash of everything this table says about converting ``source`` to
        ``target`` (both responses and a fitted transfer): it changes whenever the pixels a
        table-driven conversion writes could."""
        import hashlib

        parts = [json.dumps(asdict(self.responses[k]), sort_keys=True) if k in self.responses
                 else f"unknown:{k}" for k in (source, target)]
        fitted = self.transfers.get((source, target))
        if fitted is not None:
            parts.append(np.asarray(fitted, dtype=np.float64).tobytes().hex())
        return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


#: frequencies (lp/cm) on which image MTFs are evaluated: up to the simulated detector's band
#: limit
MTF_FREQ_LPCM = np.linspace(0.0, 14.18, 3000)


def reference_system_mtf(f_lpcm: np.ndarray) -> np.ndarray:
    """Everything between object and kernel on the reference (simulated) scanner: detector
    aperture (0.6 mm box), focal spot (0.32 mm FWHM) and the phantom's fine-pixel box
    (0.342 mm). Image MTF = this x the kernel window; `qa` measures what the simulator makes."""
    f = np.asarray(f_lpcm, dtype=np.float64)
    return (np.sinc(f * 0.06) * np.exp(-2 * (np.pi * f * 0.032 / 2.3548) ** 2)
            * np.sinc(f * 0.0342))


def mtf_crossing(f: np.ndarray, mtf: np.ndarray, level: float) -> float:
    """First frequency where ``mtf`` (normalised to its f = 0 value) falls below ``level``
    (linear between samples; the last frequency when it never does)."""
    m = mtf / mtf[0]
    i = int(np.argmax(m < level))
    if i == 0:
        return float(f[-1])
    return float(np.interp(level, [m[i], m[i - 1]], [f[i], f[i - 1]]))


def mtf_figures(spec: KernelResponse) -> tuple[float, float, float]:
    """(MTF50, MTF10 in lp/cm, MTF peak) of ``spec``'s window on the reference scanner."""
    m = spec.window(MTF_FREQ_LPCM) * reference_system_mtf(MTF_FREQ_LPCM)
    return (mtf_crossing(MTF_FREQ_LPCM, m, 0.5), mtf_crossing(MTF_FREQ_LPCM, m, 0.1),
            float((m / m[0]).max()))
