"""benchmarks/gpu_suite.sh cannot rot: its smoke run (every step, tiny, on the CPU) writes each
step's JSON and log and a summary.json with every figure; a failing step records its error and
the suite goes on; a step without time left is skipped, not run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SUITE = ROOT / "benchmarks" / "gpu_suite.sh"
sys.path.insert(0, str(ROOT / "benchmarks"))

import gpu_checks  # noqa: E402

STEPS = ["env", "inference-paper", "correctness", "inference-default", "e2e", "onnx",
         "train-bench", "train-run"]
SUMMARY_KEYS = {"suite", "gpu", "steps", "figures", "targets"}


def _suite(results: Path, env: dict[str, str], *extra: str, timeout: float = 1800
           ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(SUITE), str(results), "--smoke", *extra],
                          capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHON": sys.executable, **env})


def _step_docs(results: Path) -> dict[str, dict]:
    assert (results / "steps.txt").read_text().split() == STEPS
    docs = {}
    for name in STEPS:
        assert (results / f"{name}.log").is_file(), name
        docs[name] = json.loads((results / f"{name}.json").read_text())
        assert docs[name]["step"]["name"] == name
    return docs


@pytest.mark.slow
def test_smoke_run_measures_every_step(tmp_path: Path) -> None:
    results, archive = tmp_path / "results", tmp_path / "out" / "results.tgz"
    # a loaded machine must not turn a slow step into a skip or a timeout: the test is about
    # the script working, never about its speed
    proc = _suite(results, {"GPU_SUITE_BUDGET_S": "1500", "GPU_SUITE_CAP_SCALE": "4"},
                  "--archive", str(archive))
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    docs = _step_docs(results)
    for name, doc in docs.items():
        assert doc["step"]["status"] == "ok", (name, doc["step"])
        assert doc["step"]["exit_code"] == 0

    summary = json.loads((results / "summary.json").read_text())
    assert set(summary) == SUMMARY_KEYS
    assert summary["suite"]["smoke"] is True
    assert summary["gpu"]["torch"] == torch.__version__ and summary["gpu"]["device"] == "cpu"
    assert {n: s["status"] for n, s in summary["steps"].items()} == dict.fromkeys(STEPS, "ok")
    fig = summary["figures"]
    for name in ("inference-paper", "inference-default"):
        assert fig[name]["net_fp32_best_slices_per_s"] > 0
        assert fig[name]["peaks"]["fp32_matmul_gflops"] > 0
        assert fig[name]["cuda_graph_note"] == "CUDA graphs need a CUDA device"
    assert fig["inference-paper"]["net_bf16_frac_bf16_peak"] > 0
    assert fig["inference-paper"]["compile_speedup_vs_eager"] > 0
    for run in ("paper", "filter"):
        e2e = fig["e2e"][run]
        assert e2e["e2e_slices_per_s"] > 0 and e2e["model_only_slices_per_s"] > 0
        assert 0 < e2e["ratio_e2e_to_model_throughput"] and e2e["cli_wall_s"] > 0
    assert fig["onnx"]["paper+onnx"]["e2e_slices_per_s"] > 0
    correctness = fig["correctness"]
    assert correctness["all_pass"] is True and correctness["slices"] == 2
    assert set(correctness["pass"]) == {"models", "filter", "torchrun", "enhanced"}
    assert correctness["models"]["default"]["fp32"]["max_abs_dhu"] <= 1.0
    assert correctness["torchrun"]["converted_per_rank"] == [1, 1]
    assert correctness["enhanced"]["largest_engine_call"] <= correctness["enhanced"]["batch_size"]
    assert set(fig["train_s_per_iteration"]) == {"none", "bf16"}
    assert fig["train_run"]["iterations"] == 2 and fig["train_run"]["model_under_16mb"]
    assert (results / "gpu-suite-run.safetensors").is_file()
    assert set(summary["targets"]) >= {"paper_bf16_model_only_slices_per_s",
                                       "paper_e2e_slices_per_s"}
    assert summary["targets"]["paper_bf16_model_only_slices_per_s"]["met"] is None  # smoke

    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
    assert {f"results/{n}.json" for n in STEPS} | {"results/summary.json"} <= names
    assert json.loads((archive.parent / "summary.json").read_text())["steps"]


def test_a_failing_step_records_its_error_and_the_suite_goes_on(tmp_path: Path) -> None:
    # a Python that fails every measuring step at once, as a broken machine would
    fake = tmp_path / "python"
    fake.write_text(f"""#!/usr/bin/env bash
