"""Config store, managed files, drift and diff -- with real files and real killed processes."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fleetctl.common.errors import FleetError, LockedError
from fleetctl.configs.diff import unified_diff
from fleetctl.configs.drift import capture_drift, detect_drift
from fleetctl.configs.files import deploy, read_managed, recover, write_managed
from fleetctl.configs.formats import ConfigInvalid
from fleetctl.configs.store import JOURNAL, Store

REPO = Path(__file__).resolve().parent.parent


def _mask(text: str) -> str:
    return text.replace("sk-secret-1", "***").replace("sk-secret-2", "***")


def _debris(root: Path) -> list[str]:
    """Anything in the store that is neither the index, the lock nor a referenced version."""
    index = json.loads((root / "index.json").read_text())
    referenced = {f"{v:06d}" for v in index["versions"]}
    extra = [p.name for p in root.iterdir() if p.name not in ("index.json", "lock", "versions")]
    extra += [f"versions/{p.name}" for p in (root / "versions").iterdir() if p.name not in referenced]
    return extra


# -- store ---------------------------------------------------------------------------------


def test_record_history_mark_good(tmp_path: Path) -> None:
    store = Store(tmp_path / "coder")
    assert store.history() == [] and store.current() is None and store.last_known_good() is None
    with store.lock():
        v1 = store.record({"config.json": b'{"a": 1}'}, "install", "first install")
        store.set_current(v1.version)
        v2 = store.record({"config.json": b'{"a": 2}', "extra.toml": b"x = 1\n"}, "apply", "bump a")
        store.set_current(v2.version)
        store.mark_good(v1.version)
    assert [m.version for m in store.history()] == [1, 2]
    assert store.get(2) == {"config.json": b'{"a": 2}', "extra.toml": b"x = 1\n"}
    assert (store.current() or v1).version == 2
    lkg = store.last_known_good()
    assert lkg is not None and lkg.version == 1 and lkg.verified and lkg.source == "install"
    assert not store.history()[1].verified and store.history()[1].reason == "bump a"
    meta = json.loads((tmp_path / "coder/versions/000002/meta.json").read_text())
    assert set(meta) >= {"version", "sha256", "time", "source", "reason", "verified"}
    # copies of configs may hold tokens
    assert stat.S_IMODE((tmp_path / "coder").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "coder/versions/000002/files/config.json").stat().st_mode) == 0o600


def test_a_move_back_to_an_older_version_is_an_event(tmp_path: Path) -> None:
    # Versions alone cannot say when the config went back (a rollback, a restore): events do.
    store = Store(tmp_path / "coder")
    with store.lock():
        for n in (1, 2, 3):
            store.set_current(store.record({"config.json": f'{{"a": {n}}}'.encode()}, "apply", "x").version)
        assert store.moves_back() == []  # applies move forward: no event
        store.set_current(1)
        store.set_current(3)  # back to the newest: a forward move, no event
        store.set_current(2)
    assert [(e["from"], e["to"]) for e in store.moves_back()] == [(3, 1), (3, 2)]
    events = tmp_path / "coder" / "events.jsonl"
    assert stat.S_IMODE(events.stat().st_mode) == 0o600
    events.write_text(events.read_text() + '{"torn')  # a crash mid-line costs that line only
    assert len(store.moves_back()) == 2


def test_identical_content_is_no_new_version(tmp_path: Path) -> None:
    store = Store(tmp_path / "coder")
    with store.lock():
        v1 = store.record({"a.json": b"1", "b.json": b"2"}, "apply", "x")
        store.set_current(v1.version)
        again = store.record({"b.json": b"2", "a.json": b"1"}, "apply", "same again")
        renamed = store.record({"a.json": b"1", "c.json": b"2"}, "apply", "same bytes, other name")
    assert again == v1
    assert renamed.version == 2 and renamed.sha256 != v1.sha256


def test_retention_after_100_records_keeps_last_known_good(tmp_path: Path) -> None:
    store = Store(tmp_path / "coder")  # keep=20
    with store.lock():
        for i in range(1, 101):
            v = store.record({"config.json": f'{{"n": {i}}}'.encode()}, "apply", f"change {i}")
            store.set_current(v.version)
            if i in (10, 50):
                store.mark_good(v.version)
    versions = [m.version for m in store.history()]
    assert versions == [50, *range(81, 101)]  # 10 lost its protection when 50 became good
    assert (store.last_known_good() or store.history()[0]).version == 50
    assert store.get(50) == {"config.json": b'{"n": 50}'}
    assert sorted(p.name for p in (tmp_path / "coder/versions").iterdir()) == [f"{v:06d}" for v in versions]
    assert _debris(tmp_path / "coder") == []


def test_current_is_kept_even_outside_the_window(tmp_path: Path) -> None:
    store = Store(tmp_path / "coder", keep=3)
    with store.lock():
        store.set_current(store.record({"c": b"0"}, "install", "").version)
        for i in range(1, 6):
            store.record({"c": str(i).encode()}, "apply", "never deployed")
    assert [m.version for m in store.history()] == [1, 4, 5, 6]


def test_changes_need_the_lock(tmp_path: Path) -> None:
    store = Store(tmp_path / "coder")
    with pytest.raises(RuntimeError, match=r"record .* needs `with store.lock\(\)`"):
        store.record({"c": b"1"}, "apply", "")
    with store.lock():
        with store.lock():  # re-entrant for the same object
            store.record({"c": b"1"}, "apply", "")
        with pytest.raises(FleetError, match="no version 7"):
            store.set_current(7)
        with pytest.raises(FleetError, match="must be a plain relative path"):
            store.record({"../escape": b"1"}, "apply", "")
        with pytest.raises(ValueError, match="source must be one of"):
            store.record({"c": b"2"}, "upgrade", "")  # type: ignore[arg-type]


def test_stored_file_corruption_is_detected(tmp_path: Path) -> None:
    store = Store(tmp_path / "coder")
    with store.lock():
        store.record({"config.json": b'{"a": 1}'}, "apply", "")
    (tmp_path / "coder/versions/000001/files/config.json").write_bytes(b'{"a": 2}')
    with pytest.raises(FleetError, match=r"version 1: config.json is corrupt \(sha256 mismatch\)"):
        store.get(1)


def test_debris_removed_when_the_lock_is_taken(tmp_path: Path) -> None:
    store = Store(tmp_path / "coder")
    with store.lock():
        store.record({"c": b"1"}, "apply", "")
    root = tmp_path / "coder"
    (root / ".version.abc123.tmp/files").mkdir(parents=True)
    (root / ".index.json.q1w2e3r4.tmp").write_text("{")
    (root / "versions/000002/files").mkdir(parents=True)  # renamed in, never indexed
    (root / "versions/000001/.meta.json.a1b2c3d4.tmp").write_text("{")  # torn mark_good
    assert len(_debris(root)) == 3
    assert [m.version for m in store.history()] == [1]  # readers just ignore it
    with store.lock():
        pass
    assert _debris(root) == []
    assert sorted(p.name for p in (root / "versions/000001").iterdir()) == ["files", "meta.json"]
    with store.lock():  # the number of a removed orphan is free again
        assert store.record({"c": b"2"}, "apply", "").version == 2


# -- managed files -------------------------------------------------------------------------


def test_symlink_outside_config_dir_refused(tmp_path: Path) -> None:
    cfg, outside = tmp_path / "cfg", tmp_path / "elsewhere"
    cfg.mkdir()
    outside.mkdir()
    (outside / "passwd").write_text("root:x:0:0\n")
    (cfg / "config.json").symlink_to(outside / "passwd")
    (cfg / "sub").symlink_to(outside)
    for name in ("config.json", "sub/passwd"):
        with pytest.raises(FleetError, match=rf"cfg/{name}: resolves to .*elsewhere.*outside the config dir"):
            read_managed(cfg, [name])
        with pytest.raises(FleetError, match="outside the config dir"):
            write_managed(cfg, {name: b"pwned"})
    assert (outside / "passwd").read_text() == "root:x:0:0\n"
    for bad in ("../x", "/etc/passwd", "a/../../x", ""):
        with pytest.raises(FleetError, match="must be a plain relative path"):
            read_managed(cfg, [bad])


def test_symlink_inside_config_dir_is_written_through(tmp_path: Path) -> None:
    cfg = tmp_path / "cfg"
    (cfg / "real").mkdir(parents=True)
    (cfg / "real/config.json").write_text("{}")
    (cfg / "config.json").symlink_to("real/config.json")
    assert read_managed(cfg, ["config.json", "absent.json"]) == {"config.json": b"{}"}
    write_managed(cfg, {"config.json": b'{"a": 1}'})
    assert (cfg / "config.json").is_symlink()
    assert (cfg / "real/config.json").read_bytes() == b'{"a": 1}'
    assert stat.S_IMODE((cfg / "real/config.json").stat().st_mode) == 0o600


def test_write_managed_skips_unchanged_and_removes(tmp_path: Path) -> None:
    cfg = tmp_path / "cfg"
    write_managed(cfg, {"a.json": b"1", "b.json": b"2"})
    before = (cfg / "a.json").stat().st_ino
    write_managed(cfg, {"a.json": b"1", "b.json": None})
    assert (cfg / "a.json").stat().st_ino == before  # not rewritten: no spurious hot reload
    assert sorted(p.name for p in cfg.iterdir()) == ["a.json"]


def test_read_managed_bounds(tmp_path: Path) -> None:
    cfg = tmp_path / "cfg"
    cfg.mkdir()
    (cfg / "big.json").write_bytes(b"x" * 5000)
    with pytest.raises(ConfigInvalid, match=r"big.json: 5000 bytes, larger than the 4096-byte limit"):
        read_managed(cfg, ["big.json"], max_bytes=4096)
    os.mkfifo(cfg / "fifo.json")
    with pytest.raises(FleetError, match="fifo.json: not a regular file"):
        read_managed(cfg, ["fifo.json"])


def test_deploy_and_recover_without_crash(tmp_path: Path) -> None:
    store, cfg = Store(tmp_path / "store" / "coder"), tmp_path / "cfg"
    names = ["config.json", "secrets.env"]
    with store.lock():
        v1 = store.record({"config.json": b"1", "secrets.env": b"T=1"}, "install", "")
        v2 = store.record({"config.json": b"2"}, "apply", "drop secrets")
        deploy(store, cfg, v1.version, names)
        assert read_managed(cfg, names) == {"config.json": b"1", "secrets.env": b"T=1"}
        deploy(store, cfg, v2.version, names)
        assert read_managed(cfg, names) == {"config.json": b"2"}
        assert (store.current() or v1).version == 2
        assert not (store.root / JOURNAL).exists()
        assert recover(store, cfg, names) is None


# -- drift and diff ------------------------------------------------------------------------


def test_drift_detected_and_captured_before_overwrite(tmp_path: Path) -> None:
    store, cfg = Store(tmp_path / "store" / "coder"), tmp_path / "cfg"
    names = ["config.json", "extra.json", "new.json"]
    old = b'{\n  "port": 8080,\n  "token": "sk-secret-1"\n}\n'
    with store.lock():
        v1 = store.record({"config.json": old, "extra.json": b"{}"}, "install", "")
        deploy(store, cfg, v1.version, names)
        assert detect_drift(cfg, names, store) is None
        # a human edits behind fleetctl's back
        (cfg / "config.json").write_bytes(old.replace(b"8080", b"9090").replace(b"-1", b"-2"))
        (cfg / "extra.json").unlink()
        (cfg / "new.json").write_bytes(b"[]")
        drift = detect_drift(cfg, names, store, mask=_mask)
        assert drift is not None
        assert (drift.changed, drift.missing, drift.new) == (("config.json",), ("extra.json",), ("new.json",))
        assert '-  "port": 8080,' in drift.diff and '+  "port": 9090,' in drift.diff
        assert "--- v1/config.json" in drift.diff and "+++ on-disk/config.json" in drift.diff
        assert "+++ /dev/null" in drift.diff and "--- /dev/null" in drift.diff
        assert "sk-secret" not in drift.diff and "sk-secret" not in repr(drift)
        summary = "differs from version 1: config.json changed, extra.json missing, new.json new"
        assert drift.summary() == summary

        captured = capture_drift(cfg, names, store, mask=_mask)
        assert captured is not None
        manual = captured[0]
        assert (manual.source, manual.verified, manual.version) == ("manual-edit", False, 2)
        assert (store.current() or v1).version == 2
        assert detect_drift(cfg, names, store) is None  # the edit is now the known state
        deploy(store, cfg, v1.version, names)  # e.g. a rollback overwrites the edit...
    assert store.get(2)["config.json"] == old.replace(b"8080", b"9090").replace(b"-1", b"-2")  # ...not lost
    assert store.get(2)["new.json"] == b"[]"


def test_drift_with_nothing_recorded_counts_everything_as_new(tmp_path: Path) -> None:
    store, cfg = Store(tmp_path / "store" / "coder"), tmp_path / "cfg"
    assert detect_drift(cfg, ["config.json"], store) is None  # nothing anywhere
    cfg.mkdir()
    (cfg / "config.json").write_text("{}")
    drift = detect_drift(cfg, ["config.json"], store)
    assert drift is not None and drift.new == ("config.json",) and drift.current is None


def test_diff_masks_secrets_and_handles_binary() -> None:
    a = {"c.json": b'{"token": "sk-secret-1"}\n', "bin": b"\x00\x01", "same": b"x"}
    b = {"c.json": b'{"token": "sk-secret-2"}\n', "bin": b"\x00\x02", "same": b"x"}
    out = unified_diff(a, b, ("v1", "v2"), _mask)
    assert "Binary files v1/bin and v2/bin differ" in out
    assert "--- v1/c.json\n+++ v2/c.json\n# only masked (secret) values differ\n" in out
    assert "same" not in out and "sk-secret" not in out
    assert unified_diff(a, a, ("v1", "v2"), _mask) == ""
    assert "\\ No newline at end of file" in unified_diff({"f": b"a"}, {"f": b"b"}, ("x", "y"))


# -- crashes: a real child process, SIGKILLed by the parent at every write it makes --------

# The child arms a Python audit hook (sys.addaudithook: the interpreter's own events for
# open-for-write, rename, mkdir, remove, rmtree ...) and, at the Nth such event under the test
# dir, reports it on stdout and waits there; the parent SIGKILLs it. Audit events fire before
# the operation, so trial N sees the effect of exactly N-1 writes. No hooks in fleetctl itself.
# SIGKILL tests process-crash atomicity; fsync (power loss) is not something a test can cut.
CHILD = r"""
import os, sys, time
from pathlib import Path
from fleetctl.configs.store import Store
from fleetctl.configs.files import deploy

