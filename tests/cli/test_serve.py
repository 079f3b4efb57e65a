"""`tokensmith serve --workers N`: one port, N processes, one first start, metrics added up
over the workers, every worker stopped by the parent on SIGTERM, a dead one replaced."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector

from tests.support.ledger import remember
from tests.support.servers import LiveServer, ServerFailed
from tokensmith.tokens import format as token_format

pytestmark = pytest.mark.slow  # every test here starts `tokensmith serve` itself

MALFORMED = 'tokensmith_authentications_total{method="token",outcome="malformed"}'


def forged_token() -> str:
    """A token whose checksum fails: counted as malformed without the store."""
    good = token_format.generate("tks_")
    return good[:-1] + ("A" if good[-1] != "A" else "B")


def present_forged_tokens(live: LiveServer, count: int) -> None:
    """Each on a new connection, so that the kernel hands them to either worker."""
    for _ in range(count):
        answer = httpx.get(f"{live.base_url}/api/v1/me", headers={"Authorization": f"Bearer {forged_token()}"})
        assert answer.status_code == 401


def scraped(live: LiveServer, metric: str) -> float:
    text = httpx.get(f"{live.base_url}/metrics").text
    found = re.search(rf"^{re.escape(metric)} ([0-9.e+]+)$", text, re.MULTILINE)
    assert found, text[:2000]
    return float(found.group(1))


def worker_pids(metrics_dir: Path) -> set[int]:
    """Every worker that has run, from the files prometheus-client keeps per process."""
    return {int(path.stem.rsplit("_", 1)[1]) for path in metrics_dir.glob("counter_*.db")}


def live_workers(metrics_dir: Path) -> set[int]:
    return {pid for pid in worker_pids(metrics_dir) if is_running(pid)}


def counted_by(metrics_dir: Path, pid: int, tmp_path: Path) -> float:
    """What one worker counted, read from its own file alone."""
    alone = tmp_path / f"alone-{pid}"
    alone.mkdir()
    shutil.copy(metrics_dir / f"counter_{pid}.db", alone)
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(alone))
    return (
        registry.get_sample_value("tokensmith_authentications_total", {"method": "token", "outcome": "malformed"})
        or 0.0
    )


def is_running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def start_workers(tmp_path: Path, name: str) -> tuple[LiveServer, Path]:
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    (metrics_dir / "counter_1.db").write_bytes(os.urandom(256))  # a previous run's, and garbled
    live = LiveServer(
        tmp_path / "var", name=name, args=("--workers", "2"), env={"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
    ).start()
    deadline = time.monotonic() + 20
    while len(worker_pids(metrics_dir)) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    return live, metrics_dir


def test_workers_share_one_port_start_once_and_add_up_their_metrics(tmp_path):
    live, metrics_dir = start_workers(tmp_path, "workers")
    try:
        assert live.admin_password and live.console().count(live.admin_password) == 1  # one first start
        assert "for several workers, use PostgreSQL" in live.console()
        workers = worker_pids(metrics_dir)
        assert len(workers) == 2 and 1 not in workers  # the stale file was cleared at start
        present_forged_tokens(live, 80)
        per_worker = [counted_by(metrics_dir, pid, tmp_path) for pid in workers]
        assert sum(per_worker) == 80 and min(per_worker) > 0, per_worker  # both took their share
        for _ in range(6):  # whichever worker answers the scrape, it reports both
            assert scraped(live, MALFORMED) == 80
            assert scraped(live, "tokensmith_workers") == 2
        parent = live.process.pid
        os.kill(parent, signal.SIGTERM)
        assert live.process.wait(timeout=30) == 0
        assert not any(is_running(pid) for pid in workers)
        assert parent not in workers
    finally:
        live.stop()


def test_a_worker_that_dies_is_replaced_and_what_it_counted_stays(tmp_path):
    live, metrics_dir = start_workers(tmp_path, "replaced")
    try:
        present_forged_tokens(live, 40)
        first = worker_pids(metrics_dir)
        victim = min(live_workers(metrics_dir))
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while len(worker_pids(metrics_dir) - first) < 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(worker_pids(metrics_dir) - first) >= 1, live.console()[-2000:]
        seen = set()
        deadline = time.monotonic() + 30
        while 2 not in seen and time.monotonic() < deadline:  # until the replacement has started
            seen.add(scraped(live, "tokensmith_workers"))
            time.sleep(0.2)
        assert seen <= {1, 2} and 2 in seen, seen  # the dead one no longer counts as live
        present_forged_tokens(live, 10)
        assert not (metrics_dir / f"gauge_livesum_{victim}.db").exists()
        assert scraped(live, MALFORMED) == 50  # its counts stay: the instance's total never drops
    finally:
        live.stop()


@pytest.mark.parametrize("workers", ["0", "65"])
def test_a_number_of_workers_out_of_range_is_refused(tmp_path, workers):
    live = LiveServer(tmp_path / "var", name=f"bad-workers-{workers}", args=("--workers", workers))
    with pytest.raises(ServerFailed):
        live.start(timeout=120)
    assert "--workers" in live.console()


@pytest.mark.parametrize("args", [(), ("--workers", "2")], ids=["one process", "two workers"])
def test_a_request_sent_on_an_idle_connection_as_the_server_stops_is_served(tmp_path, args):
    """What a proxy does with its keep-alive connections: one request, then the connection idles
    in its pool; the instance is told to stop; the proxy sends a POST on that connection. It
    is answered (and the connection closed after it), not dropped: nginx would not repeat it."""
    live = LiveServer(tmp_path / "var", name="draining", args=args).start()
    unknown = remember(token_format.generate("tks_"))
    body = ('{"tokens": ["' + unknown + '"]}').encode()
    try:
        with socket.create_connection(("127.0.0.1", live.port), timeout=10) as connection:
            connection.sendall(f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{live.port}\r\n\r\n".encode())
            first = read_response(connection)
            assert first.startswith(b"HTTP/1.1 200") and b"connection: close" not in first.lower()
            os.kill(live.process.pid, signal.SIGTERM)
            deadline = time.monotonic() + 10
            while not port_refuses(live) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert port_refuses(live)  # it has stopped listening, and is draining
            connection.sendall(
                f"POST /api/v1/tokens/revoke HTTP/1.1\r\nHost: 127.0.0.1:{live.port}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            second = read_response(connection)
        assert second.startswith(b"HTTP/1.1 202") and b"connection: close" in second.lower(), second[:300]
        assert live.process.wait(timeout=30) in (0, -signal.SIGTERM)  # uvicorn exits by the signal it handled
    finally:
        live.stop()


def read_response(connection: socket.socket) -> bytes:
    """One response of a known length (the JSON routes send Content-Length)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = connection.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    length = int(re.search(rb"content-length: (\d+)", head.lower()).group(1))
    while len(rest) < length:
        chunk = connection.recv(65536)
        if not chunk:
            break
        rest += chunk
    return head + b"\r\n\r\n" + rest


def port_refuses(live: LiveServer) -> bool:
    """Whether a new connection is refused: the port is closed while the old ones drain."""
    try:
        socket.create_connection(("127.0.0.1", live.port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False
