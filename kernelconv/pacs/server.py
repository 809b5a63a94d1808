"""`kernelconv listen`: Storage SCP -> spool -> stable series -> convert -> store/forward.

The C-STORE handler only persists (spool) and acknowledges; a monitor thread hands series that
have been quiet for ``stable_seconds`` to one worker thread, which converts them with the same
pipeline as `kernelconv convert` and writes them under ``out`` and/or sends them to every
forward destination (with retries). Series leave the spool only when every destination has
accepted them. On start the spool is scanned, so nothing received is lost by a crash.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import queue
import shutil
import ssl
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, evt
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from kernelconv.dicom.discovery import discover
from kernelconv.dicom.paths import file_names
from kernelconv.engines import Engine
from kernelconv.kernels import KernelAliases, read_kernel_map
from kernelconv.pacs.config import ListenConfig
from kernelconv.pacs.forward import send_files
from kernelconv.pacs.spool import Spool
from kernelconv.pipeline import convert_series, plan_series, resolve_kernels

log = logging.getLogger("kernelconv.listen")


def emit(event: str, **fields: Any) -> None:
    """One structured (JSON) log line, its time in ISO 8601 local time with the UTC offset;
    callers never pass patient names or IDs."""
    now = datetime.datetime.now().astimezone().isoformat(timespec="milliseconds")
    log.info(json.dumps({"time": now, "event": event, **fields}))


class Listener:
    """The DICOM node. ``engine_factory`` is called once, when the first series needs
    converting; ``domains`` are its kernels, ``owner`` says whose (for messages). It holds its
    spool's lock from construction to the end of :meth:`run_forever` (or :meth:`close`);
    ``retry_failed`` moves the series of SPOOL/failed/ back to be converted again."""

    def __init__(self, cfg: ListenConfig, engine_factory: Callable[[], Engine],
                 domains: tuple[str, ...], owner: str = "the model",
                 retry_failed: bool = False) -> None:
        cfg = cfg.validated()
        kernel_map = read_kernel_map(cfg.kernel_map) if cfg.kernel_map else {}
        self.table = KernelAliases.for_domains(domains, kernel_map)
        # the same resolution, and the same errors, as `convert --to` and `--from`
        self.options = cfg.convert_options(kernel_map)
        resolve_kernels(self.options, self.table, owner)
        self.cfg = replace(cfg, target=self.options.target)
        self.engine_factory = engine_factory
        self.engine: Engine | None = None
        self.spool = Spool(cfg.spool, retry_failed)
        self.queue: queue.Queue[str] = queue.Queue()
        self.stop = threading.Event()
        self.server: Any = None
        self.assoc_counts: dict[int, int] = {}
        self._worker_done = threading.Event()

    # ------------------------------------------------------------------ network side
    def _on_store(self, event: Any) -> int:
        try:
            ds = event.dataset
            series_uid = str(ds.get("SeriesInstanceUID", "")) or "no-series-uid"
            sop_uid = str(ds.SOPInstanceUID)
            data = event.encoded_dataset(include_meta=True)
            self.spool.persist(series_uid, sop_uid, data)
        except Exception as exc:  # noqa: BLE001 - any failure to persist is a failure status
            emit("store-failed", reason=f"{type(exc).__name__}: {exc}")
            return 0xA700  # Out of Resources: nothing acknowledged that is not on disk
        key = id(event.assoc)
        self.assoc_counts[key] = self.assoc_counts.get(key, 0) + 1
        return 0x0000

    def _on_accepted(self, event: Any) -> None:
        emit("association-accepted", calling_ae=event.assoc.requestor.ae_title,
             address=event.assoc.requestor.address)

    def _on_released(self, event: Any) -> None:
        emit("association-ended", calling_ae=event.assoc.requestor.ae_title,
             instances=self.assoc_counts.pop(id(event.assoc), 0))

    def _on_rejected(self, event: Any) -> None:
        emit("association-rejected", calling_ae=event.assoc.requestor.ae_title,
             address=event.assoc.requestor.address)

    def _ssl_context(self) -> ssl.SSLContext | None:
        if not self.cfg.tls_cert:
            return None
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(str(self.cfg.tls_cert), str(self.cfg.tls_key or self.cfg.tls_cert))
        if self.cfg.tls_ca:
            ctx.load_verify_locations(str(self.cfg.tls_ca))
            ctx.verify_mode = ssl.CERT_REQUIRED
        return ctx

    def start(self) -> None:
        ae = AE(ae_title=self.cfg.ae_title)
        for cx in AllStoragePresentationContexts:
            if cx.abstract_syntax is not None:
                ae.add_supported_context(cx.abstract_syntax, ALL_TRANSFER_SYNTAXES)
        ae.add_supported_context(Verification)
        ae.require_called_aet = True
        if self.cfg.allow_ae:
            ae.require_calling_aet = list(self.cfg.allow_ae)
        ae.maximum_associations = self.cfg.max_associations
        handlers: list[Any] = [(evt.EVT_C_STORE, self._on_store), (evt.EVT_ACCEPTED, self._on_accepted),
                    (evt.EVT_RELEASED, self._on_released), (evt.EVT_ABORTED, self._on_released),
                    (evt.EVT_REJECTED, self._on_rejected)]
        self.server = ae.start_server((self.cfg.host, self.cfg.port), block=False,
                                      evt_handlers=handlers, ssl_context=self._ssl_context())
        for name, target in (("kc-monitor", self._monitor), ("kc-worker", self._worker)):
            threading.Thread(target=target, name=name, daemon=True).start()
        self.spool.write_status()
        for key in self.spool.requeued:
            emit("series-requeued", series=key)
        emit("listening", ae_title=self.cfg.ae_title, port=self.cfg.port,
             pending=len(self.spool.last_arrival))

    def shutdown(self) -> None:
        """Stop accepting; the worker finishes its series; pending series stay spooled."""
        emit("shutting-down")
        if self.server is not None:
            self.server.shutdown()
        self.stop.set()

    def run_forever(self) -> None:
        while not self.stop.is_set():
            time.sleep(0.2)
        self._worker_done.wait(timeout=600)
        self.close()
        emit("stopped")

    def close(self) -> None:
        """Release the spool (its lock)."""
        self.spool.close()

    # ------------------------------------------------------------------ work side
    def _monitor(self) -> None:
        while not self.stop.is_set():
            for key in self.spool.stable(self.cfg.stable_seconds):
                self.queue.put(key)
            time.sleep(0.25)

    def _worker(self) -> None:
        self._worker_done.clear()
        while not (self.stop.is_set() and self.queue.empty()):
            try:
                key = self.queue.get(timeout=0.25)
            except queue.Empty:
                continue
            if self.stop.is_set():  # leave it spooled for the next start
                self.spool.finish(key, "pending", "shutdown", [])
                continue
            try:
                self._process(key)
            except Exception as exc:  # noqa: BLE001 - a series must never kill the worker
                files = self.spool.snapshot(key)
                self.spool.finish(key, "failed", f"{type(exc).__name__}: {exc}", files)
                emit("series-failed", series=key, reason=f"{type(exc).__name__}: {exc}")
        self._worker_done.set()

    def _process(self, key: str) -> None:
        start = time.perf_counter()
        files = self.spool.snapshot(key)
        if not files:
            self.spool.finish(key, "delivered", "empty", [])
            return
        work = self.cfg.spool / "work" / key
        inputs = self.cfg.spool / "work" / f"{key}.in"
        try:
            self._convert_and_deliver(key, files, work, inputs, start)
        finally:
            shutil.rmtree(work, ignore_errors=True)
            shutil.rmtree(inputs, ignore_errors=True)

    def _convert_and_deliver(self, key: str, files: list[Path], work: Path, inputs: Path,
                             start: float) -> None:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(inputs, ignore_errors=True)
        # convert exactly this snapshot: instances arriving meanwhile wait for the next round
        inputs.mkdir(parents=True)
        for f in files:
            try:
                os.link(f, inputs / f.name)
            except OSError:
                shutil.copy2(f, inputs / f.name)
        found = discover(inputs, exclude=[])
        if not found.series:
            reason = "; ".join(sorted({s.reason for s in found.skipped})) or "no CT series"
            self._unconvertible(key, files, reason, start)
            return
        series = found.series[0]
        plan = plan_series(series, self.table, self.options)
        if plan.status != "convert":
            self._unconvertible(key, files, plan.reason, start)
            return
        if self.engine is None:
            self.engine = self.engine_factory()
        # written once: straight into --out (merged into the derived series of an earlier
        # round), or into the work folder when it is only forwarded
        root = self.cfg.out if self.cfg.out is not None else work
        result = convert_series(series, plan.source_domain, self.engine, root, self.options)
        # this round's instances (a merged folder also holds earlier rounds')
        outputs = sorted(Path(result.output) / n for n in file_names([s.path for s in
                                                                        series.slices]))
        for dest in self.cfg.forward:
            send_files(outputs, dest, self.cfg.ae_title, self.cfg.retries)
        self.spool.finish(key, "delivered", "", files)
        emit("series-converted", series=key, source_kernel=self.cfg.source or series.kernel,
             target=self.cfg.target, instances=len(outputs),
             seconds=round(time.perf_counter() - start, 2),
             destinations=[d.label for d in self.cfg.forward] + (["out"] if self.cfg.out else []))

    def _unconvertible(self, key: str, files: list[Path], reason: str, start: float) -> None:
        if self.cfg.unconvertible == "forward" and self.cfg.forward:
            for dest in self.cfg.forward:
                send_files(files, dest, self.cfg.ae_title, self.cfg.retries)
            status = "forwarded-original"
        else:
            status = "skipped"
        self.spool.finish(key, status, reason, files)
        emit("series-not-converted", series=key, reason=reason, action=status,
             seconds=round(time.perf_counter() - start, 2))


def configure_logging() -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False