scenario, base, pause_at = sys.argv[1], sys.argv[2], int(sys.argv[3])
store = Store(Path(base) / "store" / "coder", keep=2)
MUTATING = {"os.rename", "os.remove", "os.rmdir", "os.mkdir", "shutil.rmtree", "os.truncate"}
WRITE = os.O_WRONLY | os.O_RDWR | os.O_CREAT
seen = 0
armed = True

def hook(event, args):
    global seen, armed
    if not armed:
        return
    if event == "open":
        if not (isinstance(args[2], int) and args[2] & WRITE):
            return
    elif event not in MUTATING:
        return
    if not any(isinstance(a, (str, os.PathLike)) and os.fspath(a).startswith(base) for a in args):
        return
    seen += 1
    if seen == pause_at:
        armed = False
        print("PAUSED", event, os.fspath(args[0]).removeprefix(base), flush=True)
        time.sleep(3600)

sys.addaudithook(hook)
with store.lock():
    if scenario == "record":
        store.record({"config.json": b"D" * 1000, "conf.d/x.toml": b"d = 4\n"}, "apply", "crash")
    else:
        deploy(store, Path(base) / "cfg", 2, sys.argv[4].split(","))
armed = False
print("DONE", flush=True)
"""


def _run_child(scenario: str, base: Path, pause_at: int, *extra: str) -> str | None:
    """Run the child until its Nth write; SIGKILL it there. None when it finished first."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, scenario, str(base), str(pause_at), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if line.startswith("PAUSED"):
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=30)
        assert proc.returncode == -signal.SIGKILL
        return line
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0 and line == "DONE", err
    return None


