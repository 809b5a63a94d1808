"""Sending files by C-STORE, with bounded retries and backoff; C-ECHO."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path

import pydicom
from pynetdicom import AE
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from kernelconv.errors import KernelconvError, UsageError

_DEST = re.compile(r"^([^@]{1,16})@([^:]+):(\d{1,5})$")


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
        for sop, ts in contexts:
            ae.add_requested_context(sop, [ts])
        assoc = ae.associate(dest.host, dest.port, ae_title=dest.ae_title)
        if assoc.is_established:
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
            last = "association not accepted"
        time.sleep(min(backoff * (2 ** attempt), 30.0))
    raise ForwardError(f"forward to {dest.label} failed after {retries} attempt(s): {last}")


def echo(dest: Destination, calling_ae: str = "KERNELCONV", timeout: float = 10.0) -> float:
    """C-ECHO round trip in seconds; ForwardError if the peer does not answer."""
    ae = AE(ae_title=calling_ae)
    ae.add_requested_context(Verification)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout
    start = time.perf_counter()
    assoc = ae.associate(dest.host, dest.port, ae_title=dest.ae_title)
    if not assoc.is_established:
        raise ForwardError(f"{dest.label}: association not accepted")
    try:
        status = assoc.send_c_echo()
    finally:
        assoc.release()
    if not status or int(status.Status) != 0:
        raise ForwardError(f"{dest.label}: C-ECHO failed")
    return time.perf_counter() - start
