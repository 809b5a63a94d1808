"""Convert a folder from Python: the same pipeline the CLI uses.

    python examples/convert_api.py IN OUT MODEL_FILE [TARGET]
"""

from __future__ import annotations

import sys
from pathlib import Path

from kernelconv.engines.torch_engine import TorchEngine
from kernelconv.modelfile import read_info
from kernelconv.pipeline import ConvertOptions, run_convert, write_report


def main() -> int:
    src, out, model = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    target = sys.argv[4] if len(sys.argv) > 4 else "B30f"
    info = read_info(model)
    report = run_convert(src, out, lambda: TorchEngine(model, "auto"), tuple(info.domains),
                         ConvertOptions(target=target, batch_size=4))
    write_report(report, out / "kernelconv-report.json")
    for r in report.results:
        print(f"{r.folder}: {r.source_kernel} -> {r.target_kernel}: {r.status} {r.reason}")
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
