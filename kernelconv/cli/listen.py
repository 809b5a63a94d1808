"""`kernelconv listen`, `kernelconv status` and `kernelconv echo`: the DICOM node."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from kernelconv.cli.app import cli
from kernelconv.cli.options import engine_options
from kernelconv.cli.render import err, new_table, out
from kernelconv.errors import InputError, UsageError
from kernelconv.pacs.config import ListenConfig

LISTEN_EPILOG = """
\b
Examples:
  kernelconv listen --to B30f --out converted/ --port 11112
  kernelconv listen --to B30f --forward PACS@10.0.0.5:104 --allow-ae PACS,CT1 --stable-seconds 30
  kernelconv listen --config listen.json
  kernelconv echo KERNELCONV@localhost:11112

\b
Every received instance is fsync'd into the spool before it is acknowledged; a series is
converted once nothing new of it has arrived for --stable-seconds; it leaves the spool only
when written to --out and accepted by every --forward destination. Options override the
--config file, which overrides the defaults. See docs/pacs.md.
"""

_D = ListenConfig()


def _default(value: object) -> str:
    return f" [default: {value}]"


@cli.command(epilog=LISTEN_EPILOG)
@click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False,
              path_type=Path), help="JSON file with any of these options (underscored names).")
@click.option("--ae-title", default=None, help="Our AE title." + _default(_D.ae_title))
@click.option("--host", default=None, help="Address to listen on." + _default(_D.host))
@click.option("--port", type=click.IntRange(1, 65535), default=None, help=_default(_D.port))
@click.option("--to", "target", default=None, metavar="KERNEL", help="Target kernel (required).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Write converted series here.")
@click.option("--forward", multiple=True, metavar="AET@HOST:PORT",
              help="Send converted series here (repeatable).")
@click.option("--allow-ae", default=None, help="Comma-separated calling AE titles to accept "
              "[default: any].")
@click.option("--stable-seconds", type=click.FloatRange(0.1), default=None,
              help="Quiet period that completes a series." + _default(_D.stable_seconds))
@click.option("--spool", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Spool folder." + _default(_D.spool))
@click.option("--tls-cert", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--tls-key", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--tls-ca", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Require client certificates signed by this CA.")
@engine_options
@click.option("--unconvertible", type=click.Choice(["ignore", "forward"]), default=None,
              help="What to do with series that cannot be converted."
                   + _default(_D.unconvertible))
@click.option("--retries", type=click.IntRange(1, 100), default=None,
              help="Forwarding attempts per destination." + _default(_D.retries))
def listen(config_file: Path | None, **options: Any) -> None:
    """Receive series over DICOM (C-STORE), convert them, store and/or forward the results."""
    import signal

    from kernelconv.engines.select import select_engine
    from kernelconv.pacs.server import Listener, configure_logging

    cfg = ListenConfig()
    if config_file:
        cfg = cfg.updated(ListenConfig.read_file(config_file), str(config_file))
    options["to"] = options.pop("target")
    cfg = cfg.updated(options, "options").validated()
    selected = select_engine(cfg.engine_spec(), notice=err.print)
    configure_logging()
    listener = Listener(cfg, selected.factory, selected.domains, selected.owner)
    try:
        listener.start()
    except OSError as exc:
        raise UsageError(f"listen: cannot listen on {cfg.host}:{cfg.port} ({exc.strerror})") \
            from None
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: listener.shutdown())
    listener.run_forever()


@cli.command(epilog="""
\b
Examples:
  kernelconv status --spool /var/spool/kernelconv
""")
@click.option("--spool", type=click.Path(file_okay=False, path_type=Path),
              default=_D.spool, show_default=True)
def status(spool: Path) -> None:
    """Show a listener's pending, delivered, skipped and failed series (from SPOOL/status.json)."""
    import datetime

    path = spool / "status.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise InputError(f"{path}: no listener status here (is --spool right?)") from None
    counts = ", ".join(f"{k} {v}" for k, v in sorted(data.get("counts", {}).items())) or "none"
    out.print(f"series: {counts}")
    t = new_table(f"kernelconv listener: {spool}",
                  ("updated", "SeriesInstanceUID", "status", "instances", "reason"),
                  wrap=("SeriesInstanceUID", "reason"))
    for r in data.get("series", [])[:50]:
        when = datetime.datetime.fromtimestamp(r["updated"]).strftime("%Y-%m-%d %H:%M:%S")
        t.add_row(when, r["series_uid"], r["status"], str(r["instances"]), r.get("reason", ""))
    out.print(t)


@cli.command(epilog="""
\b
Examples:
  kernelconv echo KERNELCONV@localhost:11112
  kernelconv echo PACS@10.0.0.5:104 --ae-title KERNELCONV
""")
@click.argument("destination", metavar="AET@HOST:PORT")
@click.option("--ae-title", default=_D.ae_title, show_default=True, help="Our AE title.")
def echo(destination: str, ae_title: str) -> None:
    """Test DICOM connectivity with C-ECHO."""
    from kernelconv.pacs.forward import Destination
    from kernelconv.pacs.forward import echo as c_echo

    dest = Destination.parse(destination)
    seconds = c_echo(dest, ae_title)
    out.print(f"C-ECHO {dest.label}: success in {seconds * 1000:.0f} ms")
