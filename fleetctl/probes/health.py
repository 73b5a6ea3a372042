"""HTTP health probes, many at once, each bounded by its own timeout.

`fleetctl status` probes the whole fleet inside a 300 ms budget that includes interpreter
start-up, so httpx (~100 ms to import) is imported inside the functions, never at module
import: commands that do not probe do not pay for it.

Concurrency is one thread per target over one shared httpx.Client rather than asyncio: the
async path would pull in asyncio and anyio (together more than httpx itself) for no gain at
fleet sizes of tens of agents. A probe that overruns its deadline is reported as a timeout and
abandoned (daemon thread), so the wall time of `probe_many` is the largest timeout, not the sum,
even when a hung agent lets the connect succeed (kernel backlog) and then never answers.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Container, Hashable, Sequence
from typing import TYPE_CHECKING, Generic, NamedTuple, TypeVar

if TYPE_CHECKING:
    import httpx

K = TypeVar("K", bound=Hashable)

# Scheduling slack past a probe's own timeout before we stop waiting for its thread; httpx's
# timeouts are per phase (connect, then read), so its own report could come up to 2x late.
_GRACE = 0.05


class HealthResult(NamedTuple):
    """One probe's answer, or why there was none."""

    ok: bool
    status: int | None
    latency_ms: float | None
    error: str | None  # short, for a table cell: "timeout after 2s", "connection refused", "HTTP 503"


def _timeout_result(timeout: float) -> HealthResult:
    return HealthResult(False, None, None, f"timeout after {timeout:.3g}s")


def _describe(exc: Exception, timeout: float) -> HealthResult:
    import httpx

    if isinstance(exc, httpx.TimeoutException):
        return _timeout_result(timeout)
    # httpx wraps httpcore which wraps the OSError; the OSError says what really happened.
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ConnectionRefusedError):
            return HealthResult(False, None, None, "connection refused")
        if isinstance(cause, ConnectionResetError):
            return HealthResult(False, None, None, "connection reset")
        cause = cause.__cause__ or cause.__context__
    if isinstance(exc, httpx.InvalidURL | httpx.UnsupportedProtocol):
        return HealthResult(False, None, None, f"invalid URL: {exc}")
    text = str(exc).strip() or type(exc).__name__
    return HealthResult(False, None, None, text.splitlines()[0][:120])


def _probe_one(client: httpx.Client, url: str, timeout: float, expected_status: int) -> HealthResult:
    import httpx

    if timeout <= 0:
        return _timeout_result(timeout)
    start = time.perf_counter()
    try:
        # stream(): the status line is the answer; never read a body that might not end.
        with client.stream("GET", url, timeout=httpx.Timeout(timeout)) as resp:
            status = resp.status_code
    except Exception as e:  # every failure is a probe result, never a crash of `status`
        return _describe(e, timeout)
    latency = round((time.perf_counter() - start) * 1000, 2)
    if status != expected_status:
        return HealthResult(False, status, latency, f"HTTP {status}")
    return HealthResult(True, status, latency, None)


def _probe_many_httpx(targets: Sequence[tuple[K, str, float, int]]) -> dict[K, HealthResult]:
    """Probe every (key, url, timeout, expected_status) at once; results keyed like the input."""
    if not targets:
        return {}
    import httpx

    # Agents listen on localhost: never route probes through an http_proxy from the
    # environment, and skip loading the CA bundle (several ms) unless a target is https.
    verify = any(url.lower().startswith("https:") for _, url, _, _ in targets)
    client = httpx.Client(
        verify=verify,
        trust_env=False,
        follow_redirects=False,
        limits=httpx.Limits(max_connections=len(targets), max_keepalive_connections=0),
    )
    results: dict[K, HealthResult] = {}
    lock = threading.Lock()

    def work(key: K, url: str, timeout: float, expected: int) -> None:
        result = _probe_one(client, url, timeout, expected)
        with lock:
            results.setdefault(key, result)  # a late answer never overwrites a declared timeout

    start = time.monotonic()
    threads = []
    for key, url, timeout, expected in targets:
        # daemon: an abandoned probe must not keep the interpreter alive at exit.
        t = threading.Thread(target=work, args=(key, url, timeout, expected), daemon=True)
        t.start()
        threads.append((start + max(timeout, 0) + _GRACE, key, timeout, t))
    for deadline, key, timeout, t in sorted(threads, key=lambda x: x[0]):
        t.join(max(0.0, deadline - time.monotonic()))
        if t.is_alive():
            with lock:
                results.setdefault(key, _timeout_result(timeout))
    if all(not t.is_alive() for *_, t in threads):
        client.close()
    # else: stragglers still hold the client; they end on their own socket timeouts and the
    # client is then garbage (closing it under them would only trade a timeout for noise).
    return {key: results[key] for key, *_ in targets}


def probe_many(targets: Sequence[tuple[K, str, float, int]]) -> dict[K, HealthResult]:
    """Probe every (key, url, timeout, expected_status) at once; results keyed like the input."""
    return Probes(targets).results()


class Probes(Generic[K]):
    """Probes started now, results collected by `results()`; the caller may work in between.

    Plain-http targets (every agent on 127.0.0.1) go through httpprobe: one thread, no httpx
    import, the requests sent at once (that is what keeps `fleetctl status` for 50 agents
    inside 300 ms). https targets go through httpx, started when results are asked for.
    """

    def __init__(self, targets: Sequence[tuple[K, str, float, int]]) -> None:
        from fleetctl.probes.httpprobe import Batch

        self.targets = list(targets)
        plain = [t for t in self.targets if t[1].lower().startswith("http://")]
        self.batch = Batch([(key, url, timeout) for key, url, timeout, _ in plain])
        self.expected = {key: expected for key, _, _, expected in plain}

    def results(self, wanted: Container[K] | None = None) -> dict[K, HealthResult]:
        """Every target's result; with `wanted`, only those (the others are not waited for)."""
        targets = [t for t in self.targets if wanted is None or t[0] in wanted]
        other = [t for t in targets if t[0] not in self.expected]
        results: dict[K, HealthResult] = _probe_many_httpx(other) if other else {}
        for key, (status, latency, error) in self.batch.finish(wanted).items():
            if error is not None:
                results[key] = HealthResult(False, None, None, error)
            elif status != self.expected[key]:
                results[key] = HealthResult(False, status, latency, f"HTTP {status}")
            else:
                results[key] = HealthResult(True, status, latency, None)
        return {key: results[key] for key, *_ in targets}


def probe(url: str, timeout: float, expected_status: int = 200) -> HealthResult:
    """One probe, with the same hard deadline as probe_many."""
    return probe_many([(0, url, timeout, expected_status)])[0]


def wait_healthy(
    url: str,
    timeout_total: float,
    interval: float,
    per_try_timeout: float,
    expected_status: int = 200,
    on_tick: Callable[[HealthResult], None] | None = None,
) -> HealthResult:
    """Probe until healthy or `timeout_total` has passed; return the last result.

    Each try is cut to the time left, so the call never overruns its deadline by more than
    the grace period; `on_tick` sees every try (install prints progress with it).
    """
    deadline = time.monotonic() + timeout_total
    while True:
        left = deadline - time.monotonic()
        result = probe(url, min(per_try_timeout, max(left, 0.001)), expected_status)
        if on_tick is not None:
            on_tick(result)
        left = deadline - time.monotonic()
        if result.ok or left <= 0:
            return result
        time.sleep(min(interval, left))