RECORD_START = {1: {"config.json": b"A"}, 2: {"config.json": b"B"}, 3: {"config.json": b"C"}}
RECORD_NEW = {"config.json": b"D" * 1000, "conf.d/x.toml": b"d = 4\n"}


def test_crash_during_record_leaves_a_readable_store(tmp_path: Path) -> None:
    kill_points: list[str] = []
    outcomes = set()
    for n in range(1, 200):
        base = tmp_path / f"t{n}"
        store = Store(base / "store" / "coder", keep=2)
        with store.lock():
            for v, files in RECORD_START.items():
                store.set_current(store.record(files, "apply", "").version)
                if v == 1:
                    store.mark_good(1)
        killed = _run_child("record", base, n)

        after = Store(base / "store" / "coder", keep=2)
        with after.lock():  # re-open as the next run would: this cleans the debris
            versions = [m.version for m in after.history()]
            assert versions in ([1, 2, 3], [1, 3, 4]), (killed, versions)
            for v in versions:  # every referenced version is complete and uncorrupted
                assert after.get(v) == (RECORD_NEW if v == 4 else RECORD_START[v]), (killed, v)
            assert (after.current() or after.history()[0]).version == 3
            assert (after.last_known_good() or after.history()[0]).version == 1
            assert _debris(after.root) == [], killed
            again = after.record(RECORD_NEW, "apply", "retry after crash")  # store still usable
            assert after.get(again.version) == RECORD_NEW
        outcomes.add(tuple(versions))
        if killed is None:
            break
        kill_points.append(killed)
    else:
        pytest.fail("child never finished")
    assert outcomes == {(1, 2, 3), (1, 3, 4)}
    joined = "\n".join(kill_points)
    for step in ("os.mkdir /store/coder/.version.", "os.rename /store/coder/.version.", "shutil.rmtree"):
        assert step in joined, joined  # the interesting points were really hit


