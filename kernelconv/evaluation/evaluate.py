"""`kernelconv evaluate`: compare converted series with reference series, slice by slice.

Pairs every predicted series with the reference series of its target kernel in the same study
and frame of reference, and its slices by position along the slice normal. Reports per
direction (source kernel -> target kernel):

- PSNR and SSIM on HU clipped to [-1024, 3071] with data range 4095 (the paper's setting),
  RMSE and MAE in HU;
- mean-HU bias (predicted - reference) in soft-tissue, fat, lung and bone regions;
- noise SD of the prediction and of the reference in soft tissue, and their ratio;
- radial noise power spectrum (NPS) of both, and its peak and mean frequency;
- LAA-950 and LAA-910 (% of lung below -950 / -910 HU) of both on the same lung mask, and the
  differences;
- the correlation of the two NPS curves (shape), and a pass/fail per direction against
  :class:`Limits` that a user can set (``kernelconv evaluate --max-bias ...``).

With ``truth`` (the simulator's truth.npz files) the regions, the lung mask and the noise
(image - truth) come from the noiseless ground truth; without it, regions come from thresholds
on the smoothed reference, the lung from a threshold segmentation, and the noise from the
residual after a 7 x 7 local mean (an approximation, flagged in the report).
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kernelconv.dicom.dataset import pixel_spacing_mm, read_hu_slices, scan_key
from kernelconv.dicom.derived import derivation_of
from kernelconv.dicom.discovery import Series, discover
from kernelconv.errors import InputError
from kernelconv.evaluation.metrics import mae, psnr, rmse, ssim
from kernelconv.hu_check import DEFAULT_MAX_BIAS_HU
from kernelconv.kernel_response import REFERENCE_PIXEL_MM
from kernelconv.kernels import first_kernel_value

ROI_NAMES = ("soft tissue", "fat", "lung", "bone")


@dataclass(frozen=True)
class Limits:
    """What a conversion must reach to pass, per direction (docs/evaluation.md gives the
    reasons for each default; they are this project's, not a clinical standard).

    - ``max_bias_hu``: |mean-HU bias| in soft tissue and fat, as the per-series HU check's
      default (kernelconv.hu_check.DEFAULT_MAX_BIAS_HU): a kernel change must not move it;
    - ``max_noise_error``: |noise SD ratio - 1|, the 20% of the unpaired-training issue;
    - ``max_laa_diff_pp``: |LAA-950 and LAA-910 difference|, percentage points; inter-kernel
      differences of LAA-950 are several points, a harmonised score should be within one;
    - ``min_nps_correlation``: correlation of the predicted and reference NPS curves (shape);
    - ``max_mtf50_error``: |MTF50 ratio - 1| where a QA phantom is measured (``qa``), the 15%
      of the unpaired-training issue.
    """

    max_bias_hu: float = DEFAULT_MAX_BIAS_HU
    max_noise_error: float = 0.2
    max_laa_diff_pp: float = 1.0
    min_nps_correlation: float = 0.9
    max_mtf50_error: float = 0.15

    def checks(self, d: dict[str, Any]) -> dict[str, dict[str, Any]]:
        """Per criterion: the measured value, the limit and whether it passed (None: not
        measurable on these images, e.g. no fat or lung)."""

        def item(value: float | None, limit: float, ok: bool | None) -> dict[str, Any]:
            bad = value is None or (isinstance(value, float) and np.isnan(value))
            return {"value": None if bad else value, "limit": limit,
                    "passed": None if bad else ok}

        out = {}
        for region in ("soft tissue", "fat"):
            b = d["bias_hu"].get(region)
            out[f"bias {region}"] = item(None if b is None else abs(b), self.max_bias_hu,
                                         b is not None and abs(b) <= self.max_bias_hu)
        err = abs(d["noise_ratio"] - 1.0)
        out["noise ratio"] = item(err, self.max_noise_error, err <= self.max_noise_error)
        for key, name in (("laa950_diff_pp", "LAA-950"), ("laa910_diff_pp", "LAA-910")):
            v = abs(d[key])
            out[name] = item(v, self.max_laa_diff_pp, v <= self.max_laa_diff_pp)
        c = d["nps_correlation"]
        out["NPS shape"] = item(c, self.min_nps_correlation,
                                      c >= self.min_nps_correlation)
        if d.get("mtf50_pred_lpcm") is not None and d.get("mtf50_ref_lpcm"):
            e = abs(d["mtf50_pred_lpcm"] / d["mtf50_ref_lpcm"] - 1.0)
            out["MTF50"] = item(e, self.max_mtf50_error, e <= self.max_mtf50_error)
        return out
POSITION_TOL_MM = 0.01
#: directions in the paper's Table 2 order: sharp -> soft, then soft -> sharp
TABLE2_DIRECTIONS = [("B50f", "B30f"), ("B70f", "B30f"), ("B70f", "B50f"),
                     ("B30f", "B50f"), ("B30f", "B70f"), ("B50f", "B70f")]


@dataclass
class LoadedSeries:
    folder: str
    kernel: str
    source_kernel: str
    derived: bool
    study_uid: str
    frame_uid: str
    positions: np.ndarray
    hu: np.ndarray  # (slices, rows, cols)
    pixel_mm: float
    first: Any = None  # the first slice's dataset (geometry), for the QA-phantom MTF


@dataclass
class Truth:
    hu: np.ndarray
    lung: np.ndarray
    z: np.ndarray


@dataclass
class DirectionResult:
    source: str
    target: str
    series: int = 0
    slices: int = 0
    psnr: list[float] = field(default_factory=list)
    ssim: list[float] = field(default_factory=list)
    rmse: list[float] = field(default_factory=list)
    mae: list[float] = field(default_factory=list)
    bias_sum: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    bias_n: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    noise_pred: list[float] = field(default_factory=list)
    noise_ref: list[float] = field(default_factory=list)
    nps_pred: list[np.ndarray] = field(default_factory=list)
    nps_ref: list[np.ndarray] = field(default_factory=list)
    nps_freq: np.ndarray | None = None
    lung_below_pred: int = 0
    lung_below_ref: int = 0
    lung_below910_pred: int = 0
    lung_below910_ref: int = 0
    lung_pixels: int = 0
    limits: Limits = field(default_factory=Limits)
    #: with --qa: (MTF50, MTF10) in lp/cm of each prediction and its reference
    mtf_pred: list[tuple[float, float]] = field(default_factory=list)
    mtf_ref: list[tuple[float, float]] = field(default_factory=list)
    with_truth: bool = True
    example: tuple[np.ndarray, np.ndarray] | None = None

    @property
    def name(self) -> str:
        return f"{self.source} -> {self.target}"

    def summary(self) -> dict[str, Any]:
        def mean(v: list[float]) -> float:
            return float(np.mean(v)) if v else float("nan")

        freq, pred, ref = self.nps()
        out: dict[str, Any] = {
            "direction": self.name, "source": self.source, "target": self.target,
            "series": self.series, "slices": self.slices,
            "psnr_db": mean(self.psnr), "ssim": mean(self.ssim),
            "rmse_hu": mean(self.rmse), "mae_hu": mean(self.mae),
            "bias_hu": {r: (self.bias_sum[r] / self.bias_n[r]) if self.bias_n[r] else None
                        for r in ROI_NAMES},
            "noise_sd_pred_hu": mean(self.noise_pred), "noise_sd_ref_hu": mean(self.noise_ref),
            "noise_ratio": mean(self.noise_pred) / mean(self.noise_ref)
            if self.noise_ref and mean(self.noise_ref) > 0 else float("nan"),
            "nps_peak_pred_lpcm": _peak(freq, pred), "nps_peak_ref_lpcm": _peak(freq, ref),
            "nps_mean_pred_lpcm": _mean_freq(freq, pred),
            "nps_mean_ref_lpcm": _mean_freq(freq, ref),
            "laa950_pred_pct": 100.0 * self.lung_below_pred / self.lung_pixels
            if self.lung_pixels else float("nan"),
            "laa950_ref_pct": 100.0 * self.lung_below_ref / self.lung_pixels
            if self.lung_pixels else float("nan"),
            "laa910_pred_pct": 100.0 * self.lung_below910_pred / self.lung_pixels
            if self.lung_pixels else float("nan"),
            "laa910_ref_pct": 100.0 * self.lung_below910_ref / self.lung_pixels
            if self.lung_pixels else float("nan"),
            "nps_correlation": _correlation(pred, ref),
            "reference_regions": "truth" if self.with_truth else "thresholds (approximate)",
        }
        for i, level in enumerate(("mtf50", "mtf10")):
            for who, got in (("pred", self.mtf_pred), ("ref", self.mtf_ref)):
                out[f"{level}_{who}_lpcm"] = mean([m[i] for m in got]) if got else None
        out["laa950_diff_pp"] = out["laa950_pred_pct"] - out["laa950_ref_pct"]
        out["laa910_diff_pp"] = out["laa910_pred_pct"] - out["laa910_ref_pct"]
        out["checks"] = self.limits.checks(out)
        judged = [c["passed"] for c in out["checks"].values() if c["passed"] is not None]
        out["passed"] = all(judged) if judged else None  # None: nothing could be measured
        return out

    def nps(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self.nps_freq is None or not self.nps_pred:
            empty = np.zeros(0)
            return empty, empty, empty
        return (self.nps_freq, np.mean(self.nps_pred, axis=0), np.mean(self.nps_ref, axis=0))


def _peak(freq: np.ndarray, nps: np.ndarray) -> float:
    if len(freq) < 2:
        return float("nan")
    return float(freq[1:][np.argmax(nps[1:])])


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two NPS curves (their shape), NaN when undefined."""
    ok = np.isfinite(a) & np.isfinite(b)
    a, b = a[ok], b[ok]
    if len(a) < 3 or np.std(a) == 0 or np.std(b) == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def _mean_freq(freq: np.ndarray, nps: np.ndarray) -> float:
    if len(freq) < 2 or nps.sum() <= 0:
        return float("nan")
    return float((freq * nps).sum() / nps.sum())


# ------------------------------------------------------------------------------- loading

def load_series(series: Series) -> LoadedSeries:
    if series.error or series.multiframe:
        raise InputError(f"{series.folder}: cannot evaluate ({series.error or 'multi-frame'})")
    images, first = read_hu_slices([sl.path for sl in series.slices])
    positions = [sl.position for sl in series.slices]
    kernel = first_kernel_value(first.get("ConvolutionKernel")) or "?"
    image_type = [str(v).upper() for v in first.get("ImageType", [])]
    made = derivation_of(first)  # kernelconv's own output says what it was converted from
    derived = made is not None or (bool(image_type) and image_type[0] == "DERIVED")
    source = made.source_kernel if made is not None else kernel
    return LoadedSeries(series.folder, kernel, source, derived,
                        str(first.get("StudyInstanceUID", "")),
                        str(first.get("FrameOfReferenceUID", "")),
                        np.array(positions, dtype=np.float64), np.stack(images),
                        pixel_spacing_mm(first) or REFERENCE_PIXEL_MM, first)


def load_truths(folder: Path) -> dict[str, Truth]:
    truths = {}
    for path in sorted(folder.rglob("truth.npz")):
        with np.load(path) as data:
            if "study_uid" not in data:
                raise InputError(f"{path}: truth file has no study_uid (simulate it again)")
            truths[str(data["study_uid"])] = Truth(data["hu"].astype(np.float32),
                                                   data["lung"].astype(bool), data["z"])
    if not truths:
        raise InputError(f"{folder}: no truth.npz files found")
    return truths


# ------------------------------------------------------------------------------- regions

def roi_masks(reference: np.ndarray, truth: np.ndarray | None,
             lung_truth: np.ndarray | None) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """ROI masks (soft tissue, fat, lung, bone) and the lung mask for LAA-950."""
    from scipy import ndimage

    base = truth if truth is not None else ndimage.uniform_filter(reference, 5)
    erode = (lambda m: ndimage.binary_erosion(m, iterations=3))  # noqa: E731
    if lung_truth is not None:
        lung = lung_truth
    else:
        body = ndimage.binary_fill_holes(ndimage.uniform_filter(reference, 3) > -500)
        lung = (ndimage.uniform_filter(reference, 3) < -400) & body
        lung = ndimage.binary_opening(lung, iterations=2)
    rois = {
        "soft tissue": erode((base >= 0) & (base <= 100)),
        "fat": erode((base >= -150) & (base <= -50)),
        "lung": erode(lung & (base < -700)),
        "bone": erode(base >= 300),
    }
    return rois, lung


def local_noise(image: np.ndarray) -> np.ndarray:
    """The image minus its 7 x 7 local mean: its noise where no ground truth is known."""
    from scipy import ndimage

    return np.asarray(image - ndimage.uniform_filter(image, 7))


def radial_nps(noise: np.ndarray, mask: np.ndarray, pixel_mm: float,
               bins: np.ndarray) -> np.ndarray:
    """Radially averaged NPS (HU^2 mm^2) of ``noise`` inside ``mask`` at frequencies ``bins``."""
    area = mask.sum()
    if area < 100:
        return np.full(len(bins), np.nan)
    n = np.where(mask, noise - noise[mask].mean(), 0.0)
    power = np.abs(np.fft.fft2(n)) ** 2 * (pixel_mm * pixel_mm) / area
    fy = np.fft.fftfreq(n.shape[0], d=pixel_mm)
    fx = np.fft.fftfreq(n.shape[1], d=pixel_mm)
    f = np.hypot(fy[:, None], fx[None, :]) * 10.0  # lp/cm
    step = bins[1] - bins[0]
    idx = np.rint(f / step).astype(int).ravel()
    keep = idx < len(bins)
    sums = np.bincount(idx[keep], weights=power.ravel()[keep], minlength=len(bins))
    counts = np.bincount(idx[keep], minlength=len(bins))
    return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


# ------------------------------------------------------------------------------- evaluation

def _index_by_position(positions: np.ndarray) -> dict[int, int]:
    return {int(round(p / POSITION_TOL_MM)): i for i, p in enumerate(positions)}


def evaluate(pred_dir: Path, ref_dir: Path, truth_dir: Path | None = None,
             target: str | None = None, keep_example: bool = True,
             limits: Limits | None = None, qa: bool = False) -> list[DirectionResult]:
    """Evaluate every predicted series under ``pred_dir`` against ``ref_dir``; each direction
    is judged against ``limits`` (default :class:`Limits`). With ``qa`` the series are the
    simulator's QA phantom (``simulate --phantom qa``): the MTF50/MTF10 of prediction and
    reference are measured from its rod's circular edge, as ``kernelconv qa`` does."""
    if qa:
        from kernelconv.evaluation.qa import measure_images
    preds = [load_series(s) for s in discover(pred_dir).series]
    if not preds:
        raise InputError(f"{pred_dir}: no CT series to evaluate")
    refs = [load_series(s) for s in discover(ref_dir, exclude=[pred_dir]).series]
    truths = load_truths(truth_dir) if truth_dir else {}
    results: dict[tuple[str, str], DirectionResult] = {}
    for pred in preds:
        tgt = target or pred.kernel
        if not pred.derived and target is None:
            raise InputError(f"{pred.folder}: not a converted (DERIVED) series; give --target "
                             "to evaluate it as is (identity)")
        scan = scan_key(pred.first)
        matches = [r for r in refs if r.kernel == tgt and r.folder != pred.folder and (
            (r.study_uid == pred.study_uid and r.frame_uid == pred.frame_uid)
            or scan_key(r.first) == scan)]  # the same acquisition under renewed UIDs
        if not matches:
            raise InputError(f"{pred.folder}: no reference series with kernel {tgt} of the same "
                             f"scan (study, or acquisition and geometry) under {ref_dir}")
        ref = matches[0]
        key = (pred.source_kernel, tgt)
        res = results.setdefault(key, DirectionResult(
            *key, with_truth=bool(truth_dir), limits=limits or Limits()))
        res.series += 1
        truth = truths.get(pred.study_uid)
        if truth_dir and truth is None:
            raise InputError(f"{pred.folder}: no truth for its study under {truth_dir}")
        _accumulate(res, pred, ref, truth, keep_example)
        if qa:
            for who, series, into in (("pred", pred, res.mtf_pred), ("ref", ref, res.mtf_ref)):
                m = measure_images(who, series.folder, list(series.hu), series.first).mtf
                into.append((m.mtf50, m.mtf10))
    order = {d: i for i, d in enumerate(TABLE2_DIRECTIONS)}
    return sorted(results.values(), key=lambda r: (order.get((r.source, r.target), 99), r.name))


def _accumulate(res: DirectionResult, pred: LoadedSeries, ref: LoadedSeries,
                truth: Truth | None, keep_example: bool) -> None:
    ref_at = _index_by_position(ref.positions)
    truth_at = _index_by_position(truth.z) if truth is not None else {}
    nyquist = 5.0 / pred.pixel_mm  # lp/cm
    bins = np.arange(0.0, nyquist, 0.1)
    res.nps_freq = bins
    paired = [(i, ref_at[k]) for i, p in enumerate(pred.positions)
              if (k := int(round(p / POSITION_TOL_MM))) in ref_at]
    if not paired:
        raise InputError(f"{pred.folder}: no slice positions in common with {ref.folder}")
    middle = paired[len(paired) // 2]
    for i, j in paired:
        p, r = pred.hu[i].astype(np.float64), ref.hu[j].astype(np.float64)
        if p.shape != r.shape:
            raise InputError(f"{pred.folder}: matrix {p.shape} differs from the reference's")
        t_hu = lung_t = None
        if truth is not None:
            k = int(round(pred.positions[i] / POSITION_TOL_MM))
            if k not in truth_at:
                raise InputError(f"{pred.folder}: truth has no slice at {pred.positions[i]:.2f}")
            t_hu = truth.hu[truth_at[k]].astype(np.float64)
            lung_t = truth.lung[truth_at[k]]
        res.slices += 1
        res.psnr.append(psnr(p, r))
        res.ssim.append(ssim(p, r))
        res.rmse.append(rmse(p, r))
        res.mae.append(mae(p, r))
        rois, lung = roi_masks(r, t_hu, lung_t)
        for name, m in rois.items():
            if m.any():
                res.bias_sum[name] += float((p[m] - r[m]).sum())
                res.bias_n[name] += int(m.sum())
        soft = rois["soft tissue"]
        if t_hu is not None:
            noise_p, noise_r = p - t_hu, r - t_hu
        else:
            noise_p, noise_r = local_noise(p), local_noise(r)
        if soft.sum() >= 100:
            res.noise_pred.append(float(noise_p[soft].std()))
            res.noise_ref.append(float(noise_r[soft].std()))
            res.nps_pred.append(radial_nps(noise_p, soft, pred.pixel_mm, bins))
            res.nps_ref.append(radial_nps(noise_r, soft, pred.pixel_mm, bins))
        res.lung_pixels += int(lung.sum())
        res.lung_below_pred += int(np.count_nonzero(p[lung] < -950.0))
        res.lung_below_ref += int(np.count_nonzero(r[lung] < -950.0))
        res.lung_below910_pred += int(np.count_nonzero(p[lung] < -910.0))
        res.lung_below910_ref += int(np.count_nonzero(r[lung] < -910.0))
        if keep_example and res.example is None and (i, j) == middle:
            res.example = (p.astype(np.float32), r.astype(np.float32))


# ------------------------------------------------------------------------------- reports

def _fmt(x: float | None, digits: int = 2) -> str:
    if x is None or (isinstance(x, float) and np.isnan(x)):
        return "-"
    if isinstance(x, float) and np.isinf(x):
        return "inf"
    return f"{x:.{digits}f}"


def table2_markdown(rows: dict[str, list[dict[str, Any]]]) -> str:
    """The paper's Table 2 layout: methods as rows, directions as PSNR/SSIM column pairs."""
    lines = []
    for title, dirs in (("sharp -> soft", TABLE2_DIRECTIONS[:3]),
                        ("soft -> sharp", TABLE2_DIRECTIONS[3:])):
        head = "| method | " + " | ".join(f"{s} -> {t} PSNR | SSIM" for s, t in dirs) + " |"
        lines += [f"**{title}**", "", head, "|---" * (1 + 2 * len(dirs)) + "|"]
        for method, summaries in rows.items():
            by = {(d["source"], d["target"]): d for d in summaries}
            cells = []
            for s, t in dirs:
                d = by.get((s, t))
                cells += [_fmt(d["psnr_db"]), _fmt(d["ssim"], 4)] if d else ["-", "-"]
            lines.append(f"| {method} | " + " | ".join(cells) + " |")
        lines.append("")
    lines.append("PSNR and SSIM on HU clipped to [-1024, 3071], data range 4095 HU (the paper's "
                 "setting).")
    return "\n".join(lines) + "\n"


def details_markdown(summaries: list[dict[str, Any]]) -> str:
    head = ("| direction | slices | PSNR dB | SSIM | RMSE HU | MAE HU | bias soft/fat/lung/bone HU "
            "| noise SD pred/ref HU (ratio) | NPS peak pred/ref lp/cm (shape corr.) "
            "| LAA-950 pred/ref % (diff pp) | LAA-910 diff pp | limits |")
    lines = [head, "|---" * 12 + "|"]
    for d in summaries:
        b = d["bias_hu"]
        lines.append(
            f"| {d['direction']} | {d['slices']} | {_fmt(d['psnr_db'])} | {_fmt(d['ssim'], 4)} "
            f"| {_fmt(d['rmse_hu'], 1)} | {_fmt(d['mae_hu'], 1)} | "
            + "/".join(_fmt(b[r], 1) for r in ROI_NAMES)
            + f" | {_fmt(d['noise_sd_pred_hu'], 1)}/{_fmt(d['noise_sd_ref_hu'], 1)} "
            f"({_fmt(d['noise_ratio'])}) | {_fmt(d['nps_peak_pred_lpcm'], 1)}/"
            f"{_fmt(d['nps_peak_ref_lpcm'], 1)} ({_fmt(d['nps_correlation'])}) | "
            f"{_fmt(d['laa950_pred_pct'])}/"
            f"{_fmt(d['laa950_ref_pct'])} ({_fmt(d['laa950_diff_pp'])}) | "
            f"{_fmt(d['laa910_diff_pp'])} | {verdict(d)} |")
    return "\n".join(lines) + "\n"


def verdict(d: dict[str, Any], short: bool = False) -> str:
    """'pass', or 'FAIL: ' and the criteria that missed their limits ('FAIL n' if short)."""
    if d["passed"] is None:
        return "not measured"
    missed = [k for k, c in d["checks"].items() if c["passed"] is False]
    if not missed:
        return "pass"
    return f"FAIL {len(missed)}" if short else "FAIL: " + ", ".join(missed)


def json_safe(value: Any) -> Any:
    """``value`` with numpy scalars made Python numbers and every non-finite float (NaN: not
    measurable, e.g. no lung; inf: PSNR of identical images) made None, so that the file is
    strict JSON that any parser reads."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def write_reports(results: list[DirectionResult], out: Path, label: str) -> dict[str, Path]:
    """evaluation.md, evaluation.json, nps.png and difference.png under ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    summaries = [r.summary() for r in results]
    regions = summaries[0]["reference_regions"] if summaries else "-"
    in_table2 = any((d["source"], d["target"]) in TABLE2_DIRECTIONS for d in summaries)
    md = (f"# kernelconv evaluate: {label}\n\n"
          # the paper's Table 2 only where one of its (Siemens) directions was evaluated
          + (table2_markdown({label: summaries}) + "\n" if in_table2 else "")
          + details_markdown(summaries)
          + f"\nRegions, lung mask and noise from: {regions}.\n")
    paths = {"markdown": out / "evaluation.md", "json": out / "evaluation.json",
             "nps": out / "nps.png", "difference": out / "difference.png"}
    paths["markdown"].write_text(md, encoding="utf-8")
    paths["json"].write_text(json.dumps(json_safe({"label": label, "directions": summaries}),
                                        indent=2, allow_nan=False) + "\n", encoding="utf-8")
    n = max(1, len(results))
    fig, axes = plt.subplots(1, n, figsize=(3.2 * n, 3.0), dpi=110, squeeze=False)
    for ax, r in zip(axes[0], results, strict=False):
        freq, pred, ref = r.nps()
        if len(freq):
            ax.plot(freq, ref, label="reference (true target kernel)")
            ax.plot(freq, pred, label=f"{label}")
        ax.set_title(r.name, fontsize=9)
        ax.set_xlabel("lp/cm")
    axes[0][0].set_ylabel("NPS (HU$^2$ mm$^2$)")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(paths["nps"])
    plt.close(fig)
    fig, axes = plt.subplots(1, n, figsize=(3.2 * n, 3.4), dpi=110, squeeze=False)
    for ax, r in zip(axes[0], results, strict=False):
        if r.example is not None:
            ax.imshow(r.example[0] - r.example[1], cmap="gray", vmin=-100, vmax=100)
        ax.set_title(f"{r.name}\npred - ref (+-100 HU)", fontsize=8)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(paths["difference"])
    plt.close(fig)
    return paths
