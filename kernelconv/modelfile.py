"""The kernelconv model file: generator weights (safetensors) plus JSON metadata, one file.

Layout: a standard ``.safetensors`` file whose header ``__metadata__`` holds one key,
``kernelconv``, a JSON document::

    {"format": "kernelconv-model", "format_version": 1, "name": ..., "architecture":
     "ggcl-stargan-generator", "arch_args": {...}, "domains": ["B30f", "B50f", "B70f"],
     "domain_sharpness": {...}, "hu_range": [-1024, 3071], "provenance": {...},
     "weights_sha256": "<sha256 of the tensor data section>"}

The checksum covers every tensor byte and is verified on load, so a truncated or altered file is
refused with a clear error instead of converting with damaged weights. The model id used in
derived UIDs and DerivationDescription is ``name@<first 12 hex digits of the checksum>``.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kernelconv.bundled import bundled_models_dir
from kernelconv.errors import ModelError, NoModelError
from kernelconv.fileio import atomic_write_bytes
from kernelconv.hu import HU_MAX, HU_MIN

FORMAT = "kernelconv-model"
FORMAT_VERSION = 1
ARCHITECTURE = "ggcl-stargan-generator"
SUFFIX = ".safetensors"
DEFAULT_FILE = "DEFAULT"  # in a models directory: the name of the default model, one line


@dataclass
class ModelInfo:
    """Metadata of a model file (everything but the weights)."""

    name: str
    domains: list[str]
    arch_args: dict[str, Any]
    hu_range: tuple[float, float] = (HU_MIN, HU_MAX)
    domain_sharpness: dict[str, float] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    architecture: str = ARCHITECTURE
    weights_sha256: str = ""
    path: Path | None = None
    #: responses (kernel_response JSON) of the base filter a filter_residual model corrects;
    #: empty: the built-in table
    kernel_responses: list[dict[str, Any]] = field(default_factory=list)
    #: a site calibration's fitted transfers between the model's kernels (the JSON of a
    #: `kernelconv calibrate` table's "transfers"), which its base filter and route filter
    #: convert with where present (extension); in the derived UIDs through the table digest
    kernel_transfers: list[dict[str, Any]] = field(default_factory=list)
    #: per-direction use ("SRC->TGT": "network" | "filter"), chosen by measurement: a
    #: direction where the network does not beat its filter runs the noise-limited filter
    #: (extension). Empty: the network everywhere. Not covered by the weights' checksum, so
    #: engines put its digest into their method id (:func:`direction_use_digest`).
    direction_use: dict[str, str] = field(default_factory=dict)

    @property
    def model_id(self) -> str:
        return f"{self.name}@{self.weights_sha256[:12]}"

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT, "format_version": FORMAT_VERSION, "name": self.name,
            "architecture": self.architecture, "arch_args": self.arch_args,
            "domains": self.domains, "domain_sharpness": self.domain_sharpness,
            "hu_range": list(self.hu_range), "provenance": self.provenance,
            "weights_sha256": self.weights_sha256,
            **({"kernel_responses": self.kernel_responses} if self.kernel_responses else {}),
            **({"kernel_transfers": self.kernel_transfers} if self.kernel_transfers else {}),
            **({"direction_use": self.direction_use} if self.direction_use else {}),
        }


DIRECTION_USES = ("network", "filter")


def direction_key(source: str, target: str) -> str:
    """The key of one conversion direction in :attr:`ModelInfo.direction_use`."""
    return f"{source}->{target}"


def direction_use_digest(use: Mapping[str, str]) -> str:
    """8 hex digits naming a per-direction use map ("" when empty: the network everywhere)."""
    if not use:
        return ""
    text = json.dumps(dict(sorted(use.items())), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def kernels_digest(info: ModelInfo) -> str:
    """8 hex digits naming the kernel responses and fitted transfers a model file stores ("":
    none): metadata outside the weights' checksum that changes what the model converts, so a
    derived file (an ONNX export) made from other metadata is told apart."""
    if not info.kernel_responses and not info.kernel_transfers:
        return ""
    text = json.dumps([info.kernel_responses, info.kernel_transfers], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def validate_direction_use(domains: list[str], use: Mapping[str, Any]) -> dict[str, str]:
    """``use`` checked against the model's domains: keys SRC->TGT of two different domains,
    values network or filter. Raises ValueError naming the first bad entry."""
    clean: dict[str, str] = {}
    for key, value in use.items():
        src, sep, tgt = str(key).partition("->")
        if not sep or src not in domains or tgt not in domains or src == tgt:
            raise ValueError(f"direction {key!r} is not SRC->TGT of two of the model's "
                             f"kernels ({', '.join(domains)})")
        if value not in DIRECTION_USES:
            raise ValueError(f"direction {key}: use {value!r} is not network or filter")
        clean[direction_key(src, tgt)] = str(value)
    return clean


def save_model(path: Path, info: ModelInfo, state_dict: Mapping[str, Any]) -> ModelInfo:
    """Write ``state_dict`` with ``info`` to ``path`` atomically; returns info with its checksum."""
    from safetensors.torch import save

    tensors = {k: v.detach().contiguous().cpu() for k, v in state_dict.items()}
    plain = save(tensors)  # the data section does not depend on the metadata
    header_len = struct.unpack("<Q", plain[:8])[0]
    info.weights_sha256 = hashlib.sha256(plain[8 + header_len:]).hexdigest()
    blob = save(tensors, metadata={"kernelconv": json.dumps(info.to_json(), sort_keys=True)})
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, blob)
    info.path = path
    return info


def _split(path: Path, blob: bytes) -> tuple[dict[str, Any], bytes]:
    if len(blob) < 8:
        raise ModelError(f"{path}: not a kernelconv model file (too short)")
    header_len = struct.unpack("<Q", blob[:8])[0]
    if header_len > len(blob) - 8:
        raise ModelError(f"{path}: not a kernelconv model file (corrupt or truncated header)")
    try:
        header = json.loads(blob[8:8 + header_len])
        meta = json.loads(header["__metadata__"]["kernelconv"])
    except (ValueError, KeyError, TypeError):
        raise ModelError(f"{path}: not a kernelconv model file (no kernelconv metadata)") from None
    return meta, blob[8 + header_len:]


def info_from_metadata(path: Path, meta: dict[str, Any]) -> ModelInfo:
    """Validate a model's JSON metadata (safetensors header or ONNX metadata_props)."""
    if meta.get("format") != FORMAT:
        raise ModelError(f"{path}: not a kernelconv model file (format {meta.get('format')!r})")
    version = meta.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ModelError(
            f"{path}: model format version {version} is newer than this kernelconv supports "
            f"({FORMAT_VERSION}); upgrade kernelconv"
        )
    if meta.get("architecture") != ARCHITECTURE:
        raise ModelError(f"{path}: unsupported architecture {meta.get('architecture')!r}")
    try:
        domains = [str(d) for d in meta["domains"]]
        hu = meta.get("hu_range", [HU_MIN, HU_MAX])
        info = ModelInfo(
            name=str(meta["name"]), domains=domains, arch_args=dict(meta["arch_args"]),
            hu_range=(float(hu[0]), float(hu[1])),
            domain_sharpness={str(k): float(v) for k, v in meta.get("domain_sharpness", {}).items()},
            provenance=dict(meta.get("provenance", {})), architecture=meta["architecture"],
            weights_sha256=str(meta["weights_sha256"]), path=path,
            kernel_responses=list(meta.get("kernel_responses") or []),
            kernel_transfers=list(meta.get("kernel_transfers") or []),
            direction_use=validate_direction_use(domains, dict(meta.get("direction_use") or {})),
        )
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise ModelError(f"{path}: incomplete model metadata ({exc})") from None
    if int(info.arch_args.get("c_dim", len(domains))) != len(domains):
        raise ModelError(f"{path}: {len(domains)} domains but c_dim={info.arch_args.get('c_dim')}")
    if not info.hu_range[0] < info.hu_range[1]:
        raise ModelError(f"{path}: invalid hu_range {info.hu_range}")
    return info


