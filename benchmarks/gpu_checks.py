"""The GPU suite's own steps (benchmarks/gpu_suite.sh runs them; the speed steps are
inference_bench.py, convert_bench.py and train_bench.py):

    python benchmarks/gpu_checks.py env --device cuda --json env.json
    python benchmarks/gpu_checks.py correctness --device cuda --json correctness.json
    python benchmarks/gpu_checks.py onnx --device cuda --json onnx.json -- CONVERT_BENCH_ARGS
    python benchmarks/gpu_checks.py train-run --device cuda --json train-run.json --seconds 120
    python benchmarks/gpu_checks.py finish-step STEP.json --step NAME --exit-code N ...
    python benchmarks/gpu_checks.py summary RESULTS_DIR

correctness: on real CT slices (the repo's Siemens and Canon slices, pydicom-data's CT files,
and shared data where carried or present), each model converted on the device in fp32 must
be within 1 HU of the CPU fp32 conversion (max |dHU|), bf16 and fp16 within the reduced-
precision bar of docs/performance.md (mean |dHU| <= 1, max <= 10); the filter's torch path on
the device within 0.01 HU of its numpy path; `kernelconv convert` sharded by torchrun over two
processes on the one device converts disjoint halves; an Enhanced CT of more frames than the
batch converts whole, and its pixels do not depend on the batch size (at most 1 stored unit).

The stdlib-only subcommands (finish-step, summary) never import torch, so a broken
environment still gets its error recorded.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
#: real CT slices in pydicom-data (CT_small is 128 x 128 and 693_UNCI is 693_J2KR stored
#: with another pixel representation, so they are left out)
PYDICOM_CT = ("693_J2KR.dcm", "bad_sequence.dcm", "explicit_VR-UN.dcm")
ENHANCED_TEMPLATE = "eCT_Supplemental.dcm"
#: max |dHU| device fp32 vs CPU fp32; reduced precision: mean and max |dHU| vs CPU fp32
FP32_MAX_HU = 1.0
REDUCED_MEAN_HU, REDUCED_MAX_HU = 1.0, 10.0
FILTER_MAX_HU = 0.01
MODEL_UNDER_BYTES = 16 * 2**20
SHARED_DIRS = (ROOT.parent / "shared" / "data", Path("/work/shared/data"))


def write(path: str | None, doc: dict[str, Any]) -> None:
    if path:
        tmp = Path(path + ".tmp")
        tmp.write_text(json.dumps(doc, indent=1, default=str) + "\n")
        tmp.replace(path)


def error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0]}"


# ----------------------------------------------------------------------------------- data

def data_file(name: str) -> Path | None:
    """A pydicom-data file: carried with the suite (KC_SUITE_DATA), else the installed
    package's (never downloaded)."""
    carried = os.environ.get("KC_SUITE_DATA")
    if carried and (Path(carried) / name).is_file():
        return Path(carried) / name
    try:
        from pydicom.data import get_testdata_file

        found = get_testdata_file(name, download=False)
    except Exception:  # noqa: BLE001 - pydicom-data absent or broken: the file is missing
        return None
    return Path(str(found)) if isinstance(found, str) else None


