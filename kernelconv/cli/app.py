"""The ``kernelconv`` click group and the entry point that turns errors into exit codes."""

from __future__ import annotations

import sys

import click

from kernelconv import __version__
from kernelconv.cli.render import fail
from kernelconv.errors import EXIT_INTERNAL, EXIT_OK, KernelconvError

#: every command: -h, help text at most 80 columns wide, every default shown by click
CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 80,
                    "show_default": True}


@click.group(context_settings=CONTEXT_SETTINGS)
@click.version_option(__version__, "--version", prog_name="kernelconv")
def cli() -> None:
    """Convert CT images between reconstruction kernels (e.g. sharp B70f -> soft B30f).

    DICOM in, DICOM out: each converted series is written as a new, derived series. The model
    is the GGCL StarGAN generator of Choi et al., MICCAI 2023.

    \b
    Examples:
      kernelconv convert scans/ converted/ --to B30f
      kernelconv convert scans/ converted/ --to B30f --dry-run
      kernelconv models
    """


def click_message(exc: click.ClickException) -> str:
    """A click error as the one line of every kernelconv error: the message and, for a usage
    error, where to read the usage (click itself prints usage, hint and message on three)."""
    message = exc.format_message().rstrip(".")
    ctx = getattr(exc, "ctx", None)
    if isinstance(exc, click.UsageError) and ctx is not None:
        message += f" (see '{ctx.command_path} --help')"
    return message


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI, turning every error into one line and an exit code."""
    import logging
    import warnings

    # pydicom warns about every non-conformant value in a source file; the conversion reports
    # what matters per series, so keep the terminal to one line per problem
    warnings.filterwarnings("ignore", module=r"pydicom\..*")
    warnings.filterwarnings("ignore", category=UserWarning,
                            message=r"(Invalid value|The value length)")
    logging.getLogger("pydicom").setLevel(logging.ERROR)
    try:
        code = cli.main(args=argv, prog_name="kernelconv", standalone_mode=False)
    except click.exceptions.Abort:
        fail("aborted", 130)
    except click.exceptions.NoArgsIsHelpError as exc:  # `kernelconv` alone: the help
        exc.show()
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        fail(click_message(exc), exc.exit_code)
    except KernelconvError as exc:
        fail(str(exc), exc.exit_code)
    except KeyboardInterrupt:
        fail("interrupted", 130)
    except Exception as exc:  # noqa: BLE001 - last resort: no traceback for users
        fail(f"internal error ({type(exc).__name__}: {exc}); please report it", EXIT_INTERNAL)
    sys.exit(code if isinstance(code, int) else EXIT_OK)
