"""Common body and lung kernels of GE, Philips, Canon/Toshiba and Siemens, with the source of
each figure or the rule that estimated it, and its uncertainty.

Published per-kernel MTFs are scarce (a literature look-up for this table found measured
MTF50/MTF10 for only a handful of the kernels below). So most entries are ESTIMATES by an
equivalence, each stated with its basis and a relative uncertainty:

- a kernel said to be equivalent to a Siemens kernel (same sharpness in a vendor manual, the
  closest noise texture in a cross-vendor study, or the same role in a trial protocol's
  soft/sharp pair) gets that Siemens kernel's figures;
- a Siemens kernel's figures follow its number: MTF50 and MTF10 interpolated linearly in the
  kernel number between the anchors B30f (3.5/6.0 lp/cm, the project spec), B40f (4.4/7.2,
  measured, Ohkubo et al. 2009), B50f (5.3/8.3, spec) and B70f (7.6/11.0, spec); numbers above
  70 take B70f's (sharper than the simulator resolves). Siemens' two-digit number is a
  sharpness index within a family; that it means the same across the B-, Br-, Bl- and Qr-
  families is an assumption, hence +-25 % for those.

Each kernel's window is a Butterworth fitted to its MTF50/MTF10 on the reference scanner
(``python scripts/fit_vendor_kernels.py`` prints ``WINDOWS``; tests check it still meets the
targets). The ``uncertainty`` lowers the noise the soft -> sharp filter may add
(:func:`kernelconv.kernel_response.allowed_noise_ratio`): an estimated kernel converts
conservatively. None of this replaces a site calibration (`kernelconv calibrate`,
docs/calibration.md), which measures the site's own kernels. A site adds or overrides kernels
with a JSON kernel table (``--kernel-table``).

This module is data only (it imports nothing of kernelconv): the kernel response table
(:func:`kernelconv.kernel_response.vendor_responses`) turns these entries into responses.

Sources (full references in docs/calibration.md, "Vendor kernels"):
[O09] Ohkubo M et al., Med Phys 2009, doi:10.1118/1.3123762: measured PSF/MTF of 21 kernels
      (curves as digitised in the CortidQCT project's scannerMTFTable.m).
[S12] Solomon J et al., Med Phys 2012, doi:10.1118/1.4752209: GE Soft/Standard/Chest/Lung
      closest in noise texture to Siemens B35f/B43f/B41f/B80f (noise texture, not MTF).
[SM]  Siemens SOMATOM Sensation operating instructions, body kernels: B31 has about the same
      sharpness as B30, B41 as B40.
[NL]  NLST reconstruction-filter codes (soft/sharp pairs per vendor): GE STANDARD/BONE,
      Philips C/D, Siemens B30f/B50f, Toshiba FC10/FC51 (protocol roles, not measurements).
[P21] Med Phys 2021;48:2760, doi:10.1002/mp.14789: Aquilion Precision FC30, normal-resolution
      mode, axial MTF10 1.10 /mm.
[KJR] Korean J Radiol study of FC13/FC55: FC13 "conventional soft tissue kernel", FC55
      "conventional lung kernel".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class VendorKernel:
    vendor: str
    name: str
    use: str  # body, lung, bone
    #: equivalent Siemens kernel number (the sharpness rank; figures by the number rule)
    siemens_number: float
    uncertainty: float  # relative, of the figures as a description of the real kernel
    basis: str  # the source, or how the estimate was made
    sourced: bool = False  # True: MTF figures measured for this kernel
    mtf50: float | None = None  # sourced figures (lp/cm), else from the number rule
    mtf10: float | None = None


#: (kernel number, MTF50, MTF10) anchors of the number rule (module docstring)
ANCHORS = ((30.0, 3.5, 6.0), (40.0, 4.4, 7.2), (50.0, 5.3, 8.3), (70.0, 7.6, 11.0))


def by_number(number: float) -> tuple[float, float]:
    """MTF50 and MTF10 (lp/cm) of a Siemens kernel number by the number rule."""
    n, m50, m10 = (np.asarray(v) for v in zip(*ANCHORS, strict=True))
    x = float(np.clip(number, n[0], n[-1]))
    return float(np.interp(x, n, m50)), float(np.interp(x, n, m10))


def targets(k: VendorKernel) -> tuple[float, float]:
    """The MTF50/MTF10 a kernel's window is fitted to."""
    if k.mtf50 is not None and k.mtf10 is not None:
        return k.mtf50, k.mtf10
    return by_number(k.siemens_number)


