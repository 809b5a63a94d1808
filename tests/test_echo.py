"""kernelconv echo and forwarding say why an association failed: no connection, rejected by
the peer (with its reason) or aborted. Everything on loopback, against pynetdicom SCPs and raw
sockets started by the tests."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest
from helpers import dicom_file, run_cli
from pynetdicom import AE
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from kernelconv.pacs.forward import Destination, ForwardError, echo, send_files

HOST = "127.0.0.1"
#: an A-ABORT PDU: type 0x07, reserved, length 4, reserved x2, source 0 (service user), reason 0
A_ABORT = bytes([0x07, 0, 0, 0, 0, 4, 0, 0, 0, 0])


@pytest.fixture()
def echo_scp() -> Iterator[int]:
    """A Verification SCP with the AE title ECHOSCP that rejects other called AE titles."""
    ae = AE(ae_title="ECHOSCP")
    ae.add_supported_context(Verification)
    ae.require_called_aet = True
    server = ae.start_server((HOST, 0), block=False)
    assert server is not None  # block=False returns the running server
    yield int(server.server_address[1])
    server.shutdown()


@pytest.fixture()
def closed_port() -> Iterator[int]:
    """A port that nothing listens on (bound, so nobody else takes it meanwhile)."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        yield int(s.getsockname()[1])


def raw_peer(reply: bytes | None) -> tuple[int, socket.socket]:
    """A TCP server that reads the association request and sends ``reply`` (or nothing)."""
    server = socket.create_server((HOST, 0))

    def serve() -> None:
        try:
            conn, _ = server.accept()
        except OSError:
            return
        with conn:
            conn.recv(65536)
            if reply is not None:
                conn.sendall(reply)
            conn.recv(65536)  # hold the connection until the requestor gives up

    threading.Thread(target=serve, daemon=True).start()
    return int(server.getsockname()[1]), server


def test_echo_with_the_right_called_ae_title_succeeds(echo_scp: int, capsys) -> None:
    code, out, err = run_cli(["echo", f"ECHOSCP@{HOST}:{echo_scp}"], capsys)
    assert code == 0, err
    assert f"C-ECHO ECHOSCP@{HOST}:{echo_scp}: success" in out


def test_echo_with_a_wrong_called_ae_title_names_the_rejection_and_its_reason(
        echo_scp: int, capsys) -> None:
    code, out, err = run_cli(["echo", f"WRONG@{HOST}:{echo_scp}"], capsys)
    assert code == 1
    assert err.strip() == (
        f"kernelconv: error: WRONG@{HOST}:{echo_scp}: association rejected by the peer "
        "(permanent, service user): called AE title not recognised (is the AE title right?)")


def test_echo_to_a_closed_port_says_nothing_is_listening(closed_port: int, capsys) -> None:
    code, out, err = run_cli(["echo", f"ECHOSCP@{HOST}:{closed_port}"], capsys)
    assert code == 1
    assert err.strip() == (f"kernelconv: error: ECHOSCP@{HOST}:{closed_port}: connection "
                           f"refused: nothing is listening on {HOST}:{closed_port}")


def test_echo_to_an_unknown_host_names_the_host(capsys) -> None:
    code, out, err = run_cli(["echo", "PACS@no-such-host.invalid:104"], capsys)
    assert code == 1
    assert err.strip() == ("kernelconv: error: PACS@no-such-host.invalid:104: unknown host "
                           "'no-such-host.invalid'")


def test_echo_to_a_malformed_destination_is_a_usage_error(capsys) -> None:
    code, out, err = run_cli(["echo", f"{HOST}:104"], capsys)
    assert code == 2
    assert err.strip() == f"kernelconv: error: '{HOST}:104': expected AET@HOST:PORT"


def test_echo_to_a_peer_that_aborts_says_aborted() -> None:
    port, server = raw_peer(A_ABORT)
    with server, pytest.raises(ForwardError) as info:
        echo(Destination("PACS", HOST, port), timeout=5)
    assert str(info.value) == f"PACS@{HOST}:{port}: association aborted by the peer"


def test_echo_to_a_silent_peer_says_it_did_not_answer_in_time() -> None:
    port, server = raw_peer(None)
    with server, pytest.raises(ForwardError) as info:
        echo(Destination("PACS", HOST, port), timeout=1)
    assert str(info.value) == (
        f"PACS@{HOST}:{port}: connected, but the peer closed the connection or did not answer "
        "the association request within 1 s (not a DICOM port? TLS needed?)")


def test_forward_retry_message_names_the_rejection(echo_scp: int) -> None:
    with pytest.raises(ForwardError) as info:
        send_files([dicom_file("CT_small.dcm")], Destination("WRONG", HOST, echo_scp),
                   "KERNELCONV", retries=2, backoff=0.0)
    assert str(info.value) == (
        f"forward to WRONG@{HOST}:{echo_scp} failed after 2 attempt(s): association rejected "
        "by the peer (permanent, service user): called AE title not recognised "
        "(is the AE title right?)")


def test_forward_retry_message_says_connection_refused(closed_port: int) -> None:
    with pytest.raises(ForwardError) as info:
        send_files([dicom_file("CT_small.dcm")], Destination("PACS", HOST, closed_port),
                   "KERNELCONV", retries=1, backoff=0.0)
    assert str(info.value) == (
        f"forward to PACS@{HOST}:{closed_port} failed after 1 attempt(s): connection refused: "
        f"nothing is listening on {HOST}:{closed_port}")


def test_forward_to_a_peer_without_the_sop_class_says_no_presentation_context(
        echo_scp: int) -> None:
    with pytest.raises(ForwardError) as info:
        send_files([dicom_file("CT_small.dcm")], Destination("ECHOSCP", HOST, echo_scp),
                   "KERNELCONV", retries=1, backoff=0.0)
    assert str(info.value) == (
        f"forward to ECHOSCP@{HOST}:{echo_scp} failed after 1 attempt(s): association "
        "accepted, but none of the proposed presentation contexts (SOP class and transfer "
        "syntax)")
