"""A plain (non-editable) `pip install .` finds the bundled models and example data."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest
from helpers import make_tiny_model

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_plain_pip_install_finds_bundled_models_and_examples(tmp_path: Path) -> None:
    env_dir = tmp_path / "venv"
    # system site packages: reuse the already installed torch/pydicom instead of downloading
    venv.create(env_dir, system_site_packages=True, with_pip=True)
    py = env_dir / "bin" / "python"
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(
        ".git", "*.egg-info", "build", "__pycache__", ".*_cache", ".hypothesis"))
    # build the wheel with this interpreter's setuptools (no download), install it plainly
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                    "--no-build-isolation", "-w", str(dist), str(src)], check=True, cwd=tmp_path)
    [wheel] = list(dist.glob("kernelconv-*.whl"))
    subprocess.run([py, "-m", "pip", "install", "--quiet", "--no-deps", str(wheel)], check=True,
                   cwd=tmp_path)
    shutil.rmtree(src)  # nothing may come from the source tree any more
    probe = subprocess.run(
        [py, "-c", "import json, kernelconv, kernelconv.bundled as b, kernelconv.sim.series, "
         "kernelconv.evaluation.qa, kernelconv.evaluation.evaluate, kernelconv.training.loop, "
         "kernelconv.pacs.server; print(json.dumps("
         "[kernelconv.__file__, str(b.bundled_models_dir()), str(b.example_series_dir())]))"],
        check=True, capture_output=True, text=True, cwd=tmp_path)
    module, models, examples = json.loads(probe.stdout)
    assert str(env_dir) in module, "imported the source tree, not the installed package"
    assert str(env_dir) in models and (Path(models) / "README.md").is_file()
    assert str(env_dir) in examples and len(list(Path(examples).iterdir())) == 4
    # the shipped default model is installed with the package and converts the example
    default = (ROOT / "models" / "DEFAULT").read_text().strip()
    assert (Path(models) / f"{default}.safetensors").is_file()
    exe = env_dir / "bin" / "kernelconv"
    env = {"PATH": str(env_dir / "bin"), "HOME": str(tmp_path), "KERNELCONV_MODELS":
           str(tmp_path / "user-models")}
    listing = subprocess.run([exe, "models"], capture_output=True, text=True, env=env,
                             cwd=tmp_path)
    assert listing.returncode == 0 and default in listing.stdout
    run = subprocess.run([exe, "convert", examples, tmp_path / "out", "--to", "B30f"],
                         capture_output=True, text=True, env=env, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    report = json.loads((tmp_path / "out" / "kernelconv-report.json").read_text())
    assert report["series"][0]["status"] == "converted"
    assert f"model {default}@" in report["method"]
    # a model dropped into the installed bundle can become the default
    make_tiny_model(Path(models) / "bundled-tiny.safetensors", name="bundled-tiny")
    (Path(models) / "DEFAULT").write_text("bundled-tiny\n")
    listing = subprocess.run([exe, "models"], capture_output=True, text=True, env=env,
                             cwd=tmp_path)
    assert listing.returncode == 0 and "bundled-tiny" in listing.stdout
