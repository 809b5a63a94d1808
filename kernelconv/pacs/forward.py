"""Sending files by C-STORE, with bounded retries and backoff; C-ECHO."""

from __future__ import annotations

import re
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pydicom
from pynetdicom import AE, evt
from pynetdicom.association import Association
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from kernelconv.errors import KernelconvError, UsageError

if TYPE_CHECKING:
    from pynetdicom.events import EventHandlerType

_DEST = re.compile(r"^([^@]{1,16})@([^:]+):(\d{1,5})$")
#: seconds to wait for the TCP connection of an association (pynetdicom waits for the OS)
CONNECT_TIMEOUT = 30.0
#: A-ASSOCIATE-RJ hints for the two reasons a user can fix here (source 1: service user)
_REJECT_HINTS: dict[tuple[object, object], str] = {
    (1, 3): "is our AE title allowed there?", (1, 7): "is the AE title right?"}


class ForwardError(KernelconvError):
    exit_code = 1


@dataclass(frozen=True)
class Destination:
    ae_title: str
    host: str
    port: int

    @property
    def label(self) -> str:
        return f"{self.ae_title}@{self.host}:{self.port}"

    @classmethod
    def parse(cls, text: str) -> Destination:
        m = _DEST.match(text.strip())
        if not m or not 0 < int(m.group(3)) < 65536:
            raise UsageError(f"{text!r}: expected AET@HOST:PORT")
        return cls(m.group(1), m.group(2), int(m.group(3)))


@dataclass
class _Attempt:
    """What happened on the wire during one association request."""

    connected: bool = False
    received: list[str] = field(default_factory=list)  # PDU class names from the peer
    seconds: float = 0.0


def _associate(ae: AE, dest: Destination) -> tuple[Association | None, _Attempt, str]:
    """Request an association; returns it (None if the host name is unknown), what happened
    and, when it was not established, why in words."""
    seen = _Attempt()
    handlers: list[EventHandlerType] = [
        (evt.EVT_CONN_OPEN, lambda event: setattr(seen, "connected", True)),
        (evt.EVT_PDU_RECV, lambda event: seen.received.append(type(event.pdu).__name__))]
    start = time.perf_counter()
    try:
        assoc = ae.associate(dest.host, dest.port, ae_title=dest.ae_title,
                             evt_handlers=handlers)
    except socket.gaierror:
        return None, seen, f"unknown host {dest.host!r}"
    seen.seconds = time.perf_counter() - start
    return assoc, seen, "" if assoc.is_established else _why_not(assoc, seen, dest, ae)


def _why_not(assoc: Association, seen: _Attempt, dest: Destination, ae: AE) -> str:
    """Why an association was not established: no connection, rejected or aborted."""
    if assoc.is_rejected:
        rj = assoc.acceptor.primitive
        if rj is None:
            return "association rejected by the peer"
        kind = {1: "permanent", 2: "transient"}.get(rj.result or 0, f"result {rj.result}")
        why = f"{rj.reason_str[0].lower()}{rj.reason_str[1:]}"
        hint = _REJECT_HINTS.get((rj.result_source, rj.diagnostic))
        return (f"association rejected by the peer ({kind}, {rj.source_str.lower()}): {why}"
                + (f" ({hint})" if hint else ""))
    if not seen.connected:
        return _connect_failure(dest, ae.connection_timeout or CONNECT_TIMEOUT, seen.seconds)
    if assoc.rejected_contexts and not assoc.accepted_contexts:
        return ("association accepted, but none of the proposed presentation contexts "
                "(SOP class and transfer syntax)")
    if "A_ABORT_RQ" in seen.received:
        return "association aborted by the peer"
    return (f"connected, but the peer closed the connection or did not answer the association "
            f"request within {ae.acse_timeout:g} s (not a DICOM port? TLS needed?)")


def _connect_failure(dest: Destination, timeout: float, waited: float) -> str:
    """Why the TCP connection failed; pynetdicom only logs the socket error, so a fast failure
    is looked at with one more plain connection attempt."""
    where = f"{dest.host}:{dest.port}"
    if waited >= timeout - 0.5:
        return f"no answer from {where} within {timeout:g} s (host down, unreachable or filtered)"
    try:
        with socket.create_connection((dest.host, dest.port), timeout=timeout):
            return f"the connection to {where} failed (it succeeded on a second try)"
    except ConnectionRefusedError:
        return f"connection refused: nothing is listening on {where}"
    except socket.gaierror:
        return f"unknown host {dest.host!r}"
    except TimeoutError:
        return f"no answer from {where} within {timeout:g} s (host down, unreachable or filtered)"
    except OSError as exc:
        return f"cannot connect to {where}: {exc.strerror or exc}"


def send_files(files: list[Path], dest: Destination, calling_ae: str, retries: int = 5,
               backoff: float = 1.0) -> None:
    """C-STORE every file to ``dest``; the whole set is retried up to ``retries`` times."""
    if not files:
        return
    headers = [pydicom.dcmread(f, stop_before_pixels=True) for f in files]
    contexts = sorted({(str(h.SOPClassUID), str(h.file_meta.TransferSyntaxUID))
                       for h in headers})
    last = ""
    for attempt in range(retries):
        ae = AE(ae_title=calling_ae)
        ae.connection_timeout = CONNECT_TIMEOUT
        for sop, ts in contexts:
            ae.add_requested_context(sop, [ts])
        assoc, _, why = _associate(ae, dest)
        if assoc is not None and assoc.is_established:
            try:
                failed = 0
                for f in files:
                    status = assoc.send_c_store(f)
                    if not status or int(status.Status) not in (0x0000, 0xB000, 0xB007,
                                                                 0xB006):
                        failed += 1
                if failed == 0:
                    return
                last = f"{failed} of {len(files)} instance(s) refused"
            finally:
                assoc.release()
        else:
            last = why
        time.sleep(min(backoff * (2 ** attempt), 30.0))
    raise ForwardError(f"forward to {dest.label} failed after {retries} attempt(s): {last}")


def echo(dest: Destination, calling_ae: str = "KERNELCONV", timeout: float = 10.0) -> float:
    """C-ECHO round trip in seconds; ForwardError saying why if the peer does not answer:
    no connection (refused, unknown host, no answer), association rejected (with the peer's
    reason) or aborted."""
    ae = AE(ae_title=calling_ae)
    ae.add_requested_context(Verification)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout
    ae.connection_timeout = timeout
    start = time.perf_counter()
    assoc, _, why = _associate(ae, dest)
    if assoc is None or not assoc.is_established:
        raise ForwardError(f"{dest.label}: {why}")
    try:
        status = assoc.send_c_echo()
    finally:
        assoc.release()
    if not status or int(status.Status) != 0:
        raise ForwardError(f"{dest.label}: C-ECHO failed")
    return time.perf_counter() - start
