"""The kernel transfers a `g_base: learned` run has learnt, beside the kernel response table's.

Reads the learnt windows from a run's newest checkpoint (or a checkpoint file, or an exported
model's stored windows) and prints, for every direction, the base filter's transfer H(f) =
W_t W_s / (W_s^2 + lambda (f/10)^2) at a few frequencies next to the one the response table's
windows give (for the simulator's kernels: the true one, since the simulator reconstructs with
exactly those windows). With --out a PNG: learnt (solid) and table (dashed) transfers per
direction, on a log scale.

    python scripts/learned_windows.py runs/u13/lw-frozen --out windows.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def transfers(source: Path) -> tuple[dict[tuple[str, str], np.ndarray],
                                     dict[tuple[str, str], np.ndarray], np.ndarray, str]:
    """(learnt, table) transfers per direction on a frequency axis (lp/cm), and a label."""
    from kernelconv.engines.filter_engine import FilterEngine
    from kernelconv.kernel_response import load_response_table, responses_from_json
    from kernelconv.training.checkpoint import latest_checkpoint, read_checkpoint
    from kernelconv.training.learned_windows import LearnedWindows

    table = load_response_table()
    if source.suffix == ".safetensors":
        from kernelconv.modelfile import read_info

        info = read_info(source)
        learnt = responses_from_json(info.kernel_responses)
        domains, label = list(info.domains), f"model {info.name}"
    else:
        ckpt = latest_checkpoint(source) if source.is_dir() else source
        if ckpt is None:
            raise SystemExit(f"{source}: no checkpoint")
        state = read_checkpoint(ckpt, required=("base", "domains", "iteration"))
        domains = list(state["domains"])
        windows = LearnedWindows.from_state(domains, table, state["base"])
        learnt = windows.responses(table, "")
        label = f"{ckpt.parent.parent.name} iteration {state['iteration']}"
    ours = FilterEngine(learnt, noise_limit=False)
    ref = FilterEngine({d: table[d] for d in domains}, noise_limit=False)
    f = np.linspace(0.0, 10.0, 201)
    pairs = [(s, t) for s in domains for t in domains if s != t]
    return ({p: ours.transfer(*p, f) for p in pairs}, {p: ref.transfer(*p, f) for p in pairs},
            f, label)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("source", type=Path, help="run folder, checkpoint (.pt) or model file")
    ap.add_argument("--out", type=Path, help="write a PNG of the transfers")
    args = ap.parse_args()
    learnt, table, f, label = transfers(args.source)
    print(f"{label}: base-filter transfer H(f), learnt / table")
    marks = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]
    print("direction      " + " ".join(f"{m:>5.0f} lp/cm" for m in marks))
    for pair, h in learnt.items():
        cells = [f"{np.interp(m, f, h):5.2f}/{np.interp(m, f, table[pair]):<5.2f}" for m in marks]
        print(f"{pair[0]}->{pair[1]:<8} " + " ".join(f"{c:>11}" for c in cells))
    if args.out:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 2, figsize=(10, 4))
        for ax, softer in zip(axes, (True, False), strict=True):
            for i, (pair, h) in enumerate(learnt.items()):
                down = pair[0] > pair[1]  # names sort soft to sharp for the built-in kernels
                if down != softer:
                    continue
                ax.semilogy(f, np.maximum(h, 1e-3), color=f"C{i}", label=f"{pair[0]}->{pair[1]}")
                ax.semilogy(f, np.maximum(table[pair], 1e-3), color=f"C{i}", ls="--")
            ax.set_xlabel("spatial frequency (lp/cm)")
            ax.set_ylabel("H(f)")
            ax.set_title(("sharp -> soft" if softer else "soft -> sharp")
                         + " (solid: learnt, dashed: table)", fontsize=9)
            ax.axvline(10.0 / (2 * 0.684), color="grey", lw=0.5)
            ax.legend(fontsize=8)
        fig.suptitle(label, fontsize=10)
        fig.tight_layout()
        fig.savefig(args.out, dpi=110)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
