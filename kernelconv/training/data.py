"""Training data: a cache built once from DICOM folders, and random-crop batch sampling.

``build_cache`` walks the data folders (any layout), maps each CT series to a domain through
its ConvolutionKernel and the kernel table (or the config's mapping), decodes it once, and
stores HU clipped to the paper's window as an int16 ``.npy`` per series plus ``index.json``;
training memory-maps them and never decodes DICOM again. Series whose kernel is not a training
domain are skipped and listed.

Sampling is unpaired as in the paper: slices are drawn uniformly from all series of all domains
with their domain label. Paired mode (an extension, off by default) additionally finds, for the
drawn slice, the slice at the same position of the same study in the target domain.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from kernelconv.dicom.dataset import pixel_spacing_mm, read_hu_slices, scan_key
from kernelconv.dicom.discovery import discover
from kernelconv.errors import InputError, KernelconvError
from kernelconv.fileio import atomic_write_text
from kernelconv.hu import HU_MAX, HU_MIN, hu_to_unit
from kernelconv.kernel_response import REFERENCE_PIXEL_MM
from kernelconv.kernels import KernelAliases

#: 2: pixel spacing per series; 3: scan key (pairs across renewed UIDs); 4: data folder
CACHE_VERSION = 4


def build_cache(data_dirs: list[Path], cache_dir: Path, domains: list[str],
                kernel_map: Mapping[str, str] | None = None) -> dict[str, object]:
    """Decode every usable series once into ``cache_dir``; returns the index (also saved)."""
    index_path = cache_dir / "index.json"
    if index_path.is_file():
        index = json.loads(index_path.read_text())
        if index.get("version") == CACHE_VERSION and index.get("domains") == domains and \
                index.get("sources") == [str(d.resolve()) for d in data_dirs] and \
                index.get("kernel_map", {}) == dict(kernel_map or {}):
            return dict(index)
    cache_dir.mkdir(parents=True, exist_ok=True)
    table = KernelAliases.for_domains(domains, kernel_map)
    entries: list[dict[str, object]] = []
    skipped: list[dict[str, str]] = []
    for data_dir in data_dirs:
        if not data_dir.exists():
            raise InputError(f"{data_dir}: no such folder")
        for series in discover(data_dir, exclude=[cache_dir]).series:
            if series.error or series.multiframe or not series.kernel:
                skipped.append({"folder": series.folder,
                                "reason": series.error or "multi-frame or no kernel"})
                continue
            try:
                domain = table.resolve(series.kernel)
            except KernelconvError as exc:
                skipped.append({"folder": series.folder, "reason": str(exc)})
                continue
            images, first = read_hu_slices([sl.path for sl in series.slices])
            shapes = {im.shape for im in images}
            if len(shapes) != 1:
                skipped.append({"folder": series.folder, "reason": "mixed matrix sizes"})
                continue
            arr = np.clip(np.rint(np.stack(images)), HU_MIN, HU_MAX).astype(np.int16)
            name = f"{len(entries):06d}.npy"
            np.save(cache_dir / name, arr)
            entries.append({"file": name, "domain": domains.index(domain),
                            "kernel": series.kernel, "study_uid": series.study_uid,
                            "scan": scan_key(first),
                            "positions": [round(float(s.position or 0.0), 3)
                                          for s in series.slices],
                            "shape": list(arr.shape), "folder": series.folder,
                            "source": str(data_dir),
                            "pixel_mm": pixel_spacing_mm(first) or REFERENCE_PIXEL_MM})
    if not entries:
        raise InputError("no training series found for the domains "
                         f"{', '.join(domains)} in {', '.join(map(str, data_dirs))}")
    index = {"version": CACHE_VERSION, "domains": domains,
             "sources": [str(d.resolve()) for d in data_dirs], "series": entries,
             "kernel_map": dict(kernel_map or {}),
             "skipped": skipped}
    atomic_write_text(index_path, json.dumps(index, indent=1) + "\n")
    return index


def one_reconstruction_per_scan(series: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The series an archive would hold if each scan had been read with one kernel: the scans
    of each data folder (``--data``; sorted by their key) take the domains in turn, so every
    kernel gets the same share of every folder and no anatomy appears in two kernels; a scan
    without its turn's domain keeps its first series.

    Taking turns within each folder matters when folders differ (slices per scan, patients,
    field of view): with turns over all scans at once, one kernel of the unpaired archive got
    78 slices of the 6-slice folders against another's 54, and the kernels' mean spectra then
    differed by more than the kernels do (docs/training.md, "Fourth round")."""
    by_scan: dict[str, list[dict[str, Any]]] = {}
    for s in series:
        by_scan.setdefault(str(s.get("scan", s["study_uid"])), []).append(s)
    domains = sorted({int(s["domain"]) for s in series})
    by_source: dict[str, list[str]] = {}
    for key, group in by_scan.items():
        by_source.setdefault(str(group[0].get("source", "")), []).append(key)
    kept = []
    turn = 0
    for source in sorted(by_source):
        for key in sorted(by_source[source]):
            group = by_scan[key]
            want = domains[turn % len(domains)]
            kept.append(next((s for s in group if int(s["domain"]) == want), group[0]))
            turn += 1
    return kept