case "$*" in
  *inference_bench.py*|*convert_bench.py*|*train_bench.py*|*"gpu_checks.py env"*|\\
  *"gpu_checks.py correctness"*|*"gpu_checks.py onnx"*|*"gpu_checks.py train-run"*)
    echo "Traceback (most recent call last):"; echo "RuntimeError: CUDA error: boom" >&2
    exit 3 ;;
esac
exec {sys.executable} "$@"
""")
    fake.chmod(0o755)
    results = tmp_path / "results"
    proc = _suite(results, {"PYTHON": str(fake)}, timeout=300)
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-2000:]
    for name, doc in _step_docs(results).items():
        assert doc["step"]["status"] == "failed", name
        assert doc["step"]["exit_code"] == 3
        assert doc["step"]["error"] == "RuntimeError: CUDA error: boom"
    summary = json.loads((results / "summary.json").read_text())
    assert set(summary) == SUMMARY_KEYS
    assert {s["status"] for s in summary["steps"].values()} == {"failed"}


def test_steps_without_time_left_are_skipped(tmp_path: Path) -> None:
    results = tmp_path / "results"
    proc = _suite(results, {"GPU_SUITE_BUDGET_S": "1"}, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    for doc in _step_docs(results).values():
        assert doc["status"] == "skipped" and doc["step"]["status"] == "skipped"
        assert "no time left" in doc["reason"]
    assert set(json.loads((results / "summary.json").read_text())) == SUMMARY_KEYS


def test_finish_step_records_timeouts_and_unreadable_output(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    log.write_text("warming up\nstill going\n")
    partial = tmp_path / "partial.json"
    partial.write_text(json.dumps({"status": "running", "rows": [1, 2]}))
    code = gpu_checks.main(["finish-step", str(partial), "--step", "x", "--exit-code", "124",
                            "--seconds", "60.5", "--limit", "60", "--log", str(log)])
    doc = json.loads(partial.read_text())
    assert code == 1 and doc["rows"] == [1, 2]  # what was measured before the limit stays
    assert doc["status"] == "timeout" and doc["step"]["status"] == "timeout"
    assert doc["step"]["error"] == "stopped at its 60 s limit"
    assert doc["step"]["log_tail"] == ["warming up", "still going"]

    garbled = tmp_path / "garbled.json"
    garbled.write_text('{"status": "ok", "rows": [')  # killed while writing
    code = gpu_checks.main(["finish-step", str(garbled), "--step", "y", "--exit-code", "0",
                            "--log", str(log)])
    doc = json.loads(garbled.read_text())
    assert code == 1 and doc["step"]["status"] == "failed"
    assert "no readable JSON" in doc["json_error"]

    ok = tmp_path / "ok.json"
    ok.write_text(json.dumps({"status": "ok"}))
    assert gpu_checks.main(["finish-step", str(ok), "--step", "z", "--exit-code", "0"]) == 0
    assert json.loads(ok.read_text())["step"]["status"] == "ok"


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    for args in ([], ["--bogus"], [str(tmp_path / "a"), str(tmp_path / "b")]):
        proc = subprocess.run(["bash", str(SUITE), *args], capture_output=True, text=True,
                              timeout=60)
        assert proc.returncode == 2, args
        assert "gpu_suite.sh RESULTS_DIR" in proc.stderr
