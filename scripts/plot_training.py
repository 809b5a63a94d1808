"""Training curves of one or more `kernelconv train` runs, without TensorBoard.

Reads RUN/losses.jsonl (losses averaged over each log window) and RUN/validation.jsonl (PSNR
and noise SD ratio per direction on the --val data), prints them as tables and, with --out,
draws a PNG: D/cls and G/cls against iterations, then validation PSNR and noise ratio per
direction (one line per run).

    python scripts/plot_training.py runs/a runs/b --out curves.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def _rows(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", type=Path, nargs="+")
    ap.add_argument("--out", type=Path, help="write the curves as a PNG")
    args = ap.parse_args()
    data = {}
    for run in args.runs:
        losses, val = _rows(run / "losses.jsonl"), _rows(run / "validation.jsonl")
        data[run.name] = (losses, val)
        print(f"== {run}")
        if losses:
            keys = [k for k in losses[-1] if k not in ("iteration", "lr_g")]
            print("iteration " + " ".join(f"{k:>9}" for k in keys))
            for r in losses[::max(1, len(losses) // 10)] + losses[-1:]:
                print(f"{r['iteration']:<9} " + " ".join(
                    f"{r[k]:>9.3f}" if k in r else f"{'-':>9}" for k in keys))
        for v in val:
            dirs = sorted({k.split("/")[1] for k in v if k.startswith("val/")})
            print(f"validation {v.get('iteration')}: " + "  ".join(
                f"{d} {v[f'val/{d}/psnr']:.2f}/{v.get(f'val/{d}/noise_ratio', float('nan')):.2f}"
                for d in dirs))
    if args.out:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        dirs = sorted({k.split("/")[1] for _, val in data.values() for v in val
                       for k in v if k.startswith("val/")})
        fig, axes = plt.subplots(3, max(2, len(dirs)), figsize=(3.2 * max(2, len(dirs)), 8.5),
                                 squeeze=False)
        for name, (losses, val) in data.items():
            for ax, key in zip(axes[0], ("D/cls", "G/cls"), strict=False):
                pts = [(r["iteration"], r[key]) for r in losses if key in r]
                if pts:
                    ax.plot(*zip(*pts, strict=True), label=name)
                ax.set_title(key)
            for j, d in enumerate(dirs):
                for row, metric in ((1, "psnr"), (2, "noise_ratio")):
                    pts = [(v["iteration"], v[f"val/{d}/{metric}"]) for v in val
                           if f"val/{d}/{metric}" in v]
                    if pts:
                        axes[row][j].plot(*zip(*pts, strict=True), marker="o", label=name)
                    axes[row][j].set_title(f"{d} {metric.replace('_', ' ')}", fontsize=9)
        for ax in axes[0][2:]:
            ax.axis("off")
        axes[0][0].axhline(1.0986, color="grey", lw=0.8, ls="--")
        axes[0][0].legend(fontsize=7)
        for ax in axes[2]:
            ax.axhline(1.0, color="grey", lw=0.8, ls="--")
        fig.tight_layout()
        fig.savefig(args.out, dpi=90)
        print(f"curves: {args.out}")


if __name__ == "__main__":
    main()
