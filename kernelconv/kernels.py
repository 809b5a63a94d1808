"""Kernel names, their aliases, and the domains a model (or the filter) converts between.

A *domain* is one of a model's label classes (e.g. ``B30f``); the model file lists its domains in
label order. :class:`KernelAliases` maps the ConvolutionKernel names found in DICOM headers onto
those domains. (What a kernel does to the image, its frequency response, is a different table:
:mod:`kernelconv.kernel_response`.) Matching ignores case and surrounding spaces.

Built-in aliases are deliberately conservative: Siemens appends a letter to the kernel number for
the acquisition mode (``f`` fast, ``s`` sequence/standard, ``h`` head, ``u`` ultra-high
resolution, ``d`` on Force/Drive kernels such as ``Br40d``), and the same number with another
letter names the same filter shape, so ``B30s`` is read as ``B30f``, as is ``B30`` (written
without a letter, as in NLST headers). Other vendors' kernels are
domains of the filter, and of a model (which converts them with its filter where its network
has no label; kernelconv.engines.model_kernels), in their own right (kernelconv.vendor_kernels:
GE ``STANDARD``, Canon ``FC13``...); they are never read as one of a network's labels. A site
that wants its kernel read as a label says so in a kernel-map file (``--kernel-map``;
examples/vendor-kernel-map.txt lists the vendor table's estimated equivalences)::

    # my-kernels.txt: ALIAS = DOMAIN, one per line
    STANDARD = B30f
    LUNG     = B70f
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from kernelconv.errors import KernelError, UsageError

_SIEMENS = re.compile(r"^([BHIJQ][a-z]?)(\d{2})([fshud]?)$", re.IGNORECASE)


def _key(name: str) -> str:
    return name.strip().lower()


def first_kernel_value(value: object) -> str | None:
    """The first value of a (possibly multi-valued) ConvolutionKernel, or None when empty."""
    if value is None:
        return None
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        values = [str(v) for v in value]  # type: ignore[attr-defined]
        value = values[0] if values else ""
    text = str(value).strip()
    return text or None


class KernelMapError(UsageError):
    """A kernel-map file that cannot be parsed."""


@dataclass
class KernelAliases:
    """Maps header kernel names onto the domains of a model or the filter."""

    domains: tuple[str, ...]
    aliases: dict[str, str] = field(default_factory=dict)  # lower-case alias -> domain

    @classmethod
    def for_domains(
        cls, domains: Iterable[str], extra: Mapping[str, str] | None = None
    ) -> KernelAliases:
        """The built-in table for ``domains`` plus user aliases ``extra`` (alias -> domain)."""
        doms = tuple(domains)
        table = cls(doms)
        for dom in doms:
            table.aliases[_key(dom)] = dom
            m = _SIEMENS.match(dom.strip())
            if m:  # same Siemens kernel number, other acquisition-mode letter
                for letter in ("f", "s", "h", "u", "d", ""):  # "" : B30 as written in NLST
                    table.aliases.setdefault(_key(f"{m.group(1)}{m.group(2)}{letter}"), dom)
        for alias, dom in (extra or {}).items():
            canon = table.aliases.get(_key(dom))
            if canon is None:
                raise KernelMapError(
                    f"kernel map: {alias!r} maps to {dom!r}, which is not one of the model's "
                    f"kernels ({table.listing()})"
                )
            table.aliases[_key(alias)] = canon
        return table

    def listing(self, limit: int = 12) -> str:
        """The domains for a message: all of them, or the first ``limit`` and the count."""
        if len(self.domains) <= limit:
            return ", ".join(self.domains)
        return f"{', '.join(self.domains[:limit])}, ... ({len(self.domains)} in all)"

    def resolve(self, kernel: str) -> str:
        """The domain a header kernel name belongs to; KernelError naming the known ones if none."""
        dom = self.aliases.get(_key(kernel))
        if dom is None:
            raise KernelError(
                f"unknown kernel {kernel.strip()!r}; the model knows {self.listing()} "
                "(add an alias with --kernel-map, or give --from)"
            )
        return dom

    def resolve_target(self, target: str, owner: str = "the model") -> str:
        """The domain of a requested target kernel (``--to``); a UsageError naming ``owner``
        (e.g. "the model", "the filter") and its kernels when there is none. Convert and listen
        both resolve their target here."""
        dom = self.aliases.get(_key(target))
        if dom is None:
            raise UsageError(f"--to {target.strip()}: not one of the kernels of {owner} "
                             f"({self.listing()}); add an alias with --kernel-map")
        return dom


def read_kernel_map(path: Path) -> dict[str, str]:
    """Parse a kernel-map file: ``ALIAS = DOMAIN`` per line, ``#`` starts a comment."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise KernelMapError(f"{path}: cannot read kernel map ({exc})") from None
    mapping: dict[str, str] = {}
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        alias, sep, dom = line.partition("=")
        if not sep or not alias.strip() or not dom.strip():
            raise KernelMapError(f"{path}:{lineno}: expected 'ALIAS = KERNEL', got {raw.strip()!r}")
        mapping[alias.strip()] = dom.strip()
    return mapping

