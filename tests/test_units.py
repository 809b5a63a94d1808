"""Unit tests: HU mapping, kernels, generator, model files, paths, UIDs."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import make_tiny_model
from hypothesis import given, settings
from hypothesis import strategies as st

from kernelconv.dicom.derived import Derivation, derived_uid
from kernelconv.dicom.paths import file_names, sanitise
from kernelconv.errors import KernelError, ModelError
from kernelconv.hu import hu_to_stored, hu_to_unit, stored_range, stored_to_hu, unit_to_hu
from kernelconv.kernels import KernelAliases, read_kernel_map
from kernelconv.modelfile import load_model, read_info
from kernelconv.nets import Generator, GeneratorConfig


def test_paper_normalisation_endpoints() -> None:
    hu = np.array([-3000, -1024, 1023.5, 3071, 5000], dtype=np.float32)
    np.testing.assert_allclose(hu_to_unit(hu), [-1, -1, 0, 1, 1], atol=1e-6)
    np.testing.assert_allclose(unit_to_hu(np.array([-1.0, 0.0, 1.0])), [-1024, 1023.5, 3071])


@given(st.integers(-1024, 3071))
def test_unit_round_trip_within_a_thousandth_hu(h: int) -> None:
    back = unit_to_hu(hu_to_unit(np.array([h], dtype=np.float32)))[0]
    assert abs(float(back) - h) < 1e-3


@settings(max_examples=200)
@given(bits=st.integers(12, 16), signed=st.booleans(), slope=st.sampled_from([1.0, 0.5, 2.0]),
       intercept=st.sampled_from([-1024.0, 0.0, -8192.0]), data=st.data())
def test_stored_hu_round_trip_is_exact(bits, signed, slope, intercept, data) -> None:
    lo, hi = stored_range(bits, signed)
    stored = np.array(data.draw(st.lists(st.integers(lo, hi), min_size=1, max_size=20)))
    hu = stored_to_hu(stored, slope, intercept)
    back = hu_to_stored(hu, slope, intercept, bits, signed)
    np.testing.assert_array_equal(back, stored)


def test_hu_to_stored_rounds_and_clips() -> None:
    out = hu_to_stored(np.array([-1023.6, -1023.4, 10.5, 11.5, 99999.0]), 1.0, -1024.0, 12,
                       False)
    np.testing.assert_array_equal(out, [0, 1, 1034, 1036, 4095])  # rint: half to even


def test_kernel_table_aliases_and_errors(tmp_path: Path) -> None:
    table = KernelAliases.for_domains(["B30f", "B50f", "B70f"])
    assert table.resolve(" b30S ") == "B30f"
    assert table.resolve("B70f") == "B70f"
    assert table.resolve("B30") == "B30f"  # Siemens names written without the mode letter
    with pytest.raises(KernelError, match="'FC51'.*B30f, B50f, B70f"):
        table.resolve("FC51")
    kmap = tmp_path / "k.txt"
    kmap.write_text("STANDARD = B30f  # GE\n\nLUNG=b70F\n")
    table = KernelAliases.for_domains(["B30f", "B50f", "B70f"], read_kernel_map(kmap))
    assert table.resolve("standard") == "B30f" and table.resolve("LUNG") == "B70f"
    kmap.write_text("nonsense line\n")
    with pytest.raises(Exception, match="k.txt:1"):
        read_kernel_map(kmap)


def test_generator_matches_the_paper_at_default_widths() -> None:
    g = Generator()
    assert sum(p.numel() for p in g.parameters()) == 9_230_912  # 9.23 M (reference notes)
    assert all(m.bias is None for m in g.modules() if isinstance(m, torch.nn.Conv2d))
    assert g.feature_channels == 128
    x = torch.zeros(2, 1, 64, 48)
    out, feat = g(x, torch.tensor([0, 2]), return_feature=True)
    assert out.shape == (2, 1, 64, 48) and feat.shape == (2, 128, 32, 24)
    assert out.abs().max() <= 1.0


def test_generator_label_changes_output() -> None:
    torch.manual_seed(0)
    g = Generator(GeneratorConfig(conv_dim=8, n_res=1)).eval()
    x = torch.randn(1, 1, 32, 32).clamp(-1, 1)
    with torch.no_grad():
        assert not torch.allclose(g(x, torch.tensor([0])), g(x, torch.tensor([2])))


def test_generator_config_validation() -> None:
    with pytest.raises(ValueError, match="unknown"):
        GeneratorConfig.from_dict({"c_dim": 3, "width": 4})
    assert GeneratorConfig.from_dict({"c_dim": 2, "conv_dim": 16}).size_multiple == 4


def test_model_file_round_trip_and_checksum(tmp_path: Path) -> None:
    path = make_tiny_model(tmp_path / "m.safetensors")
    info, state = load_model(path)
    assert info.domains == ["B30f", "B50f", "B70f"]
    assert info.model_id.startswith("tiny@") and len(info.model_id) == len("tiny@") + 12
    g = Generator(GeneratorConfig.from_dict(info.arch_args))
    g.load_state_dict(state)
    assert read_info(path).weights_sha256 == info.weights_sha256
    blob = bytearray(path.read_bytes())
    blob[-1] ^= 1
    path.write_bytes(bytes(blob))
    with pytest.raises(ModelError, match="checksum mismatch"):
        load_model(path)


def test_model_file_rejects_garbage_and_newer_format(tmp_path: Path) -> None:
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00" * 4)
    with pytest.raises(ModelError, match="too short"):
        load_model(junk)
    junk.write_bytes(struct.pack("<Q", 10**9) + b"{}")
    with pytest.raises(ModelError, match="corrupt"):
        load_model(junk)
    path = make_tiny_model(tmp_path / "m.safetensors")
    blob = path.read_bytes()
    n = struct.unpack("<Q", blob[:8])[0]
    header = json.loads(blob[8:8 + n])
    meta = json.loads(header["__metadata__"]["kernelconv"])
    meta["format_version"] = 99
    header["__metadata__"]["kernelconv"] = json.dumps(meta)
    new = json.dumps(header).encode()
    new += b" " * (-len(new) % 8)
    path.write_bytes(struct.pack("<Q", len(new)) + new + blob[8 + n:])
    with pytest.raises(ModelError, match="newer than this kernelconv"):
        read_info(path)


@given(st.text(max_size=300))
def test_sanitised_names_are_safe(text: str) -> None:
    name = sanitise(text)
    assert name and "/" not in name and "\\" not in name
    assert not name.startswith(".") and len(name) <= 120
    assert set(name) <= set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


def test_file_names_unique() -> None:
    names = file_names([Path("a/IM1"), Path("b/IM1"), Path("c/im1"), Path("x/../..")])
    assert len({n.lower() for n in names}) == 4


@given(st.text(min_size=1, max_size=64), st.text(min_size=1, max_size=20))
def test_derived_uids_are_valid_and_deterministic(src: str, model: str) -> None:
    key = Derivation("B70f", "B30f", "", model, True).key
    a = derived_uid("instance", src, key)
    assert a == derived_uid("instance", src, key)
    assert a != derived_uid("instance", src, Derivation("B70f", "B50f", "", model, True).key)
    assert a != derived_uid("series", src, key)
    assert len(a) <= 64 and all(part.isdigit() for part in a.split("."))
