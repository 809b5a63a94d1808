"""The command line: --version, --help with examples on every command, models listing."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import make_tiny_model, run_cli

from kernelconv import __version__
from kernelconv.cli import cli


def test_version(capsys) -> None:
    code, out, _ = run_cli(["--version"], capsys)
    assert code == 0 and __version__ in out


@pytest.mark.parametrize("command", [[]] + [[name] for name in cli.commands])
def test_every_command_has_help_with_examples(command: list[str], capsys) -> None:
    code, out, _ = run_cli([*command, "--help"], capsys)
    assert code == 0
    assert "Examples:" in out and "kernelconv" in out


def test_bad_option_is_a_usage_error(capsys) -> None:
    code, _, err = run_cli(["convert", "a", "b"], capsys)
    assert code == 2 and "--to" in err


def test_models_lists_user_models_and_default(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("KERNELCONV_MODELS", str(tmp_path))
    make_tiny_model(tmp_path / "alpha.safetensors", name="alpha")
    (tmp_path / "broken.safetensors").write_bytes(b"nope")
    (tmp_path / "DEFAULT").write_text("alpha\n")
    monkeypatch.delenv("KERNELCONV_DEFAULT_MODEL", raising=False)
    code, out, _ = run_cli(["models"], capsys)
    assert code == 0
    from kernelconv.modelfile import read_info

    digest = read_info(tmp_path / "alpha.safetensors").weights_sha256[:12]
    assert "alpha" in out and f"@{digest}" in out and "B30f,B50f,B70f" in out
    assert "broken" in out and "too short" in out
    from kernelconv.modelfile import default_model_name, resolve_model

    assert default_model_name() == "alpha"
    assert resolve_model(None) == tmp_path / "alpha.safetensors"
    assert resolve_model("alpha") == tmp_path / "alpha.safetensors"


def test_tables_fit_80_columns_without_cutting_headers(tmp_path: Path, capsys,
                                                        monkeypatch) -> None:
    from helpers import dicom_file, make_series

    monkeypatch.setenv("COLUMNS", "80")
    deep = tmp_path / "in" / ("a long archive folder name " * 3).strip() / "patient 0001" / "ct"
    make_series(dicom_file("693_UNCR.dcm"), deep, 2)
    for _ in range(2):  # converted, then skipped with a long note
        code, out, err = run_cli(["convert", tmp_path / "in", tmp_path / "out", "--to", "B30f",
                                  "--method", "filter"], capsys)
        assert code == 0, err
        lines = out.splitlines()
        assert max(len(line) for line in lines) <= 80
        header = next(line for line in lines if "series" in line and "status" in line)
        for word in ("series", "kernel", "images", "status", "note"):
            assert word in header
        rows = [line for line in lines if line.startswith("│")]
        first_cells = " ".join(row.split("│")[1].strip() for row in rows)
        assert "patient 0001/ct #" in first_cells  # the end of the path, which tells it apart
        assert str(tmp_path) not in first_cells  # relative to IN, not the whole path
        assert len(rows) <= 4


def test_unknown_target_names_the_filter_when_no_model_is_used(tmp_path: Path, capsys) -> None:
    from helpers import dicom_file, make_series

    make_series(dicom_file("693_UNCR.dcm"), tmp_path / "in", 1)
    code, _, err = run_cli(["convert", tmp_path / "in", tmp_path / "out", "--to", "Xq99",
                            "--method", "filter"], capsys)
    assert code == 2
    assert "--to Xq99: not one of the kernels of the filter (B30f, B50f, B70f, " in err
    assert "in all" in err and len(err.strip().splitlines()) == 1
    assert "model" not in err
    assert not (tmp_path / "out").exists()


def test_listen_resolves_the_target_like_convert(tmp_path: Path, capsys) -> None:
    code, _, err = run_cli(["listen", "--to", "Xq99", "--method", "filter", "--out",
                            tmp_path / "out", "--spool", tmp_path / "spool"], capsys)
    assert code == 2
    assert "--to Xq99: not one of the kernels of the filter" in err


def test_folder_without_ct_series_still_writes_its_report(tmp_path: Path, capsys) -> None:
    import json

    src = tmp_path / "in"
    src.mkdir()
    (src / "notes.txt").write_text("not dicom")
    (src / "junk.bin").write_bytes(bytes(range(256)) * 4)
    code, _, err = run_cli(["convert", src, tmp_path / "out", "--to", "B30f", "--method",
                            "filter"], capsys)
    assert code == 4 and "no CT series found (2 file(s)" in err
    default = tmp_path / "out" / "kernelconv-report.json"
    assert str(default) in err
    report = json.loads(default.read_text())
    assert report["series"] == []
    assert {Path(s["path"]).name: s["reason"] for s in report["skipped_files"]} == {
        "notes.txt": "not a DICOM file", "junk.bin": "not a DICOM file"}
    chosen = tmp_path / "elsewhere" / "report.json"
    code, _, err = run_cli(["convert", src, tmp_path / "out2", "--to", "B30f", "--method",
                            "filter", "--report", chosen], capsys)
    assert code == 4 and len(json.loads(chosen.read_text())["skipped_files"]) == 2
    assert not (tmp_path / "out2").exists()  # only the report, where it was asked for