def shared_files(per_series: int = 1, series: int = 8) -> list[Path]:
    """A few files of the shared real-CT archive: carried with the suite
    (KC_SUITE_DATA/shared), else ../shared/data or /work/shared/data where present."""
    carried = os.environ.get("KC_SUITE_DATA")
    if carried and (Path(carried) / "shared").is_dir():
        return sorted((Path(carried) / "shared").iterdir())
    for base in SHARED_DIRS:
        archive = base / "real-ct-archive"
        if archive.is_dir():
            leaves = sorted({f.parent for f in archive.rglob("*.dcm")})
            spread = leaves[::max(1, len(leaves) // series)][:series]  # across collections
            return [f for d in spread for f in sorted(d.glob("*.dcm"))[:per_series]]
    return []


def real_slices(limit: int) -> list[dict[str, Any]]:
    """Up to ``limit`` real CT slices, taken in turn from each source (so that two slices
    come from two scanners): [{label, hu (H, W) float32, pixel_mm}]."""
    from kernelconv.dicom.dataset import decode_hu, pixel_spacing_mm, read_dataset
    from kernelconv.kernel_response import REFERENCE_PIXEL_MM

    groups = [
        sorted((ROOT / "tests" / "data" / "siemens-chest-pair" / "B70f").glob("*.dcm")),
        sorted((ROOT / "examples" / "data" / "canon-phantom").glob("*/FC51/*.dcm")),
        [p for p in (data_file(n) for n in PYDICOM_CT) if p is not None],
        shared_files(),
    ]
    out: list[dict[str, Any]] = []
    i = 0
    while len(out) < limit and any(i < len(g) for g in groups):
        for group in groups:
            if i < len(group) and len(out) < limit:
                path = group[i]
                try:
                    ds = read_dataset(path)
                    hu = decode_hu(ds, path)[1][0]
                except Exception as exc:  # noqa: BLE001 - a file this suite cannot read
                    out.append({"label": str(path), "error": error_text(exc)})
                    continue
                out.append({"label": str(path.relative_to(ROOT)) if path.is_relative_to(ROOT)
                            else path.name, "hu": hu,
                            "pixel_mm": pixel_spacing_mm(ds) or REFERENCE_PIXEL_MM})
        i += 1
    return out


def enhanced_ct(path: Path, frames: list[Any]) -> Path:
    """An HU Enhanced CT file (kernel B70f) holding ``frames`` (real HU slices), made from
    pydicom-data's eCT_Supplemental.dcm as the header template."""
    import numpy as np
    import pydicom
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    template = data_file(ENHANCED_TEMPLATE)
    if template is None:
        raise FileNotFoundError(f"{ENHANCED_TEMPLATE} (pydicom-data) is neither installed nor "
                                "carried (gpu_suite.sh --prepare)")
    ds = pydicom.dcmread(template)
    shared = ds.SharedFunctionalGroupsSequence[0]
    pvt = shared.PixelValueTransformationSequence[0]
    pvt.RescaleType, pvt.RescaleSlope, pvt.RescaleIntercept = "HU", 1, -1024
    shared.CTImageFrameTypeSequence[0].FrameType = ["ORIGINAL", "PRIMARY", "AXIAL", "NONE"]
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL", "NONE"]
    recon = Dataset()
    recon.ConvolutionKernel = "B70f"
    shared.CTReconstructionSequence = Sequence([recon])
    stored = np.clip(np.stack(frames) + 1024.0, 0, 4095).round().astype(np.uint16)
    groups = []
    for i in range(len(frames)):
        group = copy.deepcopy(ds.PerFrameFunctionalGroupsSequence[0])
        group.PlanePositionSequence[0].ImagePositionPatient = [0.0, 0.0, float(i)]
        groups.append(group)
    ds.PerFrameFunctionalGroupsSequence = Sequence(groups)
    ds.NumberOfFrames = len(frames)
    ds.Rows, ds.Columns = stored.shape[1:]
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = stored.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


# ---------------------------------------------------------------------------- correctness

def abs_diff(a: Any, b: Any) -> tuple[float, float]:
    import numpy as np

    d = np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64))
    return float(d.mean()), float(d.max())


def check_models(slices: list[dict[str, Any]], device: str, models: list[str],
                 record: Callable[[str, Any], None]) -> bool:
    """Each model on the device (fp32, bf16, fp16 where the device runs it) against the CPU
    fp32 conversion of the same slices, sharpest -> softest kernel."""
    from kernelconv.engines.torch_engine import TorchEngine
    from kernelconv.modelfile import resolve_model

    ok = True
    for name in models:
        path = resolve_model(None if name == "default" else name)
        cpu = TorchEngine(path, "cpu")
        src, dst = cpu.domains[-1], cpu.domains[0]
        refs = [cpu.convert(s["hu"][None], src, dst, s["pixel_mm"])[0] for s in slices]
        out: dict[str, Any] = {"model": cpu.info.model_id, "source": src, "target": dst}
        on_gpu = device.startswith("cuda")
        # fp32 as the engine runs it (torch's default lets cuDNN use TF32 for convolutions on
        # Ampere and later), and with TF32 off, to tell the two causes of a difference apart
        variants = ["fp32"] + (["fp32 no-tf32"] if on_gpu else []) + ["bf16"] + \
            (["fp16"] if on_gpu else [])
        for variant in variants:
            prec = variant.split()[0]
            tf32 = _set_tf32(variant != "fp32 no-tf32") if on_gpu else None
            try:
                eng = TorchEngine(path, device, prec)
                per = [abs_diff(eng.convert(s["hu"][None], src, dst, s["pixel_mm"])[0], r)
                       for s, r in zip(slices, refs, strict=True)]
            except Exception as exc:  # noqa: BLE001 - record why, go on with the others
                out[variant] = {"error": error_text(exc), "pass": False}
                ok = False
                continue
            finally:
                if tf32 is not None:
                    _set_tf32(tf32)
            mean = sum(p[0] for p in per) / len(per)
            worst = max(p[1] for p in per)
            passed = worst <= FP32_MAX_HU if prec == "fp32" else \
                mean <= REDUCED_MEAN_HU and worst <= REDUCED_MAX_HU
            out[variant] = {"mean_abs_dhu": mean, "max_abs_dhu": worst, "pass": passed,
                            "per_slice_max": [p[1] for p in per]}
            if variant != "fp32 no-tf32":  # a diagnosis, not what the engine runs
                ok = ok and passed
        record(name, out)
    return ok


