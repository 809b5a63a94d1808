"""The command line as a user reads it: one name per concept, help that fits 80 columns with
every default shown one way, one-line errors, output locations checked before any work,
tables and progress bars that fit, and previews a reader can judge."""

from __future__ import annotations

import io
import json
import re
import subprocess
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import click
import numpy as np
import pytest
from helpers import dicom_file, make_series, make_tiny_model, output_series_dirs, run_cli

from kernelconv.cli import cli

ROOT = Path(__file__).resolve().parent.parent
PHANTOM = ROOT / "examples" / "data" / "canon-phantom"
COMMANDS = sorted(cli.commands)


def _options(name: str, hidden: bool = False) -> list[click.Option]:
    return [p for p in cli.commands[name].params
            if isinstance(p, click.Option) and p.hidden == hidden]


# ------------------------------------------------------------------ errors of the parser

@pytest.mark.parametrize(("args", "words"), [
    (["convert", "a", "b"], "Missing option '--to'"),
    (["convert", "a", "b", "--to", "B30f", "--kernel-map", "/nonexistent/map.txt"],
     "'--kernel-map': File '/nonexistent/map.txt' does not exist"),
    (["convert", "a", "b", "--to", "B30f", "--bogus"], "No such option '--bogus'"),
    (["nonsense"], "No such command 'nonsense'"),
])
def test_parser_errors_are_one_line(args: list[str], words: str, capsys) -> None:
    code, out, err = run_cli(args, capsys)
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("kernelconv: error: ")
    assert words in lines[0] and "--help" in lines[0]


# ------------------------------------------------------------------ help

