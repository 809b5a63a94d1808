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

from kernelconv.fileio import PART_SUFFIX

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

    def events(self, name: str) -> list[dict]:
        """The listener's JSON log records of one event (a half-written last line is skipped)."""
        found = []
        for line in Path(self.log.name).read_text().splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if record.get("event") == name:
                found.append(record)
        return found

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
    """The finished derived files: a ``.part`` sibling is a file still being written (the
    listener writes atomically), so a poll that lands mid-write must not read it."""
    return [pydicom.dcmread(p) for p in sorted(out.rglob("*"))
            if p.is_file() and not p.name.endswith(PART_SUFFIX)]


def test_storescu_series_uncompressed_and_compressed_are_converted(
        tmp_path: Path, listener_factory, capsys) -> None:
    lst = listener_factory("--out", str(tmp_path / "out"))
    plain = make_series(dicom_file("693_UNCR.dcm"), tmp_path / "a", 3, seed=1)
    jpeg = make_series(dicom_file("bad_sequence.dcm"), tmp_path / "b", 2, seed=2)
    assert send(lst.port, plain) == 0
    assert send(lst.port, jpeg, "SENDER", "-xs") == 0  # propose the file's JPEG syntax
    # the event is logged after the series left the spool and its status was written
    assert wait_for(lambda: len(lst.events("series-converted")) == 2)
    assert len(derived(tmp_path / "out")) == 5
    for ds in derived(tmp_path / "out"):
        assert ds.ConvolutionKernel == "B30f" and ds.ImageType[0] == "DERIVED"
    status = json.loads((tmp_path / "spool" / "status.json").read_text())
    assert status["counts"] == {"delivered": 2}
    from helpers import run_cli

    code, out, _ = run_cli(["status", "--spool", tmp_path / "spool"], capsys)
    assert code == 0 and "delivered 2" in out
    assert not list((tmp_path / "spool" / "incoming").iterdir())  # left the spool


def test_from_reaches_the_derivation_and_late_instances_merge(tmp_path: Path,
                                                            listener_factory) -> None:
    # the header says B50f; the listener runs with --from B70f (see Listener): the derived
    # headers must say what was really done, as `convert --from` does
    files = make_series(dicom_file("693_UNCR.dcm"), tmp_path / "a", 3, kernel="B50f", seed=4)
    lst = listener_factory("--out", str(tmp_path / "out"))
    assert send(lst.port, files[:2]) == 0
    assert wait_for(lambda: len(lst.events("series-converted")) == 1)
    assert send(lst.port, files[2:]) == 0  # a late instance: a second round, same series
    assert wait_for(lambda: len(lst.events("series-converted")) == 2)
    out = derived(tmp_path / "out")
    assert len(out) == 3 and len({ds.SeriesInstanceUID for ds in out}) == 1
    for ds in out:
        assert "conversion B70f -> B30f" in ds.DerivationDescription
    assert lst.events("series-converted")[0]["source_kernel"] == "B70f"
    # written once, straight into --out: nothing left in the spool's work folder
    assert not list((tmp_path / "spool" / "work").rglob("*.dcm")) \
        if (tmp_path / "spool" / "work").exists() else True