def _set_tf32(on: bool) -> bool:
    """Allow TF32 in cuDNN convolutions and matrix products or not; returns the setting
    before."""
    import torch

    before = bool(torch.backends.cudnn.allow_tf32)
    torch.backends.cudnn.allow_tf32 = on
    torch.backends.cuda.matmul.allow_tf32 = on
    return before


def check_filter(slices: list[dict[str, Any]], device: str) -> dict[str, Any]:
    """The filter's torch path on the device (float64, and float32 to see why not) against
    its numpy path, both directions (soft -> sharp: the per-slice noise limit)."""
    import numpy as np

    from kernelconv.engines.filter_engine import FilterEngine

    host = FilterEngine()
    dev = FilterEngine(device=device, backend="torch")
    out: dict[str, Any] = {"device": dev.device}
    worst64 = 0.0
    for src, dst in (("B70f", "B30f"), ("B30f", "B70f")):
        for s in slices:
            ref = host.convert(s["hu"][None], src, dst, s["pixel_mm"])
            for dtype in ("float64", "float32"):
                dev.fft_dtype = dtype
                y = dev.convert(s["hu"][None], src, dst, s["pixel_mm"])
                _, worst = abs_diff(y, ref)
                flips = int((np.round(y) != np.round(ref)).sum())
                key = f"{src}->{dst} {dtype}"
                prev = out.get(key, {"max_abs_dhu": 0.0, "rounding_flips": 0})
                out[key] = {"max_abs_dhu": max(prev["max_abs_dhu"], worst),
                            "rounding_flips": prev["rounding_flips"] + flips}
                if dtype == "float64":
                    worst64 = max(worst64, worst)
    out["max_abs_dhu"] = worst64
    out["pass"] = worst64 <= FILTER_MAX_HU
    return out


def check_torchrun(slices_per_series: int, device: str, work: Path) -> dict[str, Any]:
    """`kernelconv convert` under torchrun, two processes on the one device, two series."""
    sources = [ROOT / "tests" / "data" / "siemens-chest-pair" / "B70f",
               ROOT / "examples" / "data" / "canon-phantom" / "phantom1" / "FC51"]
    inp = work / "torchrun-in"
    for i, src in enumerate(sources):
        (inp / f"s{i}").mkdir(parents=True)
        for f in sorted(src.glob("*.dcm"))[:slices_per_series]:
            shutil.copy(f, inp / f"s{i}" / f.name)
    out = work / "torchrun-out"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
           "--master-port", str(29500 + os.getpid() % 400), "-m", "kernelconv", "convert",
           str(inp), str(out), "--to", "B30f", "--from", "B70f", "--device", device,
           "--max-bias", "inf", "--batch-size", "4"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    res: dict[str, Any] = {"processes": 2, "device": device, "exit_code": proc.returncode,
                           "wall_s": time.perf_counter() - t0}
    if proc.returncode != 0:
        res.update({"pass": False, "error": (proc.stderr.strip().splitlines() or [""])[-1]})
        return res
    reports = [json.loads((out / f"kernelconv-report.rank{r}.json").read_text())
               for r in range(2)]
    done = [[s["series_uid"] for s in rep["series"] if s["status"] == "converted"]
            for rep in reports]
    res.update(converted_per_rank=[len(d) for d in done],
               disjoint=not set(done[0]) & set(done[1]))
    res["pass"] = res["disjoint"] and res["converted_per_rank"] == [1, 1]
    return res


