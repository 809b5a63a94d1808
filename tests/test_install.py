"""A plain (non-editable) `pip install .` finds the bundled models and example data."""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest
from helpers import make_tiny_model

ROOT = Path(__file__).resolve().parent.parent
#: the source tree must not leak into the installed package's processes through the environment
CLEAN_ENV = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}


def run(cmd: list[str | Path], env: dict[str, str] | None = None,
        cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``cmd``; if it fails, the assertion shows its exit status, stdout and stderr."""
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=600,
                          env=CLEAN_ENV if env is None else env, cwd=cwd)
    assert proc.returncode == 0, (
        f"{' '.join(map(str, cmd))} exited with {proc.returncode}\n"
        f"--- stdout ---\n{proc.stdout[-4000:]}\n--- stderr ---\n{proc.stderr[-4000:]}")
    return proc


def outer_site_dirs() -> list[str]:
    """The site-packages folders of the interpreter running the tests, in its order.

    Inside a virtualenv these are the virtualenv's (``system_site_packages`` of a nested venv
    would see the base interpreter's instead, which may lack torch and pydicom).
    """
    dirs = [*site.getsitepackages(), sysconfig.get_paths()["purelib"],
            sysconfig.get_paths()["platlib"]]
    if site.ENABLE_USER_SITE:
        dirs.append(site.getusersitepackages())
    return [d for d in dict.fromkeys(dirs) if Path(d).is_dir()]


def make_venv(env_dir: Path) -> Path:
    """A venv that reuses this interpreter's installed packages (no download) and returns its
    python.

    They are listed as plain folders in a .pth file of the new venv's site-packages: those come
    after the venv's own site-packages on sys.path, so the wheel installed there wins, and the
    .pth files inside them are not run, so the editable install of kernelconv from the source
    tree (an ``__editable__*.pth`` import hook) cannot take over ``import kernelconv``.
    """
    venv.create(env_dir, system_site_packages=False, with_pip=True)
    py = env_dir / "bin" / "python"
    own = run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"])
    (Path(own.stdout.strip()) / "outer-site-packages.pth").write_text(
        "".join(f"{d}\n" for d in outer_site_dirs()))
    return py


@pytest.mark.slow
def test_plain_pip_install_finds_bundled_models_and_examples(tmp_path: Path) -> None:
    env_dir = tmp_path / "venv"
    py = make_venv(env_dir)
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(
        ".git", "*.egg-info", "build", "__pycache__", ".*_cache", ".hypothesis"))
    # build the wheel with this interpreter's setuptools (no download), install it plainly
    dist = tmp_path / "dist"
    run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "-w", dist, src], cwd=tmp_path)
    [wheel] = list(dist.glob("kernelconv-*.whl"))
    # --ignore-installed: the outer interpreter's kernelconv (a plain install since setup.sh
    # installs a copy) is visible through the .pth and would make pip skip this one
    run([py, "-m", "pip", "install", "--quiet", "--no-deps", "--ignore-installed", wheel],
        cwd=tmp_path)
    shutil.rmtree(src)  # nothing may come from the source tree any more
    probe = run(
        [py, "-c", "import json, kernelconv, kernelconv.bundled as b, kernelconv.sim.series, "
         "kernelconv.evaluation.qa, kernelconv.evaluation.evaluate, kernelconv.training.loop, "
         "kernelconv.pacs.server, kernelconv.calibration, kernelconv.vendor_kernels; "
         "print(json.dumps("
         "[kernelconv.__file__, str(b.bundled_models_dir()), str(b.example_series_dir())]))"],
        cwd=tmp_path)
    module, models, examples = json.loads(probe.stdout)
    assert str(env_dir) in module, "imported the source tree, not the installed package"
    assert str(env_dir) in models and (Path(models) / "README.md").is_file()
    assert str(env_dir) in examples and len(list(Path(examples).iterdir())) == 4
    shipped = Path(examples).parent.parent  # the installed examples folder
    assert len(list((shipped / "data" / "canon-phantom").rglob("*.dcm"))) == 8
    assert (shipped / "data" / "canon-phantom" / "README.md").is_file()  # its MIT notice
    assert (shipped / "vendor-kernel-map.txt").is_file()
    assert (shipped / "site_calibration.sh").is_file()
    # the shipped default model is installed with the package and converts the example
    default = (ROOT / "models" / "DEFAULT").read_text().strip()
    assert (Path(models) / f"{default}.safetensors").is_file()
    exe = env_dir / "bin" / "kernelconv"
    env = {"PATH": str(env_dir / "bin"), "HOME": str(tmp_path), "KERNELCONV_MODELS":
           str(tmp_path / "user-models")}
    listing = run([exe, "models"], env=env, cwd=tmp_path)
    assert default in listing.stdout
    run([exe, "convert", examples, tmp_path / "out", "--to", "B30f"], env=env, cwd=tmp_path)
    report = json.loads((tmp_path / "out" / "kernelconv-report.json").read_text())
    assert report["series"][0]["status"] == "converted"
    assert f"model {default}@" in report["method"]
    # a model dropped into the installed bundle can become the default
    make_tiny_model(Path(models) / "bundled-tiny.safetensors", name="bundled-tiny")
    (Path(models) / "DEFAULT").write_text("bundled-tiny\n")
    listing = run([exe, "models"], env=env, cwd=tmp_path)
    assert "bundled-tiny" in listing.stdout