@pytest.mark.parametrize("columns", ["80", "200"])
def test_every_help_fits_80_columns(columns: str, capsys, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", columns)
    for command in [[], *([c] for c in COMMANDS)]:
        code, out, _ = run_cli([*command, "--help"], capsys)
        assert code == 0
        wide = [line for line in out.splitlines() if len(line) > 80]
        assert wide == [], f"kernelconv {' '.join(command)} --help: {wide}"


@pytest.mark.parametrize("name", COMMANDS)
def test_every_option_has_help_and_no_hand_written_default(name: str) -> None:
    for option in _options(name):
        assert option.help, f"{name} {option.opts[0]} has no help"
        assert "[default" not in option.help and "[paper" not in option.help, option.opts


def test_defaults_are_shown_by_click_from_the_dataclasses(capsys, monkeypatch) -> None:
    from kernelconv.engines.select import EngineSpec
    from kernelconv.pacs.config import ListenConfig
    from kernelconv.pipeline import ConvertOptions
    from kernelconv.training.config import TrainConfig

    monkeypatch.setenv("COLUMNS", "80")
    text = {name: " ".join(run_cli([name, "--help"], capsys)[1].split())
            for name in ("convert", "listen", "train")}
    assert f"[default: {ConvertOptions.batch_size};" in text["convert"]
    assert f"[default: {EngineSpec.precision}]" in text["convert"]
    assert f"[default: {ConvertOptions.series_number_offset};" in text["convert"]
    assert "[default: (the default model)]" in text["convert"]
    assert f"[default: {ListenConfig.port};" in text["listen"]  # had no help at all
    assert f"[default: {TrainConfig.iters};" in text["train"]
    for name, help_text in text.items():
        assert "[default: None]" not in help_text and '[default: ""]' not in help_text, name


# ------------------------------------------------------------------ one name per concept

def test_precision_is_one_name_for_convert_listen_and_train() -> None:
    choices = {name: next(o for o in _options(name) if o.opts == ["--precision"]).type
               for name in ("convert", "listen", "train")}
    assert {tuple(c.choices) for c in choices.values()} == {("fp32", "bf16", "fp16")}
    assert not any("--amp" in o.opts for o in _options("train"))  # hidden alias only


@pytest.mark.parametrize(("name", "new", "old"), [
    ("calibrate", "--out-table", "--out"), ("evaluate", "--report-dir", "--out"),
    ("evaluate", "--pass-max-bias", "--max-bias"), ("listen", "--out-dir", "--out"),
    ("train", "--run-dir", "--out"), ("train", "--precision", "--amp"),
])
def test_renamed_options_keep_their_old_spelling_hidden(name: str, new: str, old: str,
                                                         capsys) -> None:
    visible = {o.opts[0]: o for o in _options(name)}
    hidden = {o.opts[0]: o for o in _options(name, hidden=True)}
    assert new in visible and old not in visible and old in hidden
    assert hidden[old].name == visible[new].name  # the same setting
    help_text = run_cli([name, "--help"], capsys)[1]
    assert re.search(rf"^\s+{re.escape(old)}[ ,\n]", help_text, re.M) is None  # not listed


def test_max_bias_means_refusal_only_where_it_refuses() -> None:
    """convert and listen refuse a series at --max-bias; evaluate only judges its report, so
    its limit has another name."""
    for name in ("convert", "listen"):
        assert any(o.opts == ["--max-bias"] for o in _options(name))
    assert not any(o.opts == ["--max-bias"] for o in _options("evaluate"))
    limit = next(o for o in _options("evaluate") if o.opts == ["--pass-max-bias"])
    assert "refuses" in (limit.help or "")


class _FakeRun:
    """Stands in for the training loop: records the config the command built."""

    seen: dict[str, Any] = {}

    @staticmethod
    def train(cfg: Any, data: list[Path], run_dir: Path, *args: Any) -> Any:
        _FakeRun.seen = {"cfg": cfg, "run_dir": run_dir, "device": args[0]}
        run_dir.mkdir(parents=True, exist_ok=True)
        return SimpleNamespace(iterations=cfg.iters, seconds=0.0, checkpoint=run_dir / "c.pt",
                               g_checksum="x")


def test_train_options_given_override_the_config_file_and_defaults_do_not(
        tmp_path: Path, capsys, monkeypatch) -> None:
    import kernelconv.training.loop as loop

    monkeypatch.setattr(loop, "train", _FakeRun.train)
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"iters": 7, "batch_size": 3, "amp": "bf16"}))
    code, _, err = run_cli(["train", "--data", tmp_path, "--config", config, "--run-dir",
                            tmp_path / "run", "--batch-size", "5"], capsys)
    assert code == 0, err
    cfg = _FakeRun.seen["cfg"]
    assert (cfg.iters, cfg.batch_size, cfg.amp) == (7, 5, "bf16")  # the file's, then ours
    code, _, err = run_cli(["train", "--data", tmp_path, "--config", config, "--out",
                            tmp_path / "old", "--precision", "fp32"], capsys)
    assert code == 0, err
    assert _FakeRun.seen["run_dir"] == tmp_path / "old" and _FakeRun.seen["cfg"].amp == "none"
    code, _, err = run_cli(["train", "--data", tmp_path, "--run-dir", tmp_path / "r3",
                            "--amp", "fp16"], capsys)
    assert code == 0, err
    assert _FakeRun.seen["cfg"].amp == "fp16"


def test_listen_options_given_override_the_config_file_and_defaults_do_not(
        tmp_path: Path, capsys, monkeypatch) -> None:
    import kernelconv.pacs.server as server

    seen: dict[str, Any] = {}

    class FakeListener:
        def __init__(self, cfg: Any, *args: Any) -> None:
            seen["cfg"], seen["retry_failed"] = cfg, args[-1]

        def start(self) -> None:
            pass

        def run_forever(self) -> None:
            pass

    monkeypatch.setattr(server, "Listener", FakeListener)
    monkeypatch.setattr(server, "configure_logging", lambda: None)
    config = tmp_path / "listen.json"
    config.write_text(json.dumps({"to": "B30f", "port": 104, "batch_size": 8,
                                  "out": str(tmp_path / "old-key")}))
    code, _, err = run_cli(["listen", "--config", config, "--method", "filter",
                            "--stable-seconds", "2"], capsys)
    assert code == 0, err
    cfg = seen["cfg"]
    assert (cfg.port, cfg.batch_size, cfg.stable_seconds) == (104, 8, 2.0)
    assert cfg.out == tmp_path / "old-key" and seen["retry_failed"] is False
    code, _, err = run_cli(["listen", "--config", config, "--method", "filter", "--out",
                            tmp_path / "o", "--retry-failed"], capsys)
    assert code == 0, err
    assert seen["cfg"].out == tmp_path / "o" and seen["retry_failed"] is True


