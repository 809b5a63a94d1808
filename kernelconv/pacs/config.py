"""The listener's settings: defaults here, once; a JSON file and the command line layer on top.

``ListenConfig()`` holds every default; ``updated(settings, origin)`` applies a mapping of
settings (the JSON config file's keys, or the command-line options, which have the same names
with underscores) and validates them, naming ``origin`` in errors. The command line overrides
the file, the file overrides the defaults (as pynetdicom's apps document their flags:
"override the configured value"). Engine and conversion defaults are those of `convert`
(:class:`kernelconv.engines.select.EngineSpec`, :class:`kernelconv.pipeline.ConvertOptions`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from kernelconv.engines.select import BACKENDS, METHODS, PRECISIONS, EngineSpec
from kernelconv.errors import UsageError
from kernelconv.fileio import read_settings_file
from kernelconv.pacs.forward import Destination
from kernelconv.pipeline import KERNEL_CHECKS, ConvertOptions

UNCONVERTIBLE = ("ignore", "forward")
#: setting names that differ from the field names (the options are --to, --from, --out-dir)
_FIELD_OF = {"to": "target", "source": "source", "out_dir": "out"}
#: older setting names still accepted (the option --out became --out-dir)
_OLD_NAMES = ("out",)


@dataclass(frozen=True)
class ListenConfig:
    """Every setting of `kernelconv listen`, with its default."""

    target: str = ""  # --to: required
    spool: Path = Path("kernelconv-spool")
    ae_title: str = "KERNELCONV"
    host: str = "0.0.0.0"
    port: int = 11112
    out: Path | None = None  # --out-dir
    forward: tuple[Destination, ...] = ()
    allow_ae: tuple[str, ...] = ()
    stable_seconds: float = 30.0
    unconvertible: str = "ignore"  # ignore | forward
    kernel_map: Path | None = None
    source: str | None = None  # --from: source kernel for every series
    batch_size: int = ConvertOptions.batch_size
    max_bias: float = ConvertOptions.max_bias
    kernel_check: str = ConvertOptions.kernel_check
    series_number_offset: int = ConvertOptions.series_number_offset
    retries: int = 5
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_ca: Path | None = None
    max_associations: int = 10
    method: str = EngineSpec.method
    model: str | None = EngineSpec.model
    device: str = EngineSpec.device
    precision: str = EngineSpec.precision
    backend: str | None = EngineSpec.backend
    kernel_table: Path | None = EngineSpec.kernel_table
    #: where each non-default setting came from, for messages
    origins: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    @staticmethod
    def setting_names() -> list[str]:
        """The names a config file or the command line may set."""
        inverse = {v: k for k, v in _FIELD_OF.items()}
        return [inverse.get(f.name, f.name) for f in fields(ListenConfig)
                if f.name != "origins"] + list(_OLD_NAMES)

    @staticmethod
    def read_file(path: Path) -> dict[str, Any]:
        """The settings of a JSON config file (validated by ``updated``)."""
        return read_settings_file(path, "listener config")

    def updated(self, settings: Mapping[str, Any], origin: str) -> ListenConfig:
        """These settings on top of this config; None (an option not given) changes nothing."""
        unknown = set(settings) - set(self.setting_names())
        if unknown:
            raise UsageError(f"{origin}: unknown setting(s) {', '.join(sorted(unknown))}")
        changes: dict[str, Any] = {}
        for key, raw in settings.items():
            if raw is None or (isinstance(raw, tuple | list) and not raw
                               and key in ("forward", "allow_ae")):
                continue
            name = _FIELD_OF.get(key, key)
            try:
                changes[name] = _parse(name, raw)
            except (TypeError, ValueError, UsageError) as exc:
                raise UsageError(f"{origin}: {key}: {exc}") from None
        origins = {**self.origins, **{k: origin for k in changes}}
        return replace(self, **changes, origins=origins)

    def validated(self) -> ListenConfig:
        """Checks that need all settings together."""
        if not self.target:
            raise UsageError("listen: --to KERNEL is required")
        if self.out is None and not self.forward:
            raise UsageError("listen: give --out-dir DIR and/or --forward AET@HOST:PORT")
        if self.tls_key and not self.tls_cert:
            raise UsageError("listen: --tls-key needs --tls-cert")
        return self

    def engine_spec(self) -> EngineSpec:
        return EngineSpec(self.method, self.model, self.device, self.precision, self.backend,
                          self.kernel_table)

    def convert_options(self, kernel_map: dict[str, str]) -> ConvertOptions:
        """The options each received series is converted with: the same as `convert`'s, into
        an existing derived series when instances arrive late (merge)."""
        return ConvertOptions(target=self.target, source_override=self.source,
                              kernel_map=kernel_map, batch_size=self.batch_size,
                              series_number_offset=self.series_number_offset, overwrite=True,
                              merge=True, max_bias=self.max_bias,
                              kernel_check=self.kernel_check)


def _choice(value: Any, allowed: tuple[str, ...]) -> str:
    text = str(value)
    if text not in allowed:
        raise ValueError(f"{text!r} is not one of {', '.join(allowed)}")
    return text


def _int_in(value: Any, lo: int, hi: int) -> int:
    if isinstance(value, bool) or float(value) != int(value):
        raise ValueError(f"{value!r} is not a whole number")
    number = int(value)
    if not lo <= number <= hi:
        raise ValueError(f"{number} is not in {lo}..{hi}")
    return number


def _parse(name: str, raw: Any) -> Any:
    """One setting's value, from JSON or from click (already typed), checked."""
    if name in ("spool", "out", "kernel_map", "kernel_table", "tls_cert", "tls_key", "tls_ca"):
        return Path(raw)
    if name == "forward":
        dests = [raw] if isinstance(raw, str | Destination) else list(raw)
        return tuple(d if isinstance(d, Destination) else Destination.parse(str(d))
                     for d in dests)
    if name == "allow_ae":
        titles = raw.split(",") if isinstance(raw, str) else [str(a) for a in raw]
        return tuple(a.strip() for a in titles if a.strip())
    if name == "port":
        return _int_in(raw, 1, 65535)
    if name == "batch_size":
        return _int_in(raw, 1, 1024)
    if name == "retries":
        return _int_in(raw, 1, 100)
    if name == "max_associations":
        return _int_in(raw, 1, 1000)
    if name == "series_number_offset":
        return _int_in(raw, 0, 1_000_000)
    if name == "max_bias":
        bias = float(raw)
        if not bias >= 0:
            raise ValueError(f"{raw!r} is not a limit >= 0 HU")
        return bias
    if name == "stable_seconds":
        seconds = float(raw)
        if seconds < 0.1:
            raise ValueError(f"{seconds} is below 0.1 s")
        return seconds
    if name == "unconvertible":
        return _choice(raw, UNCONVERTIBLE)
    if name == "kernel_check":
        return _choice(raw, KERNEL_CHECKS)
    if name == "method":
        return _choice(raw, METHODS)
    if name == "precision":
        return _choice(raw, PRECISIONS)
    if name == "backend":
        return _choice(raw, BACKENDS)
    return str(raw)