def check_enhanced(slices: list[dict[str, Any]], frames: int, batch: int, device: str,
                   work: Path) -> dict[str, Any]:
    """An Enhanced CT of ``frames`` real frames (more than ``batch``) with the default
    model: converted whole, each engine call at most ``batch`` frames, and the same pixels
    (to 1 stored unit) as converting every frame in one call."""
    import numpy as np
    import pydicom

    from kernelconv.engines.torch_engine import TorchEngine
    from kernelconv.modelfile import resolve_model
    from kernelconv.pipeline import ConvertOptions, run_convert

    stack = [np.roll(slices[i % len(slices)]["hu"], 5 * i, axis=1) for i in range(frames)]
    enhanced_ct(work / "enhanced-in" / "enhanced.dcm", stack)
    engine = TorchEngine(resolve_model(None), device)
    calls: list[int] = []
    convert = engine.convert

    def recording(hu: Any, *a: Any, **k: Any) -> Any:
        calls.append(len(hu))
        return convert(hu, *a, **k)

    engine.convert = recording  # type: ignore[method-assign]
    pixels = {}
    for b in (batch, frames):
        calls.clear()
        out = work / f"enhanced-out-{b}"
        report = run_convert(work / "enhanced-in", out, lambda: engine, engine.domains,
                             ConvertOptions(target="B30f", batch_size=b,
                                            max_bias=float("inf")))
        result = report.results[0]
        if result.status != "converted":
            return {"pass": False, "error": f"batch {b}: {result.status}: {result.reason}"}
        [f] = [p for p in out.rglob("*") if p.is_file() and p.suffix != ".json"]
        pixels[b] = pydicom.dcmread(f).pixel_array.astype(np.int32)
        if b == batch:
            biggest_call = max(calls)
    diff = int(np.abs(pixels[batch] - pixels[frames]).max())
    res = {"frames": frames, "batch_size": batch, "largest_engine_call": biggest_call,
           "output_frames": int(pixels[batch].shape[0]),
           "max_stored_diff_batch_vs_whole": diff}
    res["pass"] = biggest_call <= batch and res["output_frames"] == frames and diff <= 1
    return res


def correctness(args: argparse.Namespace) -> int:
    doc: dict[str, Any] = {"check": "correctness", "status": "running", "device": args.device,
                           "tolerances": {"fp32_max_abs_dhu": FP32_MAX_HU,
                                          "reduced_mean_abs_dhu": REDUCED_MEAN_HU,
                                          "reduced_max_abs_dhu": REDUCED_MAX_HU,
                                          "filter_max_abs_dhu": FILTER_MAX_HU}}
    write(args.json, doc)
    slices = real_slices(args.slices)
    doc["slices"] = [{k: v for k, v in s.items() if k != "hu"} for s in slices]
    slices = [s for s in slices if "hu" in s]
    work = Path(tempfile.mkdtemp(prefix="kc-correct-"))
    passes: dict[str, bool] = {}
    doc["models"] = {}

    def record(name: str, value: Any) -> None:
        doc["models"][name] = value
        write(args.json, doc)

    checks: list[tuple[str, Callable[[], Any]]] = [
        ("models", lambda: check_models(slices, args.device, args.models.split(","), record)),
        ("filter", lambda: check_filter(slices, args.device)),
        ("torchrun", lambda: check_torchrun(args.torchrun_slices, args.device, work)),
        ("enhanced", lambda: check_enhanced(slices, args.frames, args.batch_size, args.device,
                                            work)),
    ]
    for name, check in checks:
        try:
            value = check()
        except Exception as exc:  # noqa: BLE001 - record why, go on with the other checks
            value = {"pass": False, "error": error_text(exc)}
        if name == "models":
            passes[name] = bool(value)
        else:
            doc[name] = value
            passes[name] = bool(value.get("pass"))
        print(f"{name}: {'pass' if passes[name] else 'FAIL'}", flush=True)
        write(args.json, doc)
    doc["pass"] = passes
    doc["all_pass"] = bool(slices) and all(passes.values())
    doc["status"] = "ok" if doc["all_pass"] else "failed"
    write(args.json, doc)
    return 0 if doc["all_pass"] else 1


# ------------------------------------------------------------------------------- steps