OLD = {"config.json": b'{"v": "old"}\n' * 50, "secrets.env": b"TOKEN=old\n", "old-only.json": b"{}"}
NEW = {"config.json": b'{"v": "new"}\n' * 50, "secrets.env": b"TOKEN=new\n", "conf.d/new.json": b"[]"}
NAMES = ["config.json", "secrets.env", "old-only.json", "conf.d/new.json"]


def _all_files(directory: Path) -> list[str]:
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*") if not p.is_dir())


def test_crash_during_multi_file_deploy_recovers_all_old_or_all_new(tmp_path: Path) -> None:
    seen_mixed = False
    outcomes = set()
    for n in range(1, 200):
        base = tmp_path / f"t{n}"
        store, cfg = Store(base / "store" / "coder", keep=2), base / "cfg"
        with store.lock():
            deploy(store, cfg, store.record(OLD, "install", "").version, NAMES)
            assert store.record(NEW, "apply", "").version == 2
        killed = _run_child("deploy", base, n, ",".join(NAMES))

        on_disk = read_managed(cfg, NAMES)
        seen_mixed |= on_disk not in (OLD, NEW)
        after = Store(base / "store" / "coder", keep=2)
        with after.lock():
            finished = recover(after, cfg, NAMES)
            on_disk = read_managed(cfg, NAMES)
            assert on_disk in (OLD, NEW), (killed, on_disk)  # byte-exact: nothing torn
            state = "new" if on_disk == NEW else "old"
            assert (after.current() or after.history()[0]).version == (2 if state == "new" else 1), killed
            # a journal exists from the moment the new version is committed until the very end
            assert finished == (2 if state == "new" and killed is not None else None), killed
            assert _all_files(cfg) == sorted(on_disk), (killed, _all_files(cfg))  # no temp files
            assert _debris(after.root) == [], killed  # journal gone too
        outcomes.add(state)
        if killed is None:
            break
    else:
        pytest.fail("child never finished")
    assert outcomes == {"old", "new"}
    assert seen_mixed, "no kill point left a half-written config dir: the test proves nothing"


def test_second_concurrent_change_is_refused_at_once(tmp_path: Path) -> None:
    root = tmp_path / "store" / "coder"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from pathlib import Path; from fleetctl.configs.store import Store\n"
            "with Store(Path(sys.argv[1])).lock():\n"
            "    print('LOCKED', flush=True); sys.stdin.read()",
            str(root),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "LOCKED"
        started = time.monotonic()
        with pytest.raises(LockedError) as exc:
            with Store(root).lock():
                pytest.fail("got the lock while another process holds it")
        assert time.monotonic() - started < 1
        assert str(exc.value).startswith(
            f"another config change for coder is in progress (pid {holder.pid})"
        ), exc.value
        assert exc.value.exit_code == 75
    finally:
        holder.kill()  # SIGKILL: the kernel drops the flock with the process
        holder.communicate(timeout=30)
    with Store(root).lock():
        pass
