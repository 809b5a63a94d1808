"""Reproduce a Table-2-style comparison on held-out simulated patients.

For all six directions between B30f, B50f and B70f: identity (no conversion), the classical
MTF-ratio filter, and, with --model (repeatable), trained kernelconv models, evaluated against
the true target-kernel series of the same simulated raw data.

    python examples/table2.py --out /tmp/kc-table2
    python examples/table2.py --out /tmp/kc-table2 --model models/NAME.safetensors
    python examples/table2.py --out /tmp/kc-ablation --model A.safetensors --model B.safetensors

Writes OUT/table2.md (and table2.json); the simulation and conversions stay under OUT.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from pathlib import Path

from kernelconv.engines.filter_engine import FilterEngine
from kernelconv.evaluation.evaluate import (
    TABLE2_DIRECTIONS,
    details_markdown,
    evaluate,
    json_safe,
    table2_markdown,
)
from kernelconv.kernel_response import load_response_table
from kernelconv.pipeline import ConvertOptions, run_convert
from kernelconv.sim.series import SimulationConfig, simulate


def _link_tree(src: Path, dst: Path) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    for f in src.iterdir():
        target = dst / f.name
        if not target.exists():
            try:
                os.link(f, target)
            except OSError:
                shutil.copy2(f, target)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--patients", type=int, default=2)
    ap.add_argument("--slices", type=int, default=8)
    ap.add_argument("--seed", type=int, default=9001, help="held-out seed (training uses others)")
    ap.add_argument("--model", type=Path, action="append", default=[],
                    help="a kernelconv model file to evaluate as well (repeatable)")
    args = ap.parse_args()

    sim = args.out / "sim"
    config = SimulationConfig(patients=args.patients, slices=args.slices, seed=args.seed)
    patients = simulate(sim, config, load_response_table())

    methods: dict[str, list[dict]] = {}
    # identity: the source series itself, compared with each target kernel
    identity = []
    for source, target in TABLE2_DIRECTIONS:
        pred = args.out / "identity" / f"{source}-as-{target}"
        for p in patients:
            _link_tree(p / source, pred / p.name)
        identity += [r.summary() for r in evaluate(pred, sim, sim, target=target,
                                                   keep_example=False)]
    methods["identity"] = identity

    engines = {"MTF-ratio filter": lambda: FilterEngine()}
    if args.model:
        from kernelconv.engines.torch_engine import TorchEngine

        for model in args.model:
            engines["model " + model.stem] = lambda m=model: TorchEngine(m, "auto")
    for label, factory in engines.items():
        engine = factory()
        conv = args.out / label.replace(" ", "-")
        for source, target in TABLE2_DIRECTIONS:
            for p in patients:
                # an evaluation measures every method, also one that fails the HU check
                run_convert(p / source, conv, lambda e=engine: e, engine.domains,
                            ConvertOptions(target=target, batch_size=4, max_bias=float("inf")))
        methods[label] = [r.summary() for r in evaluate(conv, sim, sim, keep_example=False)]

    text = [f"Held-out simulated patients: {args.patients} x {args.slices} slices, seed "
            f"{args.seed}.", "", table2_markdown(methods)]
    for label, summaries in methods.items():
        text += [f"### {label}", "", details_markdown(summaries)]
    report = "\n".join(text)
    (args.out / "table2.md").write_text(report, encoding="utf-8")
    (args.out / "table2.json").write_text(
        json.dumps(json_safe(methods), indent=2, allow_nan=False) + "\n", encoding="utf-8")
    print(report)


if __name__ == "__main__":
    main()
