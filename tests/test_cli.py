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
