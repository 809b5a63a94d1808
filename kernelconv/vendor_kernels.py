"""Kernels of real scanners (GE, Philips, Canon/Toshiba, Siemens): body, lung, bone, head and
brain kernels, each with the source of its figures or the rule that estimated it, and an
uncertainty.

Published per-kernel MTFs are scarce: two literature look-ups (issue 12 and issue 26) found
measured MTF50/MTF10 for only a handful of real kernels ([O09] Siemens B40/B70 and Philips D,
[P21] Canon FC30's MTF10), and relations for a few more ([YL15] SAFIRE I40 against B40). So
most entries are ESTIMATES, each stated with its basis and a relative uncertainty:

- a kernel said to be equivalent to a Siemens kernel (same sharpness in a vendor manual, the
  closest noise texture in a cross-vendor study, or the same role in a trial protocol's
  soft/sharp pair) gets that Siemens kernel's figures;
- a Siemens kernel's figures follow its number: MTF50 and MTF10 interpolated linearly in the
  kernel number between the anchors B30f (3.5/6.0 lp/cm, the project spec), B40f (4.4/7.2,
  measured [O09]), B50f (5.3/8.3, spec) and B70f (7.6/11.0, spec); numbers above 70 take
  B70f's, numbers below 30 B30f's (the rule has no softer anchor). Siemens' two-digit number
  is a sharpness index within a family; that it means the same across the B-, Br-, Bl-, Bv-,
  Qr-, H-, Hr-, J- and I-families is an assumption, hence +-25 % to +-35 % for those;
- a kernel known only by its role (a vendor's head or lung kernel, no figure, no equivalence)
  gets the figures of the Siemens kernel of that role and +-40 % to +-45 %.

Each kernel's window is a Butterworth fitted to its MTF50/MTF10 on the reference scanner
(``python scripts/fit_vendor_kernels.py`` prints ``WINDOWS``; tests check it still meets the
targets). The ``uncertainty`` lowers the noise the soft -> sharp filter may add
(:func:`kernelconv.kernel_response.allowed_noise_ratio`): an estimated kernel converts
conservatively. None of this replaces a site calibration (`kernelconv calibrate`), which
measures the site's own kernels. A site adds or overrides kernels with a JSON kernel table
(``--kernel-table``). Never fit this table to the pairs the project evaluates on (the Canon
FC51/FC13 phantoms, the Siemens B40f/B70f chest) or to the real archive.

The table, its figures and the reference list are in docs/vendor-kernels.md
(``python scripts/fit_vendor_kernels.py --doc-table`` writes its table). The references are
``REFERENCES`` below; every tag an entry's basis cites is one of them (tests check).

This module is data only (it imports nothing of kernelconv): the kernel response table
(:func:`kernelconv.kernel_response.vendor_responses`) turns these entries into responses.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class VendorKernel:
    vendor: str
    name: str  # as the scanner writes it into ConvolutionKernel (0018,1210)
    #: body, lung, bone (body or head bone), head (head-mode kernel, role within the head not
    #: documented or not brain), brain (brain parenchyma)
    use: str
    #: equivalent Siemens kernel number (the sharpness rank; figures by the number rule)
    siemens_number: float
    uncertainty: float  # relative, of the figures as a description of the real kernel
    basis: str  # the source, or how the estimate was made; [TAG]s name REFERENCES
    sourced: bool = False  # True: MTF figures measured for this kernel
    mtf50: float | None = None  # sourced figures (lp/cm), else from the number rule
    mtf10: float | None = None


#: the references an entry's basis cites by [TAG] (full list with notes: docs/vendor-kernels.md)
REFERENCES: dict[str, str] = {
    "O09": "Ohkubo M et al., Determination of point spread function in computed tomography "
           "accompanied with verification, Med Phys 2009, doi:10.1118/1.3123762; MTF curves of "
           "Philips Brilliance D and Siemens Somatom B40/B70 as digitised in the CortidQCT "
           "project (ithron/CortidQCT, scannerMTFTable.m)",
    "S12": "Solomon J et al., Quantitative comparison of noise texture across "
           "CT scanners from different manufacturers, Med Phys 2012, doi:10.1118/1.4752209 "
           "(GE Discovery CT750 HD vs Siemens Definition Flash; noise texture, not MTF)",
    "SM": "Siemens SOMATOM Sensation Cardiac operating instructions (version A60), 'Body "
          "Kernels': B31s/B41s about the same visual sharpness as B30s/B40s; B50s-B80s for "
          "higher sharpness",
    "NL": "NLST reconstruction-filter codes, soft/sharp pairs per vendor (GE STANDARD/BONE, "
          "Philips C/D, Siemens B30f/B50f, Toshiba FC10/FC51), as reproduced in a public "
          "indexing script: protocol roles, not measurements",
    "NLK": "ConvolutionKernel strings of NLST series grouped soft/average/sharp per vendor in a "
           "public NLST analysis script (code index): names as scanners write them, no figures",
    "P21": "Med Phys 2021;48:2760, doi:10.1002/mp.14789: Canon Aquilion Precision, FC30, "
           "normal-resolution mode, axial MTF10 1.10 /mm",
    "KJR": "Korean J Radiol study of Canon FC13/FC55: FC13 the conventional soft-tissue kernel, "
           "FC55 the conventional lung kernel",
    "YL15": "Yu L, Vrieze TJ, Leng S, Fletcher JG, McCollough CH, Technical Note: Measuring "
            "contrast- and noise-dependent spatial resolution of an iterative reconstruction "
            "method in CT using ensemble averaging, Med Phys 2015;42:2261, doi:10.1118/1.4916802 "
            "(SAFIRE I40-3/I40-5 MTF50 98.4/97.6 % of B40's at 21 HU and 16 mGy, 88.5/82.1 % "
            "at 7 HU)",
    "E21": "Bolard G, Commissioning of iterative model reconstruction (IMR) on Philips BigBore "
           "CT, ESTRO 2021 PO-1669: iDose level 4 with filter B as the routine reference",
    "DQ": "neurolabusc/dcm_qa_ct (dcm2niix CT test data, BSD-2): a GE HiSpeed Dual head series "
          "writes ConvolutionKernel 'STD+'",
    "I26": "kernelconv issue 26: the real Philips head series are labelled UB (brain) and YA "
           "(bone), the Philips chest L (lung) and B (body); role names only, those pairs are "
           "held out and were not used",
    "CN": "Canon/Toshiba FC numbering as the issue-26 brief gives it (body FC01-FC18, head "
          "FC20-FC31, lung FC50-FC86); not verified against a Canon manual",
}


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
_HEAD = ("ESTIMATE by its kernel number (number rule; head kernels on the body kernels' scale "
         "assumed, no head-kernel MTF found)")
_SAFIRE = ("ESTIMATE by its kernel number (number rule); SAFIRE is nonlinear, its resolution "
           "falls with contrast and dose [YL15]")
_SOFTEST = "; softer than B30f perhaps, but the rule has no softer anchor: B30f's figures"
_CANON_BODY = ("ESTIMATE: a Canon body kernel by its number [CN], name seen in NLST headers "
               "[NLK]; as B30f (no published MTF found)")
_CANON_HEAD = ("ESTIMATE: a Canon head kernel by its number [CN]; as a standard soft kernel, "
               "B30f (no published MTF found)")
_CANON_LUNG = ("ESTIMATE: a Canon lung kernel by its number [CN], name seen in NLST headers "
               "[NLK]; as FC51, B50f (no published MTF found)")
_CANON_HRLUNG = ("ESTIMATE: a Canon high-resolution lung kernel by its number [CN], name seen "
                 "in NLST headers [NLK]; as B70f (no published MTF found)")

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
                 "ESTIMATE: sharper than B70f [SM]; B70f's figures (the simulator's limit)"),
    # Siemens Force/Drive/Edge (ADMIRE era): body Br, lung Bl, vascular Bv, quantitative Qr
    VendorKernel("Siemens", "Br32", "body", 32, 0.25, _NUM_FAMILY),
    VendorKernel("Siemens", "Br36", "body", 36, 0.25, _NUM_FAMILY),
    VendorKernel("Siemens", "Br38", "body", 38, 0.25, _NUM_FAMILY),
    VendorKernel("Siemens", "Br40", "body", 40, 0.25, _NUM_FAMILY),
    VendorKernel("Siemens", "Br44", "body", 44, 0.25, _NUM_FAMILY),
    VendorKernel("Siemens", "Br49", "body", 49, 0.25, _NUM_FAMILY),
    VendorKernel("Siemens", "Br54", "body", 54, 0.25, _NUM_FAMILY),
    VendorKernel("Siemens", "Br59", "body", 59, 0.25, _NUM_FAMILY),
    VendorKernel("Siemens", "Br64", "bone", 64, 0.25, _NUM_FAMILY),
    VendorKernel("Siemens", "Bl54", "lung", 54, 0.25, _NUM_FAMILY),
    VendorKernel("Siemens", "Bl56", "lung", 56, 0.25, _NUM_FAMILY),
    VendorKernel("Siemens", "Bl57", "lung", 57, 0.25, _NUM_FAMILY),
    VendorKernel("Siemens", "Bl60", "lung", 60, 0.25, _NUM_FAMILY),
    VendorKernel("Siemens", "Bl64", "lung", 64, 0.25, _NUM_FAMILY),
    VendorKernel("Siemens", "Bv36", "body", 36, 0.3, _NUM_FAMILY),
    VendorKernel("Siemens", "Bv40", "body", 40, 0.3, _NUM_FAMILY),
    VendorKernel("Siemens", "Qr40", "body", 40, 0.25, _NUM_FAMILY),
    VendorKernel("Siemens", "Qr44", "body", 44, 0.25, _NUM_FAMILY),
    # Siemens SAFIRE iterative kernels (I-family; the image is not a plain FBP image)
    VendorKernel("Siemens", "I26f", "body", 26, 0.45, _SAFIRE + _SOFTEST),
    VendorKernel("Siemens", "I30f", "body", 30, 0.3, _SAFIRE),
    VendorKernel("Siemens", "I31f", "body", 31, 0.3, _SAFIRE),
    VendorKernel("Siemens", "I40f", "body", 40, 0.2,
                 "ESTIMATE: as B40f [O09]; SAFIRE I40 measured at 97.6-98.4 % of B40's MTF50 "
                 "at 21 HU and 16 mGy, 82-89 % at 7 HU, 91 % at 4 mGy (I40-3) [YL15]"),
    VendorKernel("Siemens", "I50f", "body", 50, 0.3, _SAFIRE),
    VendorKernel("Siemens", "I70f", "lung", 70, 0.35, _SAFIRE),
    # Siemens head kernels: H- (Sensation, Definition), Hr- (ADMIRE era), J- families
    VendorKernel("Siemens", "H30s", "brain", 30, 0.3, _HEAD),
    VendorKernel("Siemens", "H31s", "brain", 30, 0.3,
                 "ESTIMATE: as H30s, as B31 is as B30 [SM] (head family assumed alike)"),
    VendorKernel("Siemens", "H40s", "head", 40, 0.3, _HEAD),
    VendorKernel("Siemens", "H41s", "head", 40, 0.3,
                 "ESTIMATE: as H40s, as B41 is as B40 [SM] (head family assumed alike)"),
    VendorKernel("Siemens", "H45s", "head", 45, 0.3, _HEAD),
    VendorKernel("Siemens", "H50s", "head", 50, 0.3, _HEAD),
    VendorKernel("Siemens", "H60s", "bone", 60, 0.3, _HEAD),
    VendorKernel("Siemens", "H70h", "bone", 70, 0.35, _HEAD),
    VendorKernel("Siemens", "Hr32", "brain", 32, 0.3, _HEAD),
    VendorKernel("Siemens", "Hr36", "brain", 36, 0.3, _HEAD),
    VendorKernel("Siemens", "Hr38", "brain", 38, 0.3, _HEAD),
    VendorKernel("Siemens", "Hr40", "head", 40, 0.3, _HEAD),
    VendorKernel("Siemens", "Hr44", "head", 44, 0.3, _HEAD),
    VendorKernel("Siemens", "Hr49", "head", 49, 0.3, _HEAD),
    VendorKernel("Siemens", "Hr56", "bone", 56, 0.3, _HEAD),
    VendorKernel("Siemens", "Hr59", "bone", 59, 0.3, _HEAD),
    VendorKernel("Siemens", "Hr64", "bone", 64, 0.3, _HEAD),
    VendorKernel("Siemens", "Hr68", "bone", 68, 0.35, _HEAD),
    VendorKernel("Siemens", "J30s", "brain", 30, 0.35, _HEAD),
    VendorKernel("Siemens", "J40s", "head", 40, 0.35, _HEAD),
    VendorKernel("Siemens", "J45s", "head", 45, 0.35, _HEAD),
    VendorKernel("Siemens", "J70h", "bone", 70, 0.4, _HEAD),
    # GE (the same algorithm names serve head and body scans)
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
    VendorKernel("GE", "EDGE", "bone", 70, 0.45,
                 "ESTIMATE: sharper than BONEPLUS, as B70f (no source found)"),
    VendorKernel("GE", "STD+", "head", 43, 0.45,
                 "ESTIMATE: the head algorithm a GE HiSpeed Dual head series writes [DQ]; as "
                 "STANDARD, B43f [S12] (no source for its own response)"),
    # Philips
    VendorKernel("Philips", "B", "body", 30, 0.4,
                 "ESTIMATE: the routine body filter [E21] [I26], as B30f (no published MTF "
                 "found)"),
    VendorKernel("Philips", "C", "body", 30, 0.3, "ESTIMATE: NLST's soft member, as B30f [NL]"),
    VendorKernel("Philips", "D", "body", 50, 0.1,
                 "measured [O09] (digitised curve, +-10 %); NLST's sharp member [NL]",
                 sourced=True, mtf50=5.0, mtf10=9.1),
    VendorKernel("Philips", "E", "bone", 60, 0.35, "ESTIMATE: sharper than D (no source found)"),
    VendorKernel("Philips", "L", "lung", 60, 0.35,
                 "ESTIMATE: the lung filter [I26] (no published MTF found), as B60f"),
    VendorKernel("Philips", "YA", "bone", 70, 0.35,
                 "ESTIMATE: the bone filter of a Philips head [I26], as B70f (no published MTF "
                 "found)"),
    VendorKernel("Philips", "YB", "bone", 70, 0.4,
                 "ESTIMATE: a Y (bone) filter like YA [I26], as B70f (no source found)"),
    VendorKernel("Philips", "YC", "bone", 70, 0.4,
                 "ESTIMATE: a Y (bone) filter like YA [I26], as B70f (no source found)"),
    VendorKernel("Philips", "UA", "brain", 30, 0.45,
                 "ESTIMATE: a U (brain) filter like UB [I26]" + _SOFTEST),
    VendorKernel("Philips", "UB", "brain", 30, 0.4,
                 "ESTIMATE: the brain filter of a Philips head [I26], as a standard soft "
                 "kernel, B30f (no published MTF found)"),
    VendorKernel("Philips", "UC", "brain", 35, 0.45,
                 "ESTIMATE: a U (brain) filter like UB [I26], assumed a little sharper, as B35f "
                 "(no source found)"),
    # Canon / Toshiba
    VendorKernel("Canon", "FC01", "body", 30, 0.4, _CANON_BODY),
    VendorKernel("Canon", "FC02", "body", 30, 0.4, _CANON_BODY),
    VendorKernel("Canon", "FC08", "body", 30, 0.4, _CANON_BODY),
    VendorKernel("Canon", "FC10", "body", 30, 0.3, "ESTIMATE: NLST's soft member, as B30f [NL]"),
    VendorKernel("Canon", "FC11", "body", 30, 0.4, _CANON_BODY),
    VendorKernel("Canon", "FC12", "body", 30, 0.4, _CANON_BODY),
    VendorKernel("Canon", "FC13", "body", 30, 0.3,
                 "ESTIMATE: the conventional soft-tissue kernel [KJR], as B30f"),
    VendorKernel("Canon", "FC14", "body", 30, 0.4, _CANON_BODY),
    VendorKernel("Canon", "FC17", "body", 30, 0.4, _CANON_BODY),
    VendorKernel("Canon", "FC18", "body", 30, 0.35, "ESTIMATE: body kernel [CN], as B30f"),
    VendorKernel("Canon", "FC19", "body", 30, 0.4, _CANON_BODY),
    VendorKernel("Canon", "FC21", "head", 30, 0.45, _CANON_HEAD),
    VendorKernel("Canon", "FC22", "head", 30, 0.45, _CANON_HEAD),
    VendorKernel("Canon", "FC23", "head", 30, 0.45, _CANON_HEAD),
    VendorKernel("Canon", "FC24", "head", 30, 0.45,
                 _CANON_HEAD + "; also seen in NLST (chest) headers [NLK]"),
    VendorKernel("Canon", "FC25", "head", 30, 0.45, _CANON_HEAD),
    VendorKernel("Canon", "FC26", "head", 30, 0.45, _CANON_HEAD),
    VendorKernel("Canon", "FC27", "head", 30, 0.45, _CANON_HEAD),
    VendorKernel("Canon", "FC28", "head", 30, 0.45, _CANON_HEAD),
    VendorKernel("Canon", "FC30", "bone", 70, 0.2,
                 "ESTIMATE: MTF10 11.0 lp/cm measured on an Aquilion Precision, normal-"
                 "resolution mode [P21], as B70f's"),
    VendorKernel("Canon", "FC50", "lung", 50, 0.4, _CANON_LUNG),
    VendorKernel("Canon", "FC51", "lung", 50, 0.3, "ESTIMATE: NLST's sharp member, as B50f [NL]"),
    VendorKernel("Canon", "FC52", "lung", 50, 0.35, "ESTIMATE: lung kernel [CN], as FC51"),
    VendorKernel("Canon", "FC53", "lung", 50, 0.4, _CANON_LUNG),
    VendorKernel("Canon", "FC55", "lung", 50, 0.35,
                 "ESTIMATE: the conventional lung kernel [KJR], as FC51"),
    VendorKernel("Canon", "FC56", "lung", 50, 0.4, _CANON_LUNG),
    VendorKernel("Canon", "FC57", "lung", 50, 0.4, _CANON_LUNG),
    VendorKernel("Canon", "FC58", "lung", 50, 0.4, _CANON_LUNG),
    VendorKernel("Canon", "FC59", "lung", 50, 0.4, _CANON_LUNG),
    VendorKernel("Canon", "FC80", "lung", 70, 0.4, _CANON_HRLUNG),
    VendorKernel("Canon", "FC81", "lung", 70, 0.4, _CANON_HRLUNG),
    VendorKernel("Canon", "FC82", "lung", 70, 0.4, _CANON_HRLUNG),
    VendorKernel("Canon", "FC86", "lung", 70, 0.35,
                 "ESTIMATE: high-resolution lung kernel [CN], as B70f (no source found)"),
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
    'Br38': (4.7456, 1.997),
    'Br40': (4.9991, 2.0255),
    'Br44': (5.5181, 2.1153),
    'Br49': (6.2125, 2.2359),
    'Br54': (7.1309, 2.4352),
    'Br59': (8.1965, 2.7378),
    'Br64': (9.3857, 3.2956),
    'Bl54': (7.1309, 2.4352),
    'Bl56': (7.5429, 2.5403),
    'Bl57': (7.7559, 2.5998),
    'Bl60': (8.4244, 2.8193),
    'Bl64': (9.3857, 3.2956),
    'Bv36': (4.4995, 1.9678),
    'Bv40': (4.9991, 2.0255),
    'Qr40': (4.9991, 2.0255),
    'Qr44': (5.5181, 2.1153),
    'I26f': (3.7993, 1.8734),
    'I30f': (3.7993, 1.8734),
    'I31f': (3.9125, 1.8901),
    'I40f': (4.9991, 2.0255),
    'I50f': (6.3582, 2.262),
    'I70f': (10.8989, 6.0),
    'H30s': (3.7993, 1.8734),
    'H31s': (3.7993, 1.8734),
    'H40s': (4.9991, 2.0255),
    'H41s': (4.9991, 2.0255),
    'H45s': (5.6527, 2.1385),
    'H50s': (6.3582, 2.262),
    'H60s': (8.4244, 2.8193),
    'H70h': (10.8989, 6.0),
    'Hr32': (4.027, 1.9063),
    'Hr36': (4.4995, 1.9678),
    'Hr38': (4.7456, 1.997),
    'Hr40': (4.9991, 2.0255),
    'Hr44': (5.5181, 2.1153),
    'Hr49': (6.2125, 2.2359),
    'Hr56': (7.5429, 2.5403),
    'Hr59': (8.1965, 2.7378),
    'Hr64': (9.3857, 3.2956),
    'Hr68': (10.4078, 4.5252),
    'J30s': (3.7993, 1.8734),
    'J40s': (4.9991, 2.0255),
    'J45s': (5.6527, 2.1385),
    'J70h': (10.8989, 6.0),
    'SOFT': (4.3791, 1.9529),
    'STANDARD': (5.3856, 2.0926),
    'CHEST': (5.1261, 2.0477),
    'DETAIL': (5.7893, 2.162),
    'BONE': (6.3582, 2.262),
    'LUNG': (10.8989, 6.0),
    'BONEPLUS': (8.4244, 2.8193),
    'EDGE': (10.8989, 6.0),
    'STD+': (5.3856, 2.0926),
    'B': (3.7993, 1.8734),
    'C': (3.7993, 1.8734),
    'D': (6.4438, 1.3942),
    'E': (8.4244, 2.8193),
    'L': (8.4244, 2.8193),
    'YA': (10.8989, 6.0),
    'YB': (10.8989, 6.0),
    'YC': (10.8989, 6.0),
    'UA': (3.7993, 1.8734),
    'UB': (3.7993, 1.8734),
    'UC': (4.3791, 1.9529),
    'FC01': (3.7993, 1.8734),
    'FC02': (3.7993, 1.8734),
    'FC08': (3.7993, 1.8734),
    'FC10': (3.7993, 1.8734),
    'FC11': (3.7993, 1.8734),
    'FC12': (3.7993, 1.8734),
    'FC13': (3.7993, 1.8734),
    'FC14': (3.7993, 1.8734),
    'FC17': (3.7993, 1.8734),
    'FC18': (3.7993, 1.8734),
    'FC19': (3.7993, 1.8734),
    'FC21': (3.7993, 1.8734),
    'FC22': (3.7993, 1.8734),
    'FC23': (3.7993, 1.8734),
    'FC24': (3.7993, 1.8734),
    'FC25': (3.7993, 1.8734),
    'FC26': (3.7993, 1.8734),
    'FC27': (3.7993, 1.8734),
    'FC28': (3.7993, 1.8734),
    'FC30': (10.8989, 6.0),
    'FC50': (6.3582, 2.262),
    'FC51': (6.3582, 2.262),
    'FC52': (6.3582, 2.262),
    'FC53': (6.3582, 2.262),
    'FC55': (6.3582, 2.262),
    'FC56': (6.3582, 2.262),
    'FC57': (6.3582, 2.262),
    'FC58': (6.3582, 2.262),
    'FC59': (6.3582, 2.262),
    'FC80': (10.8989, 6.0),
    'FC81': (10.8989, 6.0),
    'FC82': (10.8989, 6.0),
    'FC86': (10.8989, 6.0),
}