class Batch(NamedTuple):
    """One training batch: images (B, 1, h, w) in [-1, 1] and their domain labels; in paired
    mode the partner slices and their domains; the pixel spacing (mm) of every item."""

    images: np.ndarray
    labels: np.ndarray
    targets: np.ndarray | None
    target_labels: np.ndarray | None
    pixel_mm: list[float]


class SliceSampler:
    """Random (crop of a) slice with its domain label; optionally its paired target slice."""

    def __init__(self, cache_dir: Path, index: Mapping[str, object], crop: int | None,
                 seed: int, one_kernel_per_scan: bool = False) -> None:
        series = index["series"]
        assert isinstance(series, list)
        if one_kernel_per_scan:
            series = one_reconstruction_per_scan(series)
        self.arrays = [np.load(cache_dir / s["file"], mmap_mode="r") for s in series]
        self.domains = [int(s["domain"]) for s in series]
        self.pixel_mm = [float(s.get("pixel_mm", REFERENCE_PIXEL_MM)) for s in series]
        self.n_domains = len(index["domains"])  # type: ignore[arg-type]
        self.crop = crop
        self.rng = np.random.default_rng(seed)
        self.slices = [(i, j) for i, a in enumerate(self.arrays) for j in range(a.shape[0])]
        # paired lookup: (scan, position) -> {domain: (series, slice)}; the scan key groups
        # the reconstructions of one acquisition even where their Study UIDs differ
        self.pairs: dict[tuple[str, float], dict[int, tuple[int, int]]] = {}
        for i, s in enumerate(series):
            for j, p in enumerate(s["positions"]):
                self.pairs.setdefault((s.get("scan", s["study_uid"]), p), {})[
                    int(s["domain"])] = (i, j)
        self.keys = [(s.get("scan", s["study_uid"]), s["positions"][j])
                     for i, s in enumerate(series) for j in range(len(s["positions"]))]

    def __len__(self) -> int:
        return len(self.slices)

    def _window(self, shape: tuple[int, ...]) -> tuple[int, int, int, int]:
        h, w = shape[-2:]
        ch = min(self.crop or h, h)
        cw = min(self.crop or w, w)
        top = int(self.rng.integers(0, h - ch + 1))
        left = int(self.rng.integers(0, w - cw + 1))
        return top, left, ch, cw

    @staticmethod
    def _unit(a: np.ndarray) -> np.ndarray:
        return hu_to_unit(a)

    def batch(self, size: int, paired: bool = False) -> Batch:
        """Images (B,1,h,w) in [-1,1], labels (B,), paired targets, their labels, spacings.

        Crops share one size per batch. In paired mode each item is drawn among slices that have
        at least one partner in another domain, and the partner's domain is the target.
        """
        picks = self.rng.integers(0, len(self.slices), size=size * 20 if paired else size)
        items, targets, tlabels = [], [], []
        for k in picks:
            i, j = self.slices[int(k)]
            if paired:
                partners = {d: v for d, v in self.pairs[self.keys[int(k)]].items()
                            if d != self.domains[i]}
                if not partners:
                    continue
                d = int(self.rng.choice(sorted(partners)))
                targets.append(partners[d])
                tlabels.append(d)
            items.append((i, j))
            if len(items) == size:
                break
        if len(items) < size:
            raise InputError("paired mode: too few slices with a partner in another kernel")
        shapes = [self.arrays[i].shape[1:] for i, _ in items]
        top, left, ch, cw = self._window((min(s[0] for s in shapes), min(s[1] for s in shapes)))
        imgs = np.stack([self._unit(self.arrays[i][j, top:top + ch, left:left + cw])
                         for i, j in items])[:, None]
        labels = np.array([self.domains[i] for i, _ in items], dtype=np.int64)
        spacing = [self.pixel_mm[i] for i, _ in items]
        if not paired:
            return Batch(imgs, labels, None, None, spacing)
        tgt = np.stack([self._unit(self.arrays[i][j, top:top + ch, left:left + cw])
                        for i, j in targets])[:, None]
        return Batch(imgs, labels, tgt, np.array(tlabels, dtype=np.int64), spacing)