# ------------------------------------------------------------------ output locations

@pytest.fixture()
def blocker(tmp_path: Path) -> Path:
    """A plain file: a path below it can never be created (as root too)."""
    path = tmp_path / "a-file"
    path.write_text("not a folder")
    return path


def _convert(src: Path, out: Path, *extra: Any) -> list[Any]:
    return ["convert", src, out, "--to", "B30f", "--method", "filter", *extra]


@pytest.mark.parametrize("where", ["OUT", "--report", "--preview"])
def test_unwritable_output_is_exit_5_before_any_conversion(where: str, tmp_path: Path,
                                                           blocker: Path, capsys) -> None:
    make_series(dicom_file("693_UNCR.dcm"), tmp_path / "in", 2)
    out = blocker / "out" if where == "OUT" else tmp_path / "out"
    extra = [] if where == "OUT" else [where, blocker / "x"]
    code, _, err = run_cli(_convert(tmp_path / "in", out, *extra), capsys)
    assert code == 5, err
    assert err.strip().splitlines() == [f"kernelconv: error: {where} "
                                        f"{out if where == 'OUT' else blocker / 'x'}: "
                                        f"{blocker} is not a folder"]
    assert not (tmp_path / "out").exists()  # nothing converted, nothing left by the check


def test_output_folder_that_cannot_be_created_is_exit_5(tmp_path: Path, capsys) -> None:
    if not Path("/proc/self").is_dir():
        pytest.skip("needs /proc")
    make_series(dicom_file("693_UNCR.dcm"), tmp_path / "in", 1)
    code, _, err = run_cli(_convert(tmp_path / "in", "/proc/kernelconv-test/out"), capsys)
    assert code == 5 and "internal error" not in err
    assert err.startswith("kernelconv: error: OUT /proc/kernelconv-test/out: cannot write (")


@pytest.mark.parametrize("args", [
    ["evaluate", "--pred", "{tmp}", "--ref", "{tmp}", "--report-dir", "{blocker}/r"],
    ["simulate", "{blocker}/sim"],
    ["calibrate", "{tmp}", "--out-table", "{blocker}/t.json"],
    ["calibrate", "{tmp}", "--out-table", "{tmp}/t.json", "--plot", "{blocker}/p.png"],
    ["qa", "{tmp}", "--json", "{blocker}/q.json"],
    ["qa", "{tmp}", "--plot", "{blocker}/q.png"],
    ["train", "--data", "{tmp}", "--run-dir", "{blocker}/run"],
])
def test_every_commands_output_options_are_checked_first(args: list[str], tmp_path: Path,
                                                         blocker: Path, capsys) -> None:
    argv = [a.format(tmp=tmp_path, blocker=blocker) for a in args]
    code, _, err = run_cli(argv, capsys)
    assert code == 5, err
    assert len(err.strip().splitlines()) == 1 and f"{blocker} is not a folder" in err