_NUM = "ESTIMATE by its kernel number (number rule)"
_NUM_FAMILY = ("ESTIMATE by its kernel number (number rule; the same scale across Siemens "
               "families assumed)")

VENDOR_KERNELS: tuple[VendorKernel, ...] = (
    # Siemens B- family (Definition, Sensation)
    VendorKernel("Siemens", "B31f", "body", 30, 0.15, "ESTIMATE: same sharpness as B30 [SM]"),
    VendorKernel("Siemens", "B35f", "body", 35, 0.2, _NUM),
    VendorKernel("Siemens", "B40f", "body", 40, 0.1, "measured [O09] (digitised curve, +-10 %)",
                 sourced=True, mtf50=4.4, mtf10=7.2),
    VendorKernel("Siemens", "B41f", "body", 40, 0.15, "ESTIMATE: same sharpness as B40 [SM]"),
    VendorKernel("Siemens", "B45f", "body", 45, 0.2, _NUM),
    VendorKernel("Siemens", "B46f", "body", 46, 0.2, _NUM),
    VendorKernel("Siemens", "B60f", "lung", 60, 0.2, _NUM),
    VendorKernel("Siemens", "B80f", "bone", 80, 0.3,
                 "ESTIMATE: sharper than B70f; B70f's figures (the simulator's limit)"),
    # Siemens Force/Drive (ADMIRE era): body Br, lung Bl, quantitative Qr
    VendorKernel("Siemens", "Br32", "body", 32, 0.25, _NUM_FAMILY),
    VendorKernel("Siemens", "Br36", "body", 36, 0.25, _NUM_FAMILY),
    VendorKernel("Siemens", "Br40", "body", 40, 0.25, _NUM_FAMILY),
    VendorKernel("Siemens", "Br44", "body", 44, 0.25, _NUM_FAMILY),
    VendorKernel("Siemens", "Br49", "body", 49, 0.25, _NUM_FAMILY),
    VendorKernel("Siemens", "Br54", "body", 54, 0.25, _NUM_FAMILY),
    VendorKernel("Siemens", "Br59", "body", 59, 0.25, _NUM_FAMILY),
    VendorKernel("Siemens", "Br64", "bone", 64, 0.25, _NUM_FAMILY),
    VendorKernel("Siemens", "Bl57", "lung", 57, 0.25, _NUM_FAMILY),
    VendorKernel("Siemens", "Bl64", "lung", 64, 0.25, _NUM_FAMILY),
    VendorKernel("Siemens", "Qr40", "body", 40, 0.25, _NUM_FAMILY),
    VendorKernel("Siemens", "Qr44", "body", 44, 0.25, _NUM_FAMILY),
    # GE
    VendorKernel("GE", "SOFT", "body", 35, 0.3, "ESTIMATE: closest noise texture B35f [S12]"),
    VendorKernel("GE", "STANDARD", "body", 43, 0.3,
                 "ESTIMATE: closest noise texture B43f [S12]; NLST's soft member [NL]"),
    VendorKernel("GE", "CHEST", "body", 41, 0.3, "ESTIMATE: closest noise texture B41f [S12]"),
    VendorKernel("GE", "DETAIL", "body", 46, 0.35,
                 "ESTIMATE: between STANDARD and BONE (no source found)"),
    VendorKernel("GE", "BONE", "bone", 50, 0.3, "ESTIMATE: NLST's sharp member, as B50f [NL]"),
    VendorKernel("GE", "LUNG", "lung", 80, 0.3,
                 "ESTIMATE: closest noise texture B80f [S12]; B70f's figures"),
    VendorKernel("GE", "BONEPLUS", "bone", 60, 0.35,
                 "ESTIMATE: sharper than BONE (no source found)"),
    # Philips
    VendorKernel("Philips", "C", "body", 30, 0.3, "ESTIMATE: NLST's soft member, as B30f [NL]"),
    VendorKernel("Philips", "D", "body", 50, 0.1,
                 "measured [O09] (digitised curve, +-10 %); NLST's sharp member [NL]",
                 sourced=True, mtf50=5.0, mtf10=9.1),
    VendorKernel("Philips", "E", "bone", 60, 0.35, "ESTIMATE: sharper than D (no source found)"),
    VendorKernel("Philips", "L", "lung", 60, 0.35, "ESTIMATE: lung kernel (no source found)"),
    VendorKernel("Philips", "YA", "lung", 70, 0.35,
                 "ESTIMATE: sharp lung kernel, as B70f (no source found)"),
    VendorKernel("Philips", "YB", "lung", 70, 0.35,
                 "ESTIMATE: sharp lung kernel, as B70f (no source found)"),
    # Canon / Toshiba
    VendorKernel("Canon", "FC10", "body", 30, 0.3, "ESTIMATE: NLST's soft member, as B30f [NL]"),
    VendorKernel("Canon", "FC13", "body", 30, 0.3,
                 "ESTIMATE: the conventional soft-tissue kernel [KJR], as B30f"),
    VendorKernel("Canon", "FC18", "body", 30, 0.35, "ESTIMATE: body kernel, as B30f"),
    VendorKernel("Canon", "FC30", "bone", 70, 0.2,
                 "ESTIMATE: MTF10 11.0 lp/cm measured on an Aquilion Precision, normal-"
                 "resolution mode [P21], as B70f's"),
    VendorKernel("Canon", "FC51", "lung", 50, 0.3, "ESTIMATE: NLST's sharp member, as B50f [NL]"),
    VendorKernel("Canon", "FC52", "lung", 50, 0.35, "ESTIMATE: lung kernel, as FC51"),
    VendorKernel("Canon", "FC55", "lung", 50, 0.35,
                 "ESTIMATE: the conventional lung kernel [KJR], as FC51"),
    VendorKernel("Canon", "FC86", "lung", 70, 0.35,
                 "ESTIMATE: high-resolution lung kernel, as B70f (no source found)"),
)