def read_info(path: Path) -> ModelInfo:
    """Read only the metadata (no checksum verification, no tensors)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
            if len(head) < 8:
                raise ModelError(f"{path}: not a kernelconv model file (too short)")
            n = struct.unpack("<Q", head)[0]
            if n > 100_000_000:
                raise ModelError(f"{path}: not a kernelconv model file (corrupt header)")
            blob = head + fh.read(n)
    except OSError as exc:
        raise ModelError(f"{path}: cannot read model file ({exc.strerror})") from None
    meta, _ = _split(path, blob)
    return info_from_metadata(path, meta)


def load_model(path: Path) -> tuple[ModelInfo, dict[str, Any]]:
    """Read, verify (sha256 of the tensor data) and return (info, state_dict of CPU tensors)."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    try:
        blob = path.read_bytes()
    except OSError as exc:
        raise ModelError(f"{path}: cannot read model file ({exc.strerror})") from None
    meta, data = _split(path, blob)
    info = info_from_metadata(path, meta)
    if hashlib.sha256(data).hexdigest() != info.weights_sha256:
        raise ModelError(f"{path}: checksum mismatch, the model file is corrupt; download or "
                         "export it again")
    try:
        state = load(blob)
    except (SafetensorError, ValueError) as exc:
        raise ModelError(f"{path}: corrupt tensor data ({exc})") from None
    return info, state


