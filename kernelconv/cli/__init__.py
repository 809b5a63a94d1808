"""The ``kernelconv`` command line: one module per command group, each a thin click command
that parses, calls one service and renders the result with rich.

Errors users can cause print one line on stderr and exit with a documented code
(kernelconv.errors; docs/usage.md). Nothing here holds conversion logic: options shared by
commands are declared once (options.py) and rendering helpers live once (render.py).
"""

from kernelconv.cli import calibrate, convert, evaluate, listen, simulate, train  # noqa: F401 (commands)
from kernelconv.cli.app import cli, main

__all__ = ["cli", "main"]
