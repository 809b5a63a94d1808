"""kernelconv listen with real DICOM peers (dcmtk's storescu and storescp) on loopback."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from helpers import ct5n_dir, dicom_file, make_series, require_tool

pytestmark = [pytest.mark.tools, pytest.mark.slow]
HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def dcmtk(name: str) -> str:
    """dcmtk's tool, not pynetdicom's app of the same name that may shadow it on PATH."""
    path = Path("/usr/bin") / name
    return str(path) if path.exists() else require_tool(name)


class Listener:
    def __init__(self, tmp: Path, *extra: str, port: int | None = None) -> None:
        self.port = port or free_port()
        self.tmp = tmp
        self.args = [sys.executable, "-m", "kernelconv", "listen", "--to", "B30f", "--method",
                     "filter", "--from", "B70f", "--host", HOST, "--port", str(self.port),
                     "--spool", str(tmp / "spool"), "--stable-seconds", "1.5", *extra]
        self.log = open(tmp / f"listener-{time.time_ns()}.log", "w")  # noqa: SIM115
        self.proc = subprocess.Popen(self.args, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 30
        while time.time() < deadline:
            with socket.socket() as s:
                s.settimeout(1.0)
                if s.connect_ex((HOST, self.port)) == 0:  # the SCP is listening
                    return
            if self.proc.poll() is not None:
                break
            time.sleep(0.3)
        raise AssertionError(f"listener did not start: {Path(self.log.name).read_text()}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()


@pytest.fixture()
def listener_factory(tmp_path: Path) -> Iterator[object]:
    started: list[Listener] = []

    def start(*extra: str, port: int | None = None) -> Listener:
        lst = Listener(tmp_path, *extra, port=port)
        started.append(lst)
        return lst

    yield start
    for lst in started:
        lst.stop()


def send(port: int, files: list[Path], calling: str = "SENDER", *opts: str) -> int:
    return subprocess.run([dcmtk("storescu"), "-aec", "KERNELCONV", "-aet", calling, *opts,
                           HOST, str(port), *map(str, files)], capture_output=True,
                          timeout=120).returncode


def wait_for(predicate, seconds: float = 60.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.time() + seconds
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.3)
    return False


def derived(out: Path) -> list[pydicom.Dataset]:
    return [pydicom.dcmread(p) for p in sorted(out.rglob("*")) if p.is_file()]


def test_storescu_series_uncompressed_and_compressed_are_converted(
        tmp_path: Path, listener_factory) -> None:
    lst = listener_factory("--out", str(tmp_path / "out"))
    plain = make_series(dicom_file("693_UNCR.dcm"), tmp_path / "a", 3, seed=1)
    jpeg = make_series(dicom_file("bad_sequence.dcm"), tmp_path / "b", 2, seed=2)
    assert send(lst.port, plain) == 0
    assert send(lst.port, jpeg, "SENDER", "-xs") == 0  # propose the file's JPEG syntax
    assert wait_for(lambda: len(derived(tmp_path / "out")) == 5)
    for ds in derived(tmp_path / "out"):
        assert ds.ConvolutionKernel == "B30f" and ds.ImageType[0] == "DERIVED"
    status = json.loads((tmp_path / "spool" / "status.json").read_text())
    assert status["counts"] == {"delivered": 2}
    assert not list((tmp_path / "spool" / "incoming").iterdir())  # left the spool


def test_forward_to_storescp_and_echo(tmp_path: Path, listener_factory, capsys) -> None:
    dest_port = free_port()
    (tmp_path / "pacs").mkdir()
    pacs = subprocess.Popen([dcmtk("storescp"), "-aet", "PACS", "-od", str(tmp_path / "pacs"),
                             str(dest_port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        lst = listener_factory("--forward", f"PACS@{HOST}:{dest_port}")
        from helpers import run_cli

        code, out, _ = run_cli(["echo", f"KERNELCONV@{HOST}:{lst.port}"], capsys)
        assert code == 0 and "success" in out
        assert send(lst.port, sorted(ct5n_dir().iterdir())) == 0
        assert wait_for(lambda: len(list((tmp_path / "pacs").iterdir())) == 5)
        kernels = {pydicom.dcmread(p).ConvolutionKernel for p in (tmp_path / "pacs").iterdir()}
        assert kernels == {"B30f"}
    finally:
        pacs.terminate()
        pacs.wait(timeout=30)


def test_calling_ae_not_allowed_is_rejected(tmp_path: Path, listener_factory) -> None:
    lst = listener_factory("--out", str(tmp_path / "out"), "--allow-ae", "PACS,CT1")
    files = sorted(ct5n_dir().iterdir())
    assert send(lst.port, files, "INTRUDER") != 0
    assert send(lst.port, files, "CT1") == 0
    assert wait_for(lambda: len(derived(tmp_path / "out")) == 5)


def test_four_senders_at_once(tmp_path: Path, listener_factory) -> None:
    lst = listener_factory("--out", str(tmp_path / "out"))
    series = [make_series(dicom_file("CT_small.dcm"), tmp_path / f"s{i}", 3, seed=10 + i)
              for i in range(4)]
    procs = [subprocess.Popen([dcmtk("storescu"), "-aec", "KERNELCONV", HOST, str(lst.port),
                               *map(str, files)]) for files in series]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0, 0]
    assert wait_for(lambda: len(derived(tmp_path / "out")) == 12)
    assert len({ds.SeriesInstanceUID for ds in derived(tmp_path / "out")}) == 4


def test_sigkill_mid_series_then_restart_delivers_everything_once(
        tmp_path: Path, listener_factory) -> None:
    files = make_series(dicom_file("693_UNCR.dcm"), tmp_path / "a", 4, seed=3)
    lst = listener_factory("--out", str(tmp_path / "out"), "--stable-seconds", "30")
    assert send(lst.port, files[:2]) == 0
    lst.stop(signal.SIGKILL)  # killed before the series was stable
    assert not list((tmp_path / "out").rglob("*")) if (tmp_path / "out").exists() else True
    lst2 = listener_factory("--out", str(tmp_path / "out"), port=lst.port)
    assert send(lst2.port, files[2:]) == 0
    assert wait_for(lambda: len(derived(tmp_path / "out")) == 4)
    uids = [ds.SourceImageSequence[0].ReferencedSOPInstanceUID
            for ds in derived(tmp_path / "out")]
    assert sorted(uids) == sorted(pydicom.dcmread(f).SOPInstanceUID for f in files)


def test_failure_to_persist_is_a_failure_status(tmp_path: Path, listener_factory) -> None:
    lst = listener_factory("--out", str(tmp_path / "out"))
    files = sorted(ct5n_dir().iterdir())
    uid = pydicom.dcmread(files[0], stop_before_pixels=True).SeriesInstanceUID
    (tmp_path / "spool" / "incoming" / uid).write_text("in the way")
    assert send(lst.port, files) != 0  # storescu reports the failed C-STOREs
    time.sleep(3)
    assert not (tmp_path / "out").exists() or not derived(tmp_path / "out")


def test_sigterm_is_a_graceful_stop(tmp_path: Path, listener_factory) -> None:
    lst = listener_factory("--out", str(tmp_path / "out"), "--stable-seconds", "30")
    assert send(lst.port, sorted(ct5n_dir().iterdir())) == 0
    lst.stop(signal.SIGTERM)
    assert lst.proc.returncode == 0
    # not yet stable: still spooled for the next start
    assert len(list((tmp_path / "spool" / "incoming").rglob("*.dcm"))) == 5
    assert os.path.exists(tmp_path / "spool" / "status.json")