def env(args: argparse.Namespace) -> int:
    """The machine: GPU, driver, torch, CUDA, cuDNN, ONNX Runtime and its providers."""
    sys.path.insert(0, str(Path(__file__).parent))
    import torch
    from common import machine_info

    import kernelconv

    dev = torch.device(args.device)
    doc: dict[str, Any] = {"check": "env", "status": "ok", "kernelconv": kernelconv.__version__,
                           **machine_info(dev)}
    smi = shutil.which("nvidia-smi")
    if smi:
        proc = subprocess.run([smi, "--query-gpu=name,driver_version,memory.total,"
                               "clocks.max.sm,power.limit", "--format=csv,noheader"],
                              capture_output=True, text=True, timeout=30)
        fields = [f.strip() for f in proc.stdout.splitlines()[0].split(",")] \
            if proc.returncode == 0 and proc.stdout.strip() else []
        if len(fields) == 5:
            doc.update(zip(("gpu", "driver", "gpu_memory", "max_sm_clock", "power_limit"),
                           fields, strict=True))
    try:
        import onnxruntime as ort

        doc.update(onnxruntime=ort.__version__,
                   onnxruntime_providers=ort.get_available_providers())
    except ImportError as exc:
        doc["onnxruntime"] = f"not installed ({exc})"
    git = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True,
                         text=True)
    doc["commit"] = git.stdout.strip() if git.returncode == 0 else None
    if dev.type == "cuda" and not torch.cuda.is_available():
        doc.update(status="failed", error="no CUDA device visible to torch")
    write(args.json, doc)
    print(json.dumps(doc, indent=1, default=str))
    return 0 if doc["status"] == "ok" else 1


def onnx(args: argparse.Namespace) -> int:
    """convert_bench.py's ONNX runs, when ONNX Runtime can run on the device (else the step
    is skipped with the reason: the GPU image's onnxruntime has no CUDA provider unless
    onnxruntime-gpu is carried in, docs/performance.md)."""
    try:
        import onnxruntime as ort
    except ImportError as exc:
        write(args.json, {"status": "skipped", "reason": f"onnxruntime not installed ({exc})"})
        return 0
    if hasattr(ort, "preload_dlls"):  # onnxruntime-gpu >= 1.21: CUDA/cuDNN from the wheels
        try:
            ort.preload_dlls()
        except Exception as exc:  # noqa: BLE001 - recorded; the provider check decides
            print(f"onnxruntime.preload_dlls: {error_text(exc)}")
    have = ort.get_available_providers()
    if args.device.startswith("cuda") and "CUDAExecutionProvider" not in have:
        write(args.json, {"status": "skipped", "providers": have, "onnxruntime": ort.__version__,
                          "reason": "onnxruntime has no CUDAExecutionProvider here: carry "
                          "the onnxruntime-gpu wheel in (docs/performance.md, GPU suite)"})
        print("skipped: no CUDAExecutionProvider")
        return 0
    cmd = [sys.executable, str(Path(__file__).parent / "convert_bench.py"), "--device",
           args.device, "--json", args.json, *args.rest]
    return subprocess.run(cmd).returncode


