"""Exception classes and the documented exit codes of the command line.

Every error a user can cause is one of these classes; the CLI prints ``str(error)`` on one line
and exits with the class's ``exit_code``. See docs/usage.md, "Exit codes".
"""

from __future__ import annotations

#: all series converted or skipped
EXIT_OK = 0
#: at least one series failed; the others were converted
EXIT_SERIES_FAILED = 1
#: bad command-line usage (click's own code)
EXIT_USAGE = 2
#: no model available, or the model file is corrupt or incompatible
EXIT_MODEL = 3
#: the input path is missing or holds no convertible CT series
EXIT_INPUT = 4
#: the output location cannot be used (not writable, inside the input, ...)
EXIT_OUTPUT = 5
#: a bug in kernelconv: please report it
EXIT_INTERNAL = 70


class KernelconvError(Exception):
    """Base class: a problem with a clear one-line explanation."""

    exit_code = EXIT_INTERNAL


class UsageError(KernelconvError):
    """An option value that cannot be used (like click's usage errors)."""

    exit_code = EXIT_USAGE


class ModelError(KernelconvError):
    """The model file is missing, corrupt or incompatible."""

    exit_code = EXIT_MODEL


class NoModelError(ModelError):
    """No model was given and no default model is installed."""


class InputError(KernelconvError):
    """The input path cannot be used."""

    exit_code = EXIT_INPUT


class OutputError(KernelconvError):
    """The output path cannot be used."""

    exit_code = EXIT_OUTPUT


class SeriesError(KernelconvError):
    """One series cannot be converted; the run goes on with the others."""

    exit_code = EXIT_SERIES_FAILED


class KernelError(SeriesError):
    """A kernel name that the kernel table or the model does not know."""


class PixelDataError(SeriesError):
    """Pixel data is missing, truncated or cannot be decoded."""