#: Butterworth (cutoff lp/cm, order) per kernel, from scripts/fit_vendor_kernels.py
WINDOWS: dict[str, tuple[float, float]] = {
    'B31f': (3.7993, 1.8734),
    'B35f': (4.3791, 1.9529),
    'B40f': (4.9991, 2.0255),
    'B41f': (4.9991, 2.0255),
    'B45f': (5.6527, 2.1385),
    'B46f': (5.7893, 2.162),
    'B60f': (8.4244, 2.8193),
    'B80f': (10.8989, 6.0),
    'Br32': (4.027, 1.9063),
    'Br36': (4.4995, 1.9678),
    'Br40': (4.9991, 2.0255),
    'Br44': (5.5181, 2.1153),
    'Br49': (6.2125, 2.2359),
    'Br54': (7.1309, 2.4352),
    'Br59': (8.1965, 2.7378),
    'Br64': (9.3857, 3.2956),
    'Bl57': (7.7559, 2.5998),
    'Bl64': (9.3857, 3.2956),
    'Qr40': (4.9991, 2.0255),
    'Qr44': (5.5181, 2.1153),
    'SOFT': (4.3791, 1.9529),
    'STANDARD': (5.3856, 2.0926),
    'CHEST': (5.1261, 2.0477),
    'DETAIL': (5.7893, 2.162),
    'BONE': (6.3582, 2.262),
    'LUNG': (10.8989, 6.0),
    'BONEPLUS': (8.4244, 2.8193),
    'C': (3.7993, 1.8734),
    'D': (6.4438, 1.3942),
    'E': (8.4244, 2.8193),
    'L': (8.4244, 2.8193),
    'YA': (10.8989, 6.0),
    'YB': (10.8989, 6.0),
    'FC10': (3.7993, 1.8734),
    'FC13': (3.7993, 1.8734),
    'FC18': (3.7993, 1.8734),
    'FC30': (10.8989, 6.0),
    'FC51': (6.3582, 2.262),
    'FC52': (6.3582, 2.262),
    'FC55': (6.3582, 2.262),
    'FC86': (10.8989, 6.0),
}