def train_run(args: argparse.Namespace) -> int:
    """A bounded training run of the paper's configuration (full 512 x 512 slices, batch 2,
    GGCL, n_critic 5) from the default model's weights, for the time the step has; then the
    checkpoint is exported with --half (it must be under 16 MB) and converts a slice."""
    seconds = float(args.seconds or os.environ.get("STEP_TIMEOUT", "120"))
    deadline = time.monotonic() + seconds - 10.0  # the step's own start-up and margin
    doc: dict[str, Any] = {"check": "train-run", "status": "running", "device": args.device,
                           "init": args.init, "seconds_given": seconds}
    write(args.json, doc)
    work = Path(args.work or tempfile.mkdtemp(prefix="kc-train-"))
    data, run = work / "train-data", work / "train-run"
    kc = [sys.executable, "-m", "kernelconv"]

    def call(cmd: list[str], limit: float) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=max(limit, 5))
        print(proc.stdout[-2000:], proc.stderr[-2000:], sep="\n", flush=True)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd[2:4])} exited {proc.returncode}: "
                               f"{(proc.stderr.strip().splitlines() or [''])[-1]}")
        return proc

    try:
        t0 = time.monotonic()
        call(kc + ["simulate", str(data), "--patients", "1", "--slices", str(args.slices),
                   "--seed", "11"], deadline - time.monotonic())
        doc["simulate_s"] = time.monotonic() - t0
        train = kc + ["train", "--data", str(data), "--run-dir", str(run), "--init", args.init,
                      "--device", args.device, "--precision", args.precision,
                      "--ckpt-every", str(args.ckpt_every)]
        if args.smoke:
            cfg = work / "smoke-config.json"
            cfg.write_text(json.dumps({"d_conv_dim": 8, "d_layers": 4}))
            train += ["--crop", "128", "--iters", "2", "--config", str(cfg)]
        else:  # what is left, less the export and the check after it
            minutes = (deadline - time.monotonic() - args.reserve) / 60.0
            if minutes <= 0.2:
                raise RuntimeError(f"only {minutes * 60:.0f} s left for training")
            train += ["--max-minutes", f"{minutes:.2f}"]
            doc["max_minutes"] = minutes
        write(args.json, doc)
        t0 = time.monotonic()
        call(train, deadline - time.monotonic())
        doc["train_wall_s"] = time.monotonic() - t0
        summary = json.loads((run / "train-summary.rank0.json").read_text())
        losses = (run / "losses.jsonl").read_text().splitlines()
        doc.update(iterations=summary["iterations"], train_s=summary["seconds"],
                   s_per_iteration=summary["seconds"] / max(summary["iterations"], 1),
                   checkpoint=Path(summary["checkpoint"]).name,
                   last_losses=json.loads(losses[-1]) if losses else None)
        write(args.json, doc)
        out_dir = Path(args.out_dir)
        call(kc + ["export", str(run), "--name", "gpu-suite-run", "--half", "--models-dir",
                   str(out_dir)], deadline - time.monotonic())
        model = out_dir / "gpu-suite-run.safetensors"
        size = model.stat().st_size
        doc.update(model=model.name, model_bytes=size, model_under_16mb=size < MODEL_UNDER_BYTES)

        from kernelconv.engines.torch_engine import TorchEngine

        slice_ = real_slices(1)[0]
        engine = TorchEngine(model, args.device)
        y = engine.convert(slice_["hu"][None], "B70f", "B30f", slice_["pixel_mm"])
        doc["exported_model_converts"] = bool(y.shape == slice_["hu"][None].shape)
        doc["status"] = "ok" if doc["model_under_16mb"] and doc["exported_model_converts"] \
            else "failed"
    except Exception as exc:  # noqa: BLE001 - the step's JSON says why
        doc.update(status="failed", error=error_text(exc))
    write(args.json, doc)
    return 0 if doc["status"] == "ok" else 1


def finish_step(args: argparse.Namespace) -> int:
    """Record a step's outcome in its JSON (made if the step wrote none): exit code, wall
    time, limit, and on failure the end of its log. Exit code 1 when the step failed."""
    path = Path(args.json)
    try:
        doc = json.loads(path.read_text())
        if not isinstance(doc, dict):
            raise ValueError("not an object")
    except (OSError, ValueError) as exc:
        doc = {"status": "failed", "json_error": f"the step wrote no readable JSON ({exc})"}
    code = args.exit_code
    status = "timeout" if code in (124, 137) else ("failed" if code else "ok")
    if status == "ok" and doc.get("status") in ("failed", "skipped"):
        status = doc["status"]
    elif status == "ok" and "json_error" in doc:
        status = "failed"
    step = {"name": args.step, "status": status, "exit_code": code, "seconds": args.seconds,
            "limit_s": args.limit}
    if status in ("failed", "timeout"):
        log = Path(args.log)
        tail = log.read_text(errors="replace").strip().splitlines()[-15:] if log.is_file() \
            else []
        step["error"] = (doc.get("error") or
                         (f"stopped at its {args.limit:.0f} s limit" if status == "timeout"
                          else (tail[-1] if tail else f"exit code {code}")))
        step["log_tail"] = tail
    doc["step"] = step
    if doc.get("status") == "running":
        doc["status"] = status
    write(str(path), doc)
    return 0 if status in ("ok", "skipped") else 1


# --------------------------------------------------------------------------------- summary

def _best(points: list[dict[str, Any]], **match: Any) -> dict[str, Any] | None:
    ok = [p for p in points if "error" not in p and all(p.get(k) == v for k, v in match.items())]
    return max(ok, key=lambda p: p.get("slices_per_s", 0.0)) if ok else None