# ----------------------------------------------------------------------------- discovery

def user_models_dir() -> Path:
    """``$KERNELCONV_MODELS``, else ``$XDG_DATA_HOME/kernelconv/models`` (~/.local/share/...)."""
    env = os.environ.get("KERNELCONV_MODELS")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "kernelconv" / "models"


def model_dirs() -> list[tuple[str, Path]]:
    """(origin, directory) pairs searched for models by name: user first, then bundled."""
    dirs = [("user", user_models_dir())]
    bundled = bundled_models_dir()
    if bundled is not None:
        dirs.append(("bundled", bundled))
    return dirs


@dataclass
class ModelEntry:
    origin: str
    path: Path
    info: ModelInfo | None
    error: str | None = None
    default: bool = False


def default_model_name() -> str | None:
    """``$KERNELCONV_DEFAULT_MODEL``, else the DEFAULT file of the user or bundled directory."""
    env = os.environ.get("KERNELCONV_DEFAULT_MODEL")
    if env:
        return env.strip()
    for _, d in model_dirs():
        marker = d / DEFAULT_FILE
        if marker.is_file():
            name = marker.read_text(encoding="utf-8").strip()
            if name:
                return name
    return None


def list_models() -> list[ModelEntry]:
    """Every model file in the user and bundled directories, with metadata or the read error."""
    default = default_model_name()
    entries: list[ModelEntry] = []
    for origin, d in model_dirs():
        if not d.is_dir():
            continue
        for path in sorted(d.glob(f"*{SUFFIX}")):
            try:
                info: ModelInfo | None = read_info(path)
                err = None
            except ModelError as exc:
                info, err = None, str(exc)
            name = path.name[: -len(SUFFIX)]
            entries.append(ModelEntry(origin, path, info, err, default == name))
    return entries


HOW_TO_GET_A_MODEL = (
    "no kernel-conversion model is installed (the bundled default is missing or was not "
    "selected: reinstall kernelconv, or set KERNELCONV_DEFAULT_MODEL): train one with `kernelconv train` and `kernelconv export` (docs/training.md), or put a "
    "model file (*.safetensors) in {user_dir} and pass --model NAME, or pass --model PATH; "
    "`kernelconv convert --method filter` needs no model"
)


def resolve_model(spec: str | None) -> Path:
    """A model file path from ``--model NAME|PATH`` or, when None, the default model."""
    if spec is None:
        spec = default_model_name()
        if spec is None:
            raise NoModelError(HOW_TO_GET_A_MODEL.format(user_dir=user_models_dir()))
    candidate = Path(spec).expanduser()
    if candidate.suffix == SUFFIX or os.sep in spec or candidate.is_file():
        if not candidate.is_file():
            raise ModelError(f"{spec}: model file not found")
        return candidate
    for _, d in model_dirs():
        path = d / f"{spec}{SUFFIX}"
        if path.is_file():
            return path
    known = sorted({e.path.name[: -len(SUFFIX)] for e in list_models()})
    raise ModelError(
        f"model {spec!r} not found; installed: {', '.join(known) if known else 'none'} "
        f"(searched {', '.join(str(d) for _, d in model_dirs())})"
    )