def test_calibrate_and_qa_create_the_folders_of_their_files(tmp_path: Path, capsys,
                                                             monkeypatch) -> None:
    """Also: the calibration plot's titles lie inside the figure (the third was cut off)."""
    import matplotlib.figure

    figures = []
    save = matplotlib.figure.Figure.savefig

    def keep(fig: Any, *args: Any, **kwargs: Any) -> None:
        figures.append(fig)
        save(fig, *args, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", keep)
    table = tmp_path / "cal" / "site.json"
    code, out, err = run_cli(["calibrate", "--pair", PHANTOM / "phantom1" / "FC51",
                              PHANTOM / "phantom1" / "FC13", "--out-table", table, "--plot",
                              tmp_path / "plots" / "cal.png"], capsys)
    assert code == 0, err
    assert isinstance(json.loads(table.read_text()), dict)
    # a relative and an absolute folder share a root as well (was: internal error, exit 70)
    monkeypatch.chdir(PHANTOM / "phantom1")
    code, out2, err = run_cli(["calibrate", "--pair", "FC51", PHANTOM / "phantom1" / "FC13",
                               "--out-table", tmp_path / "cal2.json"], capsys)
    assert code == 0 and "Traceback" not in err, err
    assert f"folders under {PHANTOM.resolve() / 'phantom1'}\n" in out2
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig = figures[-1]
    renderer = FigureCanvasAgg(fig).get_renderer()
    for ax in fig.axes:
        box = ax.title.get_window_extent(renderer)
        assert 0 <= box.x0 and box.x1 <= fig.bbox.x1, ax.title.get_text()
    # the pairs table names the folders relative to what they share, one per line
    assert f"folders under {PHANTOM.resolve() / 'phantom1'}\n" in out
    sim = tmp_path / "sim"
    assert run_cli(["simulate", sim, "--phantom", "qa", "--slices", "2"], capsys)[0] == 0
    monkeypatch.setenv("COLUMNS", "80")
    code, out, err = run_cli(["qa", sim, "--json", tmp_path / "qa" / "x" / "y.json"], capsys)
    assert code in (0, 1), err
    rows = [line for line in out.splitlines() if line.startswith("│")]
    # one line per kernel: two slices are too few, marked "2*" (explained below the table)
    # rather than "(unstable)" wrapped over three lines of the spec column
    assert len(rows) == 3 and all(r.split("│")[2].strip() == "2*" for r in rows), rows
    measured = json.loads((tmp_path / "qa" / "x" / "y.json").read_text())
    assert sorted(r["kernel"] for r in measured) == ["B30f", "B50f", "B70f"]


# ------------------------------------------------------------------ tables and bars

def test_series_labels_are_unique(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    for seed in (1, 2):  # two series in one folder, the same SeriesNumber
        make_series(dicom_file("693_UNCR.dcm"), tmp_path / "data", 1, seed=seed)
    code, out, err = run_cli(_convert(tmp_path / "data", tmp_path / "out", "--dry-run"), capsys)
    assert code == 0, err
    rows = [line.split("│")[1].strip() for line in out.splitlines()
            if line.startswith("│") and "planned" in line]
    assert len(rows) == 2 and rows[0] != rows[1]
    assert all(r.startswith("data #") and "(..." in r for r in rows)


def test_dry_run_names_the_engine_and_each_output_folder(tmp_path: Path, capsys,
                                                        tiny_model: Path) -> None:
    make_series(dicom_file("693_UNCR.dcm"), tmp_path / "in", 1)
    code, out, _ = run_cli(["convert", tmp_path / "in", tmp_path / "out", "--to", "B30f",
                            "--model", tiny_model, "--dry-run"], capsys)
    assert code == 0
    text = " ".join(out.split())
    assert f"would convert with the model tiny ({tiny_model}), device auto, precision fp32 " \
        f"into {tmp_path / 'out'}" in text
    assert not (tmp_path / "out").exists()
    from kernelconv.cli.convert import print_summary

    planned = SimpleNamespace(folder=str(tmp_path / "in"), series_uid="1.2.3",
                              series_number=4, source_kernel="B70f", target_kernel="B30f",
                              images=2, status="planned", reason="", warnings=[],
                              seconds=0.0, hu_check=None, output="OUT/1.2/B30f_9.8")
    print_summary(SimpleNamespace(results=[planned], skipped=[]), True, tmp_path)
    assert "in #4 -> OUT/1.2/B30f_9.8" in capsys.readouterr().out


def test_progress_bars_fit_and_skipped_series_leave_none() -> None:
    from rich.console import Console
    from rich.progress import Progress

    from kernelconv.cli.render import RichProgress, progress_columns

    buf = io.StringIO()
    console = Console(file=buf, width=80, force_terminal=True, color_system=None)
    with Progress(*progress_columns("slices"), console=console, auto_refresh=False) as bar:
        progress = RichProgress(bar)
        long = progress.start("series #12 in /archive/" + "a long folder name/" * 4 + "ct", 8)
        progress.advance(long, 8)
        progress.finish(long)
        skipped = progress.start("series #13 in x", 4)
        progress.finish(skipped)  # "output exists": no slice converted
        descriptions = [t.description for t in bar.tasks]  # the empty bar is gone
        assert len(descriptions) == 1 and len(descriptions[0]) <= 36
        assert descriptions[0].startswith("series #12 in ...") and descriptions[0].endswith("/ct")
    lines = [re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", line)
             for line in buf.getvalue().replace("\r", "\n").splitlines()]
    assert all(len(line) <= 80 for line in lines)
    assert not any("0/4" in line for line in lines[-3:])


def test_evaluate_table_fits_80_columns_with_its_verdict(tmp_path: Path, capsys,
                                                         monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    sim = tmp_path / "qa"
    assert run_cli(["simulate", sim, "--phantom", "qa", "--slices", "2"], capsys)[0] == 0
    assert run_cli(_convert(sim / "qa-000" / "B70f", tmp_path / "conv"), capsys)[0] == 0
    code, out, err = run_cli(["evaluate", "--pred", tmp_path / "conv", "--ref", sim,
                              "--truth", sim, "--qa", "--report-dir", tmp_path / "r"], capsys)
    assert code == 0, err
    assert max(len(line) for line in out.splitlines()) <= 80
    row = next(line for line in out.splitlines() if line.startswith("│B70f -> B30f"))
    verdict = row.rstrip("│").split("│")[-1].strip()
    assert verdict == "pass" or re.fullmatch(r"FAIL \d", verdict), row
    assert "nan" not in out  # the QA phantom has no lung: its LAA-950 is "-"
    assert row.split("│")[7].strip() == "-"


# ------------------------------------------------------------------ previews

def _chest(size: int = 256, seed: int = 0) -> np.ndarray:
    """A noisy chest-like slice: a body (soft tissue) with two lungs, in -900 HU "air"
    outside (in the lung range: only the body's inside may count as lung)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    img = np.full((size, size), -900.0)
    img[((x - 0.5) / 0.45) ** 2 + ((y - 0.5) / 0.35) ** 2 < 1] = 40.0
    for cx in (0.3, 0.7):
        img[((x - cx) / 0.12) ** 2 + ((y - 0.5) / 0.2) ** 2 < 1] = -850.0
    return (img + rng.normal(0, 20, img.shape)).astype(np.float32)


def test_preview_regions_are_lung_inside_the_body_and_soft_tissue() -> None:
    from kernelconv.preview import LUNG_HU, SOFT_HU, best_region

    img = _chest()
    lung = best_region(img, *LUNG_HU, 48)
    soft = best_region(img, *SOFT_HU, 48, exclude=lung)
    assert lung is not None and soft is not None
    ly, lx, side = lung
    assert side == 48
    assert (img[ly:ly + side, lx:lx + side] < -700).mean() > 0.9  # a lung, not outside air
    sy, sx, _ = soft
    assert (np.abs(img[sy:sy + 48, sx:sx + 48] - 40) < 100).mean() > 0.9


def test_preview_rows_are_labelled_with_full_resolution_zooms(tmp_path: Path) -> None:
    from PIL import Image

    from kernelconv.preview import (
        CAPTION_H,
        CROP,
        GAP,
        LUNG_HU,
        LUNG_WINDOW,
        TILE,
        TITLE_H,
        ZOOM,
        PreviewRow,
        best_region,
        window,
        write_preview,
    )

    src = _chest(512)
    conv = src + np.random.default_rng(1).normal(0, 30, src.shape).astype(np.float32)
    rows = [PreviewRow("chest #1", "B30f", "B70f", src, conv),
            PreviewRow("chest #2", "B30f", "B70f", src, conv)]
    write_preview(rows, tmp_path / "p.png")
    img = np.asarray(Image.open(tmp_path / "p.png").convert("RGB"))
    row_h = TITLE_H + TILE + CAPTION_H + GAP
    assert img.shape[:2] == (2 * row_h, 7 * (TILE + GAP) - GAP)
    for r in range(2):  # each row has its title written above it
        assert (img[r * row_h:r * row_h + TITLE_H, :400] > 200).sum() > 100
    y, x, side = best_region(src, *LUNG_HU, CROP)
    expected = np.kron(window(conv[y:y + side, x:x + side], *LUNG_WINDOW),
                       np.ones((ZOOM, ZOOM), np.uint8))
    left = 4 * (TILE + GAP)  # the fifth tile: the converted lung region, pixel for pixel
    tile = img[TITLE_H:TITLE_H + TILE, left:left + TILE, 0]
    assert np.array_equal(tile, expected)


def test_convert_preview_has_a_row_per_series(tmp_path: Path, capsys) -> None:
    from PIL import Image

    from kernelconv.preview import CAPTION_H, GAP, TILE, TITLE_H

    for name in ("a", "b"):
        make_series(dicom_file("693_UNCR.dcm"), tmp_path / "in" / name, 2, seed=ord(name))
    png = tmp_path / "p.png"
    code, out, err = run_cli(_convert(tmp_path / "in", tmp_path / "out", "--preview", png),
                             capsys)
    assert code == 0, err
    assert Image.open(png).size[1] == 2 * (TITLE_H + TILE + CAPTION_H + GAP)
    assert len(output_series_dirs(tmp_path / "out")) == 2


# ------------------------------------------------------------------ models, docs, repo

def test_models_gives_a_line_per_model_from_its_card(tmp_path: Path, capsys,
                                                     monkeypatch) -> None:
    monkeypatch.setenv("KERNELCONV_MODELS", str(tmp_path))
    monkeypatch.setenv("COLUMNS", "80")
    make_tiny_model(tmp_path / "alpha.safetensors", name="alpha")
    (tmp_path / "alpha.md").write_text(
        "# Model card: `alpha`\n\n**What it is:** a small test converter (random weights, "
        "for tests) that changes every image. It is not trained.\n")
    make_tiny_model(tmp_path / "beta.safetensors", name="beta")
    code, out, _ = run_cli(["models"], capsys)
    assert code == 0
    text = " ".join(out.split())
    assert "alpha: a small test converter that changes every image." in text
    assert "beta: no description" in text  # no card, no training method


def test_bundled_models_describe_themselves(capsys) -> None:
    from kernelconv.cli.convert import model_description
    from kernelconv.modelfile import list_models

    for entry in list_models():
        if entry.origin == "bundled" and entry.info is not None:
            text = model_description(entry.path, entry.info.provenance)
            assert 20 < len(text) <= 170 and "**" not in text and "`" not in text, text


@pytest.mark.parametrize("name", COMMANDS)
def test_every_option_is_documented_in_usage(name: str) -> None:
    usage = (ROOT / "docs" / "usage.md").read_text()
    heading = next(m for m in re.finditer(r"^### .*$", usage, re.M)
                   if f"`kernelconv {name}`" in m.group(0))
    section = usage[heading.end():]
    section = section[:section.find("\n### ")] if "\n### " in section else section
    for option in _options(name):
        assert f"`{option.opts[0]}" in section, (name, option.opts[0])


def test_training_doc_uses_only_real_train_options() -> None:
    text = (ROOT / "docs" / "training.md").read_text()
    real = {o for p in cli.commands["train"].params for o in p.opts}
    commands, current = [], ""
    for line in text.splitlines():
        if "kernelconv train" in line or current:
            current += " " + line.rstrip("\\")
            if not line.rstrip().endswith("\\"):
                commands.append(current.split("kernelconv train", 1)[1])
                current = ""
    spans = [s for s in re.findall(r"`(--[^`]*)`", text) if s.count("--") >= 2]
    for words in commands + spans:
        words = words.split("#")[0].split("&&")[0]
        for option in re.findall(r"(?<![\w-])--[a-z][\w-]*", words):
            assert option in real, f"docs/training.md: {option} in `{words.strip()}`"


def test_readme_output_folder_is_ignored_by_git() -> None:
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    for path in ("converted/preview.png", "kernelconv-spool/status.json"):
        ignored = subprocess.run(["git", "-C", str(ROOT), "check-ignore", "-q", path],
                                 check=False).returncode == 0
        assert ignored, path
