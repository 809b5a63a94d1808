"""Compact tables for a model card from benchmarks/model_eval.py's --json output.

    python benchmarks/eval_summary.py eval.json --model "model resim-fr-v1"

Prints markdown tables: PSNR per data set and direction (model / filter / identity, the
better of model and filter in bold, and the number of slices); the model's PSNR minus the
filter's (or --baseline's), as the mean of the paired per-slice differences with their SD
and a bootstrap 95% interval, per data set and pooled over the simulated sets (every set but
the real phantom); the model's largest |bias| per data set and region beside the filter's,
and how many series the HU check passed at convert's default limit; the noise SD ratio to
the true target per data set and direction (model / filter / identity); and, where the
evaluation had a QA phantom (--qa), the MTF50 ratio of the converted phantom to the target
kernel's (model / filter / identity).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from model_eval import fmt_difference, paired_difference

REGIONS = ("soft tissue", "fat", "lung")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("eval_json", type=Path)
    ap.add_argument("--model", required=True, help='row name in the JSON, e.g. "model NAME"')
    ap.add_argument("--baseline", default="filter",
                    help='the row the PSNR difference table compares with (default: filter)')
    args = ap.parse_args()
    data = json.loads(args.eval_json.read_text())
    qa = data.pop("qa", None)  # MTF50 of the QA phantom: no PSNR, its own table
    # the directions in model_eval's order, as the data sets hold them
    directions = list(dict.fromkeys(d for m in data.values() for d in m["identity"]))

    print("| data (slices) | " + " | ".join(directions) + " |")
    print("|---|" + "---|" * len(directions))
    def row(methods: dict[str, Any], cell: Callable[[str], str]) -> str:
        """One table row's cells: ``cell(direction)``, "-" where the model has none."""
        return " | ".join(cell(d) if d in methods[args.model] else "-" for d in directions)

    def psnr_cell(methods: dict[str, Any], d: str) -> str:
        m, f, i = (methods[k][d]["psnr"] for k in (args.model, "filter", "identity"))
        ms, fs = (f"**{m:.2f}**", f"{f:.2f}") if m >= f else (f"{m:.2f}", f"**{f:.2f}**")
        return f"{ms} / {fs} / {i:.2f}"

    for name, methods in data.items():
        n = max(v["n"] for v in methods["identity"].values())
        print(f"| {Path(name).name} ({n}) | "
              + row(methods, lambda d, m=methods: psnr_cell(m, d)) + " |")

    print()
    print(f"| model - {args.baseline}, dB: mean (per-slice SD, 95% interval, slices) | "
          + " | ".join(directions) + " |")
    print("|---|" + "---|" * len(directions))
    pooled: dict[str, tuple[list[float], list[float]]] = {d: ([], []) for d in directions}
    def difference_cell(name: str, methods: dict[str, Any], d: str) -> str:
        a = methods[args.model][d]["psnr_slices"]
        b = methods[args.baseline][d]["psnr_slices"]
        if "phantom" not in name:
            pooled[d][0].extend(a)
            pooled[d][1].extend(b)
        return fmt_difference(paired_difference(a, b))

    for name, methods in data.items():
        print(f"| {Path(name).name} | "
              + row(methods, lambda d, n=name, m=methods: difference_cell(n, m, d)) + " |")
    print("| all simulated sets pooled | " + " | ".join(
        fmt_difference(paired_difference(*pooled[d])) if pooled[d][0] else "-"
        for d in directions) + " |")

    print()
    print("| data | " + " | ".join(f"max abs bias {r}, model (filter)" for r in REGIONS)
          + " | LAA-950 diff B70f -> B30f, model (filter) | series the HU check passed at "
          "convert's default limit, model (filter) |")
    print("|---|" + "---|" * (len(REGIONS) + 2))
    for name, methods in data.items():
        cells = []
        for r in REGIONS:
            vals = {}
            for k in (args.model, "filter"):
                got = [abs(v[f"bias {r}"]) for v in methods[k].values()
                       if v.get(f"bias {r}") is not None]
                vals[k] = max(got) if got else None
            cells.append("-" if vals[args.model] is None else
                         f"{vals[args.model]:.1f} ({vals['filter']:.1f})")
        laa = methods[args.model].get("B70f -> B30f", {}).get("laa")
        flaa = methods["filter"].get("B70f -> B30f", {}).get("laa")
        cells.append("-" if laa is None else f"{laa:+.2f} ({flaa:+.2f})")
        checks = {k: [c for v in methods[k].values() for c in v.get("hu_check_passed", [])]
                  for k in (args.model, "filter")}
        cells.append(" ".join(f"{sum(c)}/{len(c)}" if i == 0 else f"({sum(c)}/{len(c)})"
                              for i, c in enumerate(checks.values())))
        print(f"| {Path(name).name} | " + " | ".join(cells) + " |")

    print()
    print("| data, noise SD ratio to the true target | " + " | ".join(directions) + " |")
    print("|---|" + "---|" * len(directions))
    for name, methods in data.items():
        cells = ["-" if d not in methods[args.model] else " / ".join(
            f"{methods[k][d]['noise ratio']:.2f}" for k in (args.model, "filter", "identity"))
            for d in directions]
        print(f"| {Path(name).name} | " + " | ".join(cells) + " |")
    if qa is not None:
        print("| QA phantom, MTF50 ratio to the target's | " + " | ".join(
            "-" if d not in qa[args.model] else " / ".join(
                f"{qa[k][d]['ratio']:.2f}" for k in (args.model, "filter", "identity"))
            for d in directions) + " |")


if __name__ == "__main__":
    main()
