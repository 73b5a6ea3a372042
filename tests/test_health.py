"""Health probes against real local servers: answering, failing, refusing, and hung."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from test_demo_agent import REPO, DemoAgent, free_port

from fleetctl.probes.health import HealthResult, probe, probe_many, wait_healthy


class _StatusHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        code = int(self.path.strip("/") or 200)  # GET /503 answers 503
        self.send_response(code)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    request_queue_size = 128  # the default 5 drops SYNs under a burst of concurrent probes


@pytest.fixture
def server() -> Iterator[str]:
    """A real HTTP server on a free port; `{base}/503` answers 503."""
    srv = _Server(("127.0.0.1", 0), _StatusHandler)
    t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}"
    finally:
        srv.shutdown()
        srv.server_close()


@pytest.fixture
def hung() -> Iterator[Callable[[], str]]:
    """URLs of listeners that never accept: the kernel completes the handshake from the backlog
    and nothing ever answers, exactly what a SIGSTOPped agent looks like from outside."""
    socks: list[socket.socket] = []

    def make() -> str:
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen(64)
        socks.append(s)
        return f"http://127.0.0.1:{s.getsockname()[1]}/health"

    yield make
    for s in socks:
        s.close()


@pytest.fixture
def agents(tmp_path: Path) -> Iterator[Callable[..., DemoAgent]]:
    made: list[DemoAgent] = []

    def make(**kw: Any) -> DemoAgent:
        a = DemoAgent(tmp_path / f"agent{len(made)}", **kw)
        made.append(a)
        return a

    yield make
    for a in made:
        a.kill()  # SIGCONT first, so a stopped agent dies too


def test_ok(server: str) -> None:
    r = probe(f"{server}/200", timeout=2)
    assert r.ok and r.status == 200 and r.error is None
    assert r.latency_ms is not None and 0 < r.latency_ms < 2000


def test_wrong_status(server: str) -> None:
    r = probe(f"{server}/503", timeout=2)
    assert (r.ok, r.status, r.error) == (False, 503, "HTTP 503")
    assert r.latency_ms is not None
    assert probe(f"{server}/503", timeout=2, expected_status=503).ok


def test_redirect_is_not_followed(server: str) -> None:
    r = probe(f"{server}/302", timeout=2)
    assert (r.ok, r.status, r.error) == (False, 302, "HTTP 302")


def test_connection_refused() -> None:
    t0 = time.monotonic()
    r = probe(f"http://127.0.0.1:{free_port()}/health", timeout=2)
    assert r == HealthResult(False, None, None, "connection refused")
    assert time.monotonic() - t0 < 1


def test_invalid_url() -> None:
    r = probe("127.0.0.1:8080/health", timeout=1)
    assert not r.ok and r.error is not None and r.error.startswith("invalid URL")


def test_sigstopped_agent_is_a_timeout(agents: Callable[..., DemoAgent]) -> None:
    a = agents().start().wait_ready()
    assert a.proc is not None
    a.proc.send_signal(signal.SIGSTOP)
    t0 = time.monotonic()
    r = probe(a.url("/health"), timeout=0.5)
    elapsed = time.monotonic() - t0
    assert r == HealthResult(False, None, None, "timeout after 0.5s")
    assert 0.4 < elapsed < 1.5


def test_probe_many_is_concurrent(server: str, hung: Callable[[], str]) -> None:
    timeout = 1.0
    refused = f"http://127.0.0.1:{free_port()}/"
    targets = [(f"ok{i}", f"{server}/200", timeout, 200) for i in range(13)]
    targets += [(f"hung{i}", hung(), timeout, 200) for i in range(5)]
    targets += [("503", f"{server}/503", timeout, 200), ("refused", refused, timeout, 200)]
    t0 = time.monotonic()
    results = probe_many(targets)
    elapsed = time.monotonic() - t0
    assert list(results) == [key for key, *_ in targets]  # input order, every key
    assert all(results[f"ok{i}"].ok for i in range(13))
    assert all(results[f"hung{i}"].error == "timeout after 1s" for i in range(5))
    assert results["503"].error == "HTTP 503" and results["refused"].error == "connection refused"
    # Five hung agents cost one timeout in total, not five; loose bound for a busy CI host.
    assert elapsed < 3 * timeout


def test_probe_many_honours_each_timeout(server: str, hung: Callable[[], str]) -> None:
    t0 = time.monotonic()
    results = probe_many([("fast", hung(), 0.2, 200), ("slow", hung(), 0.8, 200), ("ok", server, 0.2, 200)])
    assert results["fast"].error == "timeout after 0.2s" and results["slow"].error == "timeout after 0.8s"
    assert results["ok"].ok
    assert time.monotonic() - t0 < 3 * 0.8


def test_probe_many_empty() -> None:
    assert probe_many([]) == {}


def test_wait_healthy_waits_for_a_slow_start(agents: Callable[..., DemoAgent]) -> None:
    a = agents(config={"startup_delay": 0.8}).start()
    ticks: list[HealthResult] = []
    url = a.url("/health")
    r = wait_healthy(url, timeout_total=15, interval=0.1, per_try_timeout=1, on_tick=ticks.append)
    assert r.ok and r.status == 200
    assert ticks[-1] == r and len(ticks) >= 2
    assert all(not t.ok for t in ticks[:-1])


def test_wait_healthy_gives_up_at_the_deadline() -> None:
    url = f"http://127.0.0.1:{free_port()}/health"
    t0 = time.monotonic()
    r = wait_healthy(url, timeout_total=0.6, interval=0.1, per_try_timeout=0.5)
    elapsed = time.monotonic() - t0
    assert not r.ok and r.error == "connection refused"
    assert 0.5 < elapsed < 2


def test_wait_healthy_cuts_the_last_try_to_the_deadline(hung: Callable[[], str]) -> None:
    t0 = time.monotonic()
    r = wait_healthy(hung(), timeout_total=0.5, interval=0.1, per_try_timeout=10)
    assert not r.ok and r.error is not None and r.error.startswith("timeout after")
    assert time.monotonic() - t0 < 1.5


def test_importing_health_does_not_import_httpx() -> None:
    # `fleetctl status` has 300 ms including start-up; commands that never probe must not pay.
    code = "import sys, fleetctl.probes.health; print('httpx' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_demo_agent_answers_a_burst_of_probes(agents: Callable[..., DemoAgent]) -> None:
    # The agent's listen backlog must take a fleet-wide burst; overflow shows up as 1 s stalls.
    a = agents().start().wait_ready()
    results = probe_many([(i, a.url("/health"), 0.9, 200) for i in range(40)])
    assert all(r.ok for r in results.values()), [r for r in results.values() if not r.ok]


class _SlowHandler(_StatusHandler):
    def do_GET(self) -> None:
        time.sleep(0.2)
        super().do_GET()


def test_latency_is_when_the_answer_arrived_not_when_it_was_read() -> None:
    # status collects the answers after reading systemd; the kernel's receive timestamp keeps
    # the latency the agent's, not the time status took to get round to it.
    from fleetctl.probes.health import Probes

    srv = _Server(("127.0.0.1", 0), _SlowHandler)
    threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        probes = Probes([("slow", f"http://127.0.0.1:{srv.server_address[1]}/", 3.0, 200)])
        time.sleep(0.8)  # other work; the answer is in by now
        (r,) = probes.results().values()
    finally:
        srv.shutdown()
        srv.server_close()
    assert r.ok and r.latency_ms is not None
    assert 190 <= r.latency_ms < 700, r.latency_ms


def test_results_not_wanted_are_not_waited_for(server: str, hung: Callable[[], str]) -> None:
    from fleetctl.probes.health import Probes

    probes = Probes([("up", server + "/", 5.0, 200), ("hung", hung(), 5.0, 200)])
    t0 = time.monotonic()
    got = probes.results(wanted={"up"})
    assert time.monotonic() - t0 < 2.5  # not the hung one's 5 s
    assert list(got) == ["up"] and got["up"].ok
