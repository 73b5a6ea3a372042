"""The metrics file, read back with prometheus_client's own parser."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from fleetctl.common.errors import FleetError
from fleetctl.oversight.metrics import AgentMetrics, FleetMetrics, render, write_metrics

SAMPLES = FleetMetrics(
    agents=[
        AgentMetrics(
            "coder", up=True, health_latency_seconds=0.125, restarts_total=3, watchdog_actions={"restart": 2}
        ),
        AgentMetrics("writer", up=False, health_latency_seconds=None, restarts_total=0),
        # Label values straight from user config: quotes, backslashes and newlines must survive.
        AgentMetrics('we"ird\\name\nx', up=True, health_latency_seconds=1.5),
    ],
    open_violations=[("writer", "agent-down"), ("", "watchdog-stale")],
    watchdog_last_run=1_714_564_800.0,
    oversee_last_run=1_714_564_805.5,
)


def parse(text: str) -> dict[str, tuple[str, str, dict[tuple[tuple[str, str], ...], float]]]:
    """family name -> (type, help, {sorted label items: value})"""
    out = {}
    for fam in text_string_to_metric_families(text):
        samples = {tuple(sorted(s.labels.items())): s.value for s in fam.samples}
        out[fam.name] = (fam.type, fam.documentation, samples)
    return out


def test_written_file_parses_with_the_expected_samples(tmp_path: Path) -> None:
    path = tmp_path / "fleetctl.prom"
    write_metrics(path, SAMPLES)
    text = path.read_text()
    assert text.endswith("\n")
    fams = parse(text)
    weird = 'we"ird\\name\nx'

    assert fams["fleetctl_agent_up"][0] == "gauge"
    assert fams["fleetctl_agent_up"][2] == {
        (("agent", "coder"),): 1.0,
        (("agent", "writer"),): 0.0,
        (("agent", weird),): 1.0,
    }
    # No probe answer for writer: no sample rather than a misleading 0.
    assert fams["fleetctl_agent_health_latency_seconds"][2] == {
        (("agent", "coder"),): 0.125,
        (("agent", weird),): 1.5,
    }
    # The parser names counter families without the _total suffix.
    restarts = fams["fleetctl_agent_restarts"]
    assert restarts[0] == "counter"
    assert restarts[2][(("agent", "coder"),)] == 3.0
    assert fams["fleetctl_watchdog_actions"][2] == {(("action", "restart"), ("agent", "coder")): 2.0}
    assert fams["fleetctl_open_violations"][2] == {
        (("agent", "writer"), ("check", "agent-down")): 1.0,
        (("agent", ""), ("check", "watchdog-stale")): 1.0,
    }
    assert fams["fleetctl_watchdog_last_run_timestamp_seconds"][2] == {(): 1_714_564_800.0}
    assert fams["fleetctl_oversee_last_run_timestamp_seconds"][2] == {(): 1_714_564_805.5}
    for _type, doc, _ in fams.values():
        assert doc  # every family has HELP


def test_help_and_type_once_per_family() -> None:
    lines = render(SAMPLES).splitlines()
    assert lines.count("# TYPE fleetctl_agent_up gauge") == 1
    assert lines.count("# TYPE fleetctl_agent_restarts_total counter") == 1
    assert lines.count("# TYPE fleetctl_watchdog_actions_total counter") == 1
    assert 'fleetctl_agent_restarts_total{agent="coder"} 3' in lines


def test_empty_families_are_left_out() -> None:
    text = render(FleetMetrics(oversee_last_run=5.0))
    assert list(parse(text)) == ["fleetctl_oversee_last_run_timestamp_seconds"]
    assert render(FleetMetrics()) == ""


def test_write_is_atomic_and_leaves_no_temp_files(tmp_path: Path) -> None:
    path = tmp_path / "fleetctl.prom"
    path.write_text("old content that is not valid exposition\n")
    write_metrics(path, SAMPLES)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fleetctl.prom"]
    assert os.stat(path).st_mode & 0o777 == 0o644  # node_exporter often runs as another user


def test_a_reader_never_sees_a_partial_file(tmp_path: Path) -> None:
    path = tmp_path / "fleetctl.prom"
    big = FleetMetrics(
        agents=[AgentMetrics(f"agent{i}", up=bool(i % 2), restarts_total=i) for i in range(300)]
    )
    write_metrics(path, big)
    expected = {render(big), render(SAMPLES)}
    stop = threading.Event()
    seen: list[str] = []

    def scrape() -> None:
        while not stop.is_set():
            seen.append(path.read_text())

    reader = threading.Thread(target=scrape)
    reader.start()
    try:
        for i in range(40):
            write_metrics(path, SAMPLES if i % 2 else big)
    finally:
        stop.set()
        reader.join()
    assert seen and set(seen) <= expected


def test_refuses_a_name_the_collector_would_ignore(tmp_path: Path) -> None:
    with pytest.raises(FleetError, match=r"must end in \.prom"):
        write_metrics(tmp_path / "fleetctl.txt", SAMPLES)


def test_duplicate_agent_is_an_error() -> None:
    with pytest.raises(FleetError, match="agent listed twice"):
        render(FleetMetrics(agents=[AgentMetrics("a", up=True), AgentMetrics("a", up=False)]))


def test_held_back_pages_are_a_counter_by_check_and_reason() -> None:
    held = {"agent-down/awaiting-watchdog": 3, "agent-down/held-paged-at-escalation": 1}
    text = render(FleetMetrics(pages_suppressed=held))
    [family] = [f for f in text_string_to_metric_families(text) if f.name == "fleetctl_pages_suppressed"]
    assert family.type == "counter"
    got = {(s.labels["check"], s.labels["reason"]): s.value for s in family.samples}
    assert got == {("agent-down", "awaiting-watchdog"): 3, ("agent-down", "held-paged-at-escalation"): 1}