def test_forward_to_storescp_and_echo(tmp_path: Path, listener_factory, capsys) -> None:
    dest_port = free_port()
    (tmp_path / "pacs").mkdir()
    pacs = subprocess.Popen([dcmtk("storescp"), "-aet", "PACS", "-od", str(tmp_path / "pacs"),
                             str(dest_port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        lst = listener_factory("--forward", f"PACS@{HOST}:{dest_port}",
                               "--unconvertible", "forward")
        from helpers import run_cli

        code, out, _ = run_cli(["echo", f"KERNELCONV@{HOST}:{lst.port}"], capsys)
        assert code == 0 and "success" in out
        assert send(lst.port, sorted(ct5n_dir().iterdir())) == 0
        # logged once every C-STORE was answered, so storescp has written every file
        assert wait_for(lambda: len(lst.events("series-converted")) == 1)
        assert len(list((tmp_path / "pacs").iterdir())) == 5
        kernels = {pydicom.dcmread(p).ConvolutionKernel for p in (tmp_path / "pacs").iterdir()}
        assert kernels == {"B30f"}
        # the MR series cannot be converted: forwarded unchanged by policy
        assert send(lst.port, [dicom_file("MR_small.dcm")]) == 0
        assert wait_for(lambda: len(lst.events("series-not-converted")) == 1)
        assert lst.events("series-not-converted")[0]["action"] == "forwarded-original"
        assert len(list((tmp_path / "pacs").iterdir())) == 6
        log = Path(lst.log.name).read_text()
        assert "Peter" not in log and "98890234" not in log  # no patient name or ID
    finally:
        pacs.terminate()
        pacs.wait(timeout=30)


def test_calling_ae_not_allowed_is_rejected(tmp_path: Path, listener_factory) -> None:
    lst = listener_factory("--out", str(tmp_path / "out"), "--allow-ae", "PACS,CT1")
    files = sorted(ct5n_dir().iterdir())
    assert send(lst.port, files, "INTRUDER") != 0
    wrong_called = subprocess.run([dcmtk("storescu"), "-aec", "NOTKC", "-aet", "CT1", HOST,
                                   str(lst.port), str(files[0])], capture_output=True,
                                  timeout=60)
    assert wrong_called.returncode != 0
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


class Orthanc:
    """A real Orthanc PACS on loopback, with kernelconv declared as a modality."""

    def __init__(self, tmp: Path, listener_port: int) -> None:
        exe = "/usr/sbin/Orthanc" if Path("/usr/sbin/Orthanc").exists() else \
            require_tool("Orthanc")
        self.dicom_port, self.http_port = free_port(), free_port()
        folder = tmp / "orthanc"
        folder.mkdir()
        config = {
            "Name": "kernelconv-test", "DicomAet": "ORTHANC", "DicomPort": self.dicom_port,
            "HttpPort": self.http_port, "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False, "StorageDirectory": str(folder / "db"),
            "IndexDirectory": str(folder / "db"), "StableAge": 1,
            "DicomModalities": {"kernelconv": ["KERNELCONV", HOST, listener_port]},
        }
        (folder / "config.json").write_text(json.dumps(config))
        self.log = open(folder / "orthanc.log", "w")  # noqa: SIM115
        self.proc = subprocess.Popen([exe, str(folder / "config.json")], stdout=self.log,
                                     stderr=subprocess.STDOUT)
        assert wait_for(self._up, 30), (folder / "orthanc.log").read_text()[-2000:]

    def _up(self) -> bool:
        try:
            self.get("/system")
            return True
        except OSError:
            return False

    def request(self, method: str, path: str, body: bytes | None = None) -> object:
        import urllib.request

        req = urllib.request.Request(f"http://{HOST}:{self.http_port}{path}", data=body,
                                     method=method)
        with urllib.request.urlopen(req, timeout=60) as resp:
            return json.loads(resp.read() or b"null")

    def get(self, path: str) -> object:
        return self.request("GET", path)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def test_orthanc_as_destination_and_as_sender(tmp_path: Path, listener_factory) -> None:
    port = free_port()
    orthanc = Orthanc(tmp_path, port)
    try:
        lst = listener_factory("--forward", f"ORTHANC@{HOST}:{orthanc.dicom_port}",
                         "--out", str(tmp_path / "out"), "--stable-seconds", "3", port=port)
        # Orthanc as the sender: upload a plain and a JPEG Lossless series by REST, then push
        # them to kernelconv (Orthanc may split this over associations and transfer syntaxes)
        plain = make_series(dicom_file("693_UNCR.dcm"), tmp_path / "a", 3, seed=5)
        jpeg = make_series(dicom_file("bad_sequence.dcm"), tmp_path / "b", 2, seed=6)
        for f in plain + jpeg:
            orthanc.request("POST", "/instances", f.read_bytes())
        sources = orthanc.get("/series")
        assert isinstance(sources, list) and len(sources) == 2
        body = json.dumps({"Resources": sources, "Synchronous": True}).encode()
        orthanc.request("POST", "/modalities/kernelconv/store", body)
        # ... and as the destination: the converted series come back
        def converted() -> list[dict]:
            found = []
            for sid in orthanc.get("/series"):  # type: ignore[union-attr]
                info = orthanc.get(f"/series/{sid}")
                first = info["Instances"][0]  # type: ignore[index]
                tags = orthanc.get(f"/instances/{first}/simplified-tags")
                if tags.get("ConvolutionKernel") == "B30f":  # type: ignore[union-attr]
                    found.append(info)  # type: ignore[arg-type]
            return found

        assert wait_for(lambda: sorted(len(s["Instances"]) for s in converted()) == [2, 3], 90)
        # the copy into --out follows the forward; the event is logged after both
        assert wait_for(lambda: len(lst.events("series-converted")) == 2)
        assert len(derived(tmp_path / "out")) == 5
    finally:
        orthanc.stop()


def test_tls_listener_accepts_tls_and_refuses_plain(tmp_path: Path, listener_factory) -> None:
    import ssl

    from pynetdicom import AE
    from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

    openssl = require_tool("openssl")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    lst = listener_factory("--out", str(tmp_path / "out"), "--tls-cert", str(cert),
                           "--tls-key", str(key))
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(cert))
    ctx.check_hostname = False
    ae = AE(ae_title="TLSCLIENT")
    ae.add_requested_context(Verification)
    assoc = ae.associate(HOST, lst.port, ae_title="KERNELCONV", tls_args=(ctx, None))
    assert assoc.is_established
    status = assoc.send_c_echo()
    assoc.release()
    assert int(status.Status) == 0
    plain = subprocess.run([dcmtk("echoscu"), "-aec", "KERNELCONV", HOST, str(lst.port)],
                           capture_output=True, timeout=60)
    assert plain.returncode != 0


def test_sender_killed_mid_series_then_resending(tmp_path: Path, listener_factory) -> None:
    from pynetdicom import AE

    config = tmp_path / "listen.json"
    config.write_text(json.dumps({"out": str(tmp_path / "out"), "allow_ae": ["CT1"]}))
    lst = listener_factory("--config", str(config))
    files = make_series(dicom_file("693_UNCR.dcm"), tmp_path / "a", 4, seed=9)
    ae = AE(ae_title="CT1")
    ae.add_requested_context(pydicom.dcmread(files[0]).SOPClassUID,
                             pydicom.uid.ExplicitVRLittleEndian)
    assoc = ae.associate(HOST, lst.port, ae_title="KERNELCONV")
    assert assoc.is_established
    for f in files[:2]:
        assert int(assoc.send_c_store(f).Status) == 0
    assoc.abort()  # the sender dies mid-series
    assert wait_for(lambda: len(derived(tmp_path / "out")) == 2)  # what arrived is converted
    assert send(lst.port, files, "CT1") == 0  # the sender retries the whole series
    assert wait_for(lambda: len(derived(tmp_path / "out")) == 4)
    time.sleep(2)
    assert len(derived(tmp_path / "out")) == 4  # exactly once: same derived UIDs and files
    assert len({ds.SeriesInstanceUID for ds in derived(tmp_path / "out")}) == 1