def _inference_figures(doc: dict[str, Any]) -> dict[str, Any]:
    sweep = doc.get("net_sweep", [])
    fig: dict[str, Any] = {"model": doc.get("model", {}).get("id"),
                           "gflop_per_slice": doc.get("model", {}).get("gflop_per_slice")}
    for prec in ("fp32", "bf16", "fp16"):
        best = _best(sweep, precision=prec)
        if best:
            fig[f"net_{prec}_best_slices_per_s"] = best["slices_per_s"]
            fig[f"net_{prec}_best_batch"] = best["batch"]
            fig[f"net_{prec}_best_memory_format"] = best["memory_format"]
            fig[f"net_{prec}_frac_bf16_peak"] = best.get("frac_bf16_peak")
    for key in ("compile", "cuda_graph"):
        extra = doc.get(key) or {}
        fig[f"{key}_slices_per_s"] = extra.get("slices_per_s")
        fig[f"{key}_speedup_vs_eager"] = extra.get("speedup_vs_eager")
        if "error" in extra or "skipped" in extra:
            fig[f"{key}_note"] = extra.get("error") or extra.get("skipped")
    candidates = [p for p in [*sweep, doc.get("compile") or {}, doc.get("cuda_graph") or {}]
                  if p.get("slices_per_s") and p.get("precision") in ("bf16", "fp16")]
    if candidates:
        top = max(candidates, key=lambda p: p["slices_per_s"])
        fig["best_reduced_slices_per_s"] = top["slices_per_s"]
        fig["best_reduced_config"] = {k: top.get(k) for k in
                                      ("precision", "memory_format", "batch", "mode")}
        fig["best_reduced_frac_bf16_peak"] = top.get("frac_bf16_peak")
    engine = doc.get("engine_sweep", [])
    for label in sorted({p["precision"] for p in engine}):
        best = _best(engine, precision=label)
        if best:
            fig[f"engine {label} best_slices_per_s"] = best["slices_per_s"]
    rows = {r["path"]: r for r in doc.get("rows", [])}
    for name, row in rows.items():
        fig[f"row {name} slices_per_s"] = row.get("slices_per_s")
        if "max_abs_dhu" in row:
            fig[f"row {name} max_abs_dhu"] = row["max_abs_dhu"]
    return fig


