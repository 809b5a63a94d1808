"""The listener's spool: one listener per spool (a lock), retrying failed series, log times."""

from __future__ import annotations

import datetime
import json
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import dicom_file, make_series, output_series_dirs, read_all, run_cli

from kernelconv.errors import OutputError
from kernelconv.pacs.spool import LOCK_NAME, Spool, lock_spool


def test_a_second_spool_on_the_same_folder_is_refused(tmp_path: Path) -> None:
    first = Spool(tmp_path / "spool")
    with pytest.raises(OutputError) as exc:
        Spool(tmp_path / "spool")
    message = str(exc.value)
    assert "another kernelconv listen" in message and f"(pid {os.getpid()})" in message
    assert str(tmp_path / "spool") in message and "\n" not in message
    first.close()
    Spool(tmp_path / "spool").close()  # released: the next one opens


def test_a_lock_left_by_a_killed_listener_is_stale(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    code = ("import sys, time; from pathlib import Path; "
            "from kernelconv.pacs.spool import lock_spool; "
            f"lock_spool(Path({str(spool)!r})); print('locked', flush=True); time.sleep(60)")
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with pytest.raises(OutputError, match=f"pid {holder.pid}"):
            lock_spool(spool)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    assert (spool / LOCK_NAME).read_text().strip() == str(holder.pid)  # left behind
    fd = lock_spool(spool)  # taken over
    try:
        assert (spool / LOCK_NAME).read_text().strip() == str(os.getpid())
    finally:
        os.close(fd)


def test_listen_on_a_locked_spool_is_one_line_exit_5(tmp_path: Path, capsys) -> None:
    fd = lock_spool(tmp_path / "spool")
    try:
        code, _, err = run_cli(["listen", "--to", "B30f", "--method", "filter", "--out-dir",
                                tmp_path / "out", "--spool", tmp_path / "spool", "--port",
                                "1"], capsys)
    finally:
        os.close(fd)
    assert code == 5
    assert err.strip() == (f"kernelconv: error: --spool {tmp_path / 'spool'}: another "
                           f"kernelconv listen (pid {os.getpid()}) is using this spool; stop "
                           "it or give another --spool")


def _failed_series(spool: Path, src: Path) -> str:
    """A series as the listener leaves it after giving up: SPOOL/failed/<key>/ + reason."""
    files = make_series(dicom_file("693_UNCR.dcm"), src, 3)
    import pydicom

    key = str(pydicom.dcmread(files[0]).SeriesInstanceUID)
    folder = spool / "failed" / key
    folder.mkdir(parents=True)
    for f in files:
        ds = pydicom.dcmread(f)
        (folder / f"{ds.SOPInstanceUID}.dcm").write_bytes(f.read_bytes())
    (folder / "reason.json").write_text(json.dumps({"reason": "ForwardError: down"}))
    return key


def test_retry_failed_requeues_and_converts_the_series(tmp_path: Path) -> None:
    from kernelconv.engines.select import EngineSpec, select_engine
    from kernelconv.pacs.config import ListenConfig
    from kernelconv.pacs.server import Listener

    spool = tmp_path / "spool"
    key = _failed_series(spool, tmp_path / "src")
    cfg = ListenConfig(target="B30f", spool=spool, out=tmp_path / "out", method="filter",
                       source="B70f")
    selected = select_engine(EngineSpec(method="filter"))
    plain = Listener(cfg, selected.factory, selected.domains, selected.owner)
    assert plain.spool.requeued == [] and not plain.spool.last_arrival  # not without asking
    plain.close()
    listener = Listener(cfg, selected.factory, selected.domains, selected.owner,
                        retry_failed=True)
    try:
        assert listener.spool.requeued == [key]
        assert not (spool / "failed" / key).exists()
        assert listener.spool.records[key].status == "pending"
        assert len(listener.spool.snapshot(key)) == 3
        listener._process(key)  # what the worker does with a stable series
    finally:
        listener.close()
    written = read_all(output_series_dirs(tmp_path / "out")[0])
    assert len(written) == 3 and {ds.ConvolutionKernel for ds in written} == {"B30f"}
    assert not (spool / "incoming" / key).exists()  # delivered: it left the spool
    status = json.loads((spool / "status.json").read_text())
    assert status["counts"] == {"delivered": 1}


def test_requeue_keeps_an_instance_received_again(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    (spool.failed / "s1").mkdir()
    (spool.failed / "s1" / "a.dcm").write_bytes(b"old")
    (spool.failed / "s1" / "b.dcm").write_bytes(b"old")
    (spool.failed / "s1" / "reason.json").write_text("{}")
    (spool.incoming / "s1").mkdir()
    (spool.incoming / "s1" / "a.dcm").write_bytes(b"new")
    assert spool.requeue_failed() == ["s1"]
    assert (spool.incoming / "s1" / "a.dcm").read_bytes() == b"new"
    assert (spool.incoming / "s1" / "b.dcm").read_bytes() == b"old"
    assert list(spool.failed.iterdir()) == []
    spool.close()


def test_status_says_how_to_retry_failed_series(tmp_path: Path, capsys) -> None:
    spool = Spool(tmp_path / "spool")
    (spool.failed / "s1").mkdir()
    spool.write_status()
    spool.close()
    code, out, _ = run_cli(["status", "--spool", tmp_path / "spool"], capsys)
    assert code == 0
    assert "1 series in" in out and "--retry-failed" in out


def test_log_times_are_iso_local_time(caplog: pytest.LogCaptureFixture) -> None:
    from kernelconv.pacs.server import emit, log

    log.propagate = True
    try:
        with caplog.at_level(logging.INFO, logger=log.name):
            emit("listening", port=1)
    finally:
        log.propagate = False
    record = json.loads(caplog.records[-1].getMessage())
    when = datetime.datetime.fromisoformat(record["time"])
    assert when.tzinfo is not None  # local time with its UTC offset
    assert abs((datetime.datetime.now().astimezone() - when).total_seconds()) < 60
