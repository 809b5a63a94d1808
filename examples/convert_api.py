"""Convert a folder from Python: the same pipeline the CLI uses (kernelconv.pipeline).

    python examples/convert_api.py [IN] OUT [--model NAME|PATH] [--to KERNEL]

IN defaults to the bundled example series (examples/data/chest-b70f), the model to the
default model (`kernelconv models` marks it). Exit codes are those of `kernelconv convert`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from kernelconv.bundled import example_series_dir
from kernelconv.engines.select import EngineSpec, select_engine
from kernelconv.errors import KernelconvError
from kernelconv.pipeline import ConvertOptions, default_report_path, run_convert


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("input", metavar="IN", type=Path, nargs="?",
                        help="folder with DICOM CT series (default: the bundled example)")
    parser.add_argument("out", metavar="OUT", type=Path, help="folder for the derived series")
    parser.add_argument("--model", metavar="NAME|PATH",
                        help="model name or file (default: the default model)")
    parser.add_argument("--to", metavar="KERNEL", default="B30f",
                        help="target kernel (default: %(default)s)")
    args = parser.parse_args(argv)
    src = args.input or example_series_dir()
    if src is None:
        parser.error("IN: no bundled example series is installed; name an input folder")
    try:
        # the service finds and reads the model once; the engine is built only when needed
        selected = select_engine(EngineSpec(model=args.model))
        report = run_convert(src, args.out, selected.factory, selected.domains,
                             ConvertOptions(target=args.to, batch_size=4), owner=selected.owner,
                             report_path=default_report_path(args.out))
    except KernelconvError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    for r in report.results:
        print(f"{r.folder}: {r.source_kernel} -> {r.target_kernel}: {r.status}"
              + (f" ({r.reason})" if r.reason else ""))
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