def _convert_figures(doc: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for run in doc.get("runs", []):
        keys = ("model_only_slices_per_s", "e2e_slices_per_s", "ratio_e2e_to_model_throughput",
                "cli_slices_per_s", "cli_wall_s", "frac_bf16_peak", "precision", "device",
                "error")
        out[run["run"]] = {k: run[k] for k in keys if k in run}
    return out


def summary(args: argparse.Namespace) -> int:
    """summary.json: every step's status and the figures, the GPU and software versions,
    and whether the targets of docs/performance.md were met (None: not measured)."""
    results = Path(args.results)
    docs: dict[str, dict[str, Any]] = {}
    steps = (results / "steps.txt").read_text().split() if (results / "steps.txt").is_file() \
        else []
    for name in steps:
        try:
            docs[name] = json.loads((results / f"{name}.json").read_text())
        except (OSError, ValueError) as exc:
            docs[name] = {"step": {"name": name, "status": "missing", "error": str(exc)}}
    env_doc = docs.get("env", {})
    out: dict[str, Any] = {
        "suite": {"smoke": args.smoke, "budget_s": args.budget, "wall_s": args.wall,
                  "written": time.strftime("%Y-%m-%d %H:%M:%S %Z")},
        "gpu": {k: env_doc.get(k) for k in (
            "gpu", "driver", "gpu_memory", "capability", "multiprocessors", "torch", "cuda",
            "cudnn", "python", "onnxruntime", "onnxruntime_providers", "kernelconv", "commit",
            "cpus", "device", "tf32_convolutions")},
        "steps": {n: d.get("step", {"status": "missing"}) for n, d in docs.items()},
        "figures": {}}
    fig = out["figures"]
    for name in ("inference-paper", "inference-default"):
        if name in docs:
            fig[name] = _inference_figures(docs[name])
            fig[name]["peaks"] = docs[name].get("peaks")
    if "e2e" in docs:
        fig["e2e"] = _convert_figures(docs["e2e"])
    if "onnx" in docs:
        fig["onnx"] = _convert_figures(docs["onnx"]) or {"skipped": docs["onnx"].get("reason")}
    if "correctness" in docs:
        c = docs["correctness"]
        fig["correctness"] = {"all_pass": c.get("all_pass"), "pass": c.get("pass"),
                              "slices": len(c.get("slices", [])),
                              "models": {m: {p: {k: v.get(k) for k in
                                                 ("max_abs_dhu", "mean_abs_dhu", "pass")}
                                             for p, v in r.items() if isinstance(v, dict)}
                                         for m, r in c.get("models", {}).items()},
                              "filter_max_abs_dhu": (c.get("filter") or {}).get("max_abs_dhu"),
                              "torchrun": c.get("torchrun"), "enhanced": c.get("enhanced")}
    if "train-bench" in docs:
        fig["train_s_per_iteration"] = {r["amp"]: r["s_per_iteration"]
                                        for r in docs["train-bench"].get("results", [])}
    if "train-run" in docs:
        t = docs["train-run"]
        fig["train_run"] = {k: t.get(k) for k in (
            "iterations", "s_per_iteration", "model_bytes", "model_under_16mb",
            "exported_model_converts", "error")}
    paper = fig.get("inference-paper", {}).get("net_bf16_best_slices_per_s")
    e2e_paper = fig.get("e2e", {}).get("paper", {}).get("e2e_slices_per_s")
    out["targets"] = {
        "paper_bf16_model_only_slices_per_s": {"target": 1000, "measured": paper,
                                               "met": None if args.smoke or paper is None
                                               else paper >= 1000},
        "paper_e2e_slices_per_s": {"target": 400, "measured": e2e_paper,
                                   "met": None if args.smoke or e2e_paper is None
                                   else e2e_paper >= 400},
        "e2e_slices_per_s": {run: r.get("e2e_slices_per_s")
                             for run, r in fig.get("e2e", {}).items()}}
    write(str(results / "summary.json"), out)
    print(json.dumps({k: out[k] for k in ("gpu", "targets")}, indent=1, default=str))
    for name, step in out["steps"].items():
        print(f"{name:18s} {step.get('status', '?'):8s} {step.get('seconds') or 0:6.1f} s  "
              f"{step.get('error', '')}")
    return 0


# ------------------------------------------------------------------------------------ main

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("env")
    p.add_argument("--device", default="cuda")
    p.add_argument("--json")
    p = sub.add_parser("correctness")
    p.add_argument("--device", default="cuda")
    p.add_argument("--json")
    p.add_argument("--slices", type=int, default=24, help="real slices at most")
    p.add_argument("--models", default="default,sim-paired-v1")
    p.add_argument("--frames", type=int, default=40, help="Enhanced CT frames")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--torchrun-slices", type=int, default=4, help="slices per series")
    p = sub.add_parser("onnx")
    p.add_argument("--device", default="cuda")
    p.add_argument("--json", required=True)
    p.add_argument("rest", nargs=argparse.REMAINDER, help="-- convert_bench.py arguments")
    p = sub.add_parser("train-run")
    p.add_argument("--device", default="cuda")
    p.add_argument("--json")
    p.add_argument("--seconds", type=float, help="time for the whole step (default: "
                   "$STEP_TIMEOUT, which gpu_suite.sh sets)")
    p.add_argument("--reserve", type=float, default=45.0, help="seconds kept for the export")
    p.add_argument("--init", default="resim-fr-v1", help="model or checkpoint to start from")
    p.add_argument("--precision", default="bf16")
    p.add_argument("--slices", type=int, default=8, help="simulated training slices")
    p.add_argument("--ckpt-every", type=int, default=500)
    p.add_argument("--out-dir", default=".", help="where the exported model goes")
    p.add_argument("--work")
    p.add_argument("--smoke", action="store_true", help="2 iterations of 128 px crops")
    p = sub.add_parser("finish-step")
    p.add_argument("json")
    p.add_argument("--step", required=True)
    p.add_argument("--exit-code", type=int, required=True)
    p.add_argument("--seconds", type=float, default=0.0)
    p.add_argument("--limit", type=float, default=0.0)
    p.add_argument("--log", default="")
    p = sub.add_parser("summary")
    p.add_argument("results")
    p.add_argument("--smoke", action="store_true")
    p.add_argument("--budget", type=float)
    p.add_argument("--wall", type=float)
    args = ap.parse_args(argv)
    if args.command == "onnx" and args.rest[:1] == ["--"]:
        args.rest = args.rest[1:]
    commands: dict[str, Callable[[argparse.Namespace], int]] = {
        "env": env, "correctness": correctness, "onnx": onnx, "train-run": train_run,
        "finish-step": finish_step, "summary": summary}
    return commands[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
