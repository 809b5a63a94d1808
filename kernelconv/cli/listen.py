"""`kernelconv listen`, `kernelconv status` and `kernelconv echo`: the DICOM node."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from kernelconv.cli.app import cli
from kernelconv.cli.options import engine_options, given, renamed
from kernelconv.cli.render import err, new_table, out
from kernelconv.errors import InputError, UsageError
from kernelconv.fileio import probe_output
from kernelconv.pacs.config import ListenConfig

LISTEN_EPILOG = """
\b
Examples:
  kernelconv listen --to B30f --out-dir converted/ --port 11112
  kernelconv listen --to B30f --forward PACS@10.0.0.5:104 --allow-ae PACS,CT1
  kernelconv listen --config listen.json
  kernelconv listen --config listen.json --retry-failed
  kernelconv echo KERNELCONV@localhost:11112

Every received instance is fsync'd into the spool before it is acknowledged; a
series is converted once nothing new of it has arrived for --stable-seconds; it
leaves the spool only when written to --out-dir and accepted by every --forward
destination. One listener per spool (a lock). Options override the --config
file, which overrides the defaults. See docs/pacs.md.
"""

_D = ListenConfig()
_TLS = click.Path(exists=True, dir_okay=False, path_type=Path)


@cli.command(epilog=LISTEN_EPILOG)
@click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False,
              path_type=Path), help="JSON file with any of these options (underscored names).")
@click.option("--ae-title", default=_D.ae_title, help="Our AE title (the called AE title).")
@click.option("--host", default=_D.host, help="Address to listen on.")
@click.option("--port", type=click.IntRange(1, 65535), default=_D.port,
              help="TCP port to listen on.")
@click.option("--to", "target", metavar="KERNEL", help="Target kernel (required, here or in --config).")
@click.option("--out-dir", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              metavar="DIR", help="Write converted series here (as convert writes OUT).")
@renamed("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--forward", multiple=True, metavar="AET@HOST:PORT",
              help="Send converted series here (repeatable).")
@click.option("--allow-ae", show_default="any",
              help="Comma-separated calling AE titles to accept.")
@click.option("--stable-seconds", type=click.FloatRange(0.1), default=_D.stable_seconds,
              help="Quiet period that completes a series.")
@click.option("--spool", type=click.Path(file_okay=False, path_type=Path), default=_D.spool,
              help="Spool folder (one listener each).")
@click.option("--retry-failed", is_flag=True,
              help="On start, move the series of SPOOL/failed/ back to be converted and "
                   "delivered again.")
@click.option("--tls-cert", type=_TLS, metavar="FILE.pem",
              help="Serve DICOM over TLS with this certificate (PEM; it may hold the key).")
@click.option("--tls-key", type=_TLS, metavar="FILE.pem", show_default="in --tls-cert",
              help="The certificate's private key (PEM).")
@click.option("--tls-ca", type=_TLS, metavar="FILE.pem",
              help="Require client certificates signed by this CA.")
@engine_options
@click.option("--unconvertible", type=click.Choice(["ignore", "forward"]),
              default=_D.unconvertible,
              help="What to do with series that cannot be converted.")
@click.option("--retries", type=click.IntRange(1, 100), default=_D.retries,
              help="Forwarding attempts per destination.")
def listen(config_file: Path | None, retry_failed: bool, **options: Any) -> None:
    """Receive series over DICOM (C-STORE), convert them, store and/or forward the
    results."""
    import signal

    from kernelconv.engines.select import select_engine
    from kernelconv.pacs.server import Listener, configure_logging

    cfg = ListenConfig()
    if config_file:
        cfg = cfg.updated(ListenConfig.read_file(config_file), str(config_file))
    options = given(options)  # what the command line gives overrides the file
    options["to"] = options.pop("target")
    cfg = cfg.updated(options, "options").validated()
    if cfg.out is not None:
        probe_output(cfg.out, "--out-dir", folder=True)
    selected = select_engine(cfg.engine_spec(), notice=err.print)
    configure_logging()
    listener = Listener(cfg, selected.factory, selected.domains, selected.owner, retry_failed)
    try:
        listener.start()
    except OSError as exc:
        listener.close()
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
              default=_D.spool, help="The listener's spool folder.")
def status(spool: Path) -> None:
    """Show a listener's pending, delivered, skipped and failed series (from
    SPOOL/status.json)."""
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
    failed = sorted(p.name for p in (spool / "failed").glob("*") if p.is_dir())
    if failed:
        out.print(f"{len(failed)} series in {spool / 'failed'}: fix the cause (the reason "
                  "above), then convert them again with `kernelconv listen ... --retry-failed`")


@cli.command(epilog="""
\b
Examples:
  kernelconv echo KERNELCONV@localhost:11112
  kernelconv echo PACS@10.0.0.5:104 --ae-title KERNELCONV
""")
@click.argument("destination", metavar="AET@HOST:PORT")
@click.option("--ae-title", default=_D.ae_title, help="Our AE title (the calling AE title).")
def echo(destination: str, ae_title: str) -> None:
    """Test DICOM connectivity with C-ECHO."""
    from kernelconv.pacs.forward import Destination
    from kernelconv.pacs.forward import echo as c_echo

    dest = Destination.parse(destination)
    seconds = c_echo(dest, ae_title)
    out.print(f"C-ECHO {dest.label}: success in {seconds * 1000:.0f} ms")
