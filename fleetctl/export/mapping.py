"""What each profile key becomes on Kubernetes: one table drives the export's warnings and the docs.

Like kompose, a key with no equivalent is named in a warning instead of being dropped silently.
`docs/kubernetes.md` carries `markdown_table()` verbatim (tests/test_export_kubernetes.py keeps
it in step, and checks that every key of the schema is listed here).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fleetctl.fleet import schema
from fleetctl.fleet.profiles import Profile

YES, PARTLY, NO = "yes", "partly", "no"


@dataclass(frozen=True)
class Mapping:
    carried: str  # YES | PARTLY | NO
    becomes: str  # what it turns into, or what to use instead


_BACKOFF = "kubelet's own crash back-off (10 s, doubling to 5 min) is not configurable per pod"

PROFILE_KEYS: dict[str, Mapping] = {
    "name": Mapping(YES, "object names `fleet-NAME`, label `app.kubernetes.io/name`"),
    "description": Mapping(YES, "annotation `fleetctl/description`"),
    "role": Mapping(YES, "label `app.kubernetes.io/component`"),
    "command": Mapping(
        YES,
        "container `command`; `{python}` becomes `python3`, `~/` becomes the pod's HOME `/home/agent/`",
    ),
    "port": Mapping(YES, "`containerPort` named `http`, the Service's port, `FLEET_PORT`"),
    "port_span": Mapping(
        NO, "a pod has its own network namespace, so footprints cannot collide; only `port` is exposed"
    ),
    "workspace": Mapping(YES, "the agent's PersistentVolumeClaim (sub-path `workspace`), `workingDir`"),
    "config_dir": Mapping(YES, "the agent's PersistentVolumeClaim (sub-path `config`)"),
    "environment": Mapping(YES, "container `env`"),
    "secrets_file": Mapping(
        YES,
        "`envFrom.secretRef` to Secret `fleet-NAME-secrets`, which you create with the printed "
        "`kubectl create secret generic` command; no value is written",
    ),
    "alternate_secrets_files": Mapping(
        NO, "the watchdog's credential switch; update the Secret and `kubectl rollout restart`"
    ),
    "after": Mapping(
        NO,
        "Kubernetes has no start order: every agent starts at once, so the coordinator's inbox "
        "must tolerate specialists that are not up yet",
    ),
    "log_file": Mapping(NO, "containers log to stdout; use `kubectl logs` or the cluster's log collector"),
    "health.path": Mapping(YES, "`livenessProbe` and `startupProbe` (HTTP GET on port `http`)"),
    "health.ready_path": Mapping(YES, "`readinessProbe` (without it, `health.path`)"),
    "health.timeout": Mapping(YES, "probes' `timeoutSeconds` (rounded up to whole seconds)"),
    "health.expected_status": Mapping(PARTLY, "probes count any status from 200 to 399 as success"),
    "health.startup_grace": Mapping(YES, "`startupProbe`: `failureThreshold` × `periodSeconds` covers it"),
    "health.stable_window": Mapping(NO, "the nearest is the Deployment's `minReadySeconds`"),
    "restart.policy": Mapping(
        PARTLY, "a Deployment's pods always restart (`restartPolicy: Always`); `no` cannot be kept"
    ),
    "restart.delay": Mapping(NO, _BACKOFF),
    "restart.max_delay": Mapping(NO, _BACKOFF),
    "restart.steps": Mapping(NO, _BACKOFF),
    "restart.burst": Mapping(NO, "no start limit: a failing pod stays in CrashLoopBackOff"),
    "restart.interval": Mapping(NO, "no start limit: a failing pod stays in CrashLoopBackOff"),
    "restart.bad_config_exit_statuses": Mapping(
        NO,
        "no equivalent: a pod that exits for a bad config is restarted in back-off like any "
        "crash; `kubectl rollout undo` restores the last good ConfigMap",
    ),
    "restart.success_exit_statuses": Mapping(NO, "a Deployment restarts a container whatever its exit"),
    "restart.max_restarts_per_hour": Mapping(NO, "the watchdog's flap limit; alert on restart counts"),
    "restart.kill_mode": Mapping(NO, "SIGTERM goes to the container's PID 1, then SIGKILL to all"),
    "restart.stop_timeout": Mapping(YES, "`terminationGracePeriodSeconds`"),
    "resources.memory_max": Mapping(YES, "`resources.limits.memory` (`M` → `Mi`, `G` → `Gi`)"),
    "resources.cpu_quota": Mapping(YES, "`resources.limits.cpu` (`50%` → `500m`)"),
    "resources.tasks_max": Mapping(NO, "the pod PID limit is the kubelet's `podPidsLimit`"),
    "sandbox.enabled": Mapping(
        YES,
        "`securityContext`: non-root, no privilege escalation, ALL capabilities dropped, "
        "`RuntimeDefault` seccomp; `readOnlyRootFilesystem` unless false",
    ),
    "sandbox.read_write_paths": Mapping(PARTLY, "`emptyDir` volumes: writable, but not kept across restarts"),
    "sandbox.read_only_paths": Mapping(
        NO, "a pod sees only its image and volumes: put what the agent reads into the image"
    ),
    "sandbox.relax": Mapping(NO, "systemd directives have no pod equivalent; the `securityContext` stays"),
    "config.file": Mapping(
        YES,
        "ConfigMap `fleet-NAME-config-HASH` mounted read-only at `config_dir/file`; a change "
        "renames it and rolls the Deployment",
    ),
    "config.format": Mapping(YES, "the export parses the file to check it, then carries it byte for byte"),
    "config.schema": Mapping(PARTLY, "checked once, at export; nothing checks a config in the cluster"),
    "config.validate_command": Mapping(NO, "not run at export; `fleetctl config apply` runs it on the host"),
    "warmup.path": Mapping(NO, "the watchdog's warm-up after a restart"),
    "warmup.prompt": Mapping(NO, "the watchdog's warm-up after a restart"),
    "watchdog.redact": Mapping(
        PARTLY, "no LLM watchdog; the export refuses a config file these patterns match"
    ),
    "oversight.usage_path": Mapping(NO, "scrape it with Prometheus; alert with Alertmanager"),
    "oversight.rate_limits": Mapping(NO, "a Prometheus alerting rule on the usage metrics"),
    "oversight.inbox_path": Mapping(NO, "the bulletin is not kept; post to the inbox from a CronJob"),
    "oversight.checks": Mapping(NO, "a CronJob per check, alerting on failed Jobs"),
    "cost.path": Mapping(NO, "scrape the same endpoint with Prometheus; `fleetctl cost` does not run there"),
    "cost.format": Mapping(NO, "a Prometheus scrape reads only the `prometheus` format"),
    "cost.token_env": Mapping(NO, "the scrape's `authorization.credentials_file`"),
    "budget.usd_per_day": Mapping(NO, "an alerting rule on `increase(openclaw_model_cost_usd_total[1d])`"),
    "budget.on_exceed": Mapping(NO, "no stop-and-hold; scale the Deployment to 0 by hand"),
    "budget.spend_rate_factor": Mapping(NO, "an alerting rule comparing `rate()` over 1h and 24h"),
    "kubernetes.image": Mapping(YES, "container `image`; required"),
    "kubernetes.command": Mapping(YES, "container `command` instead of `command`"),
    "kubernetes.storage": Mapping(YES, "the PersistentVolumeClaim's storage request"),
}

FLEET_KEYS: dict[str, Mapping] = {
    "watchdog.interval_minutes": Mapping(NO, "no LLM watchdog: liveness probes and back-off restart"),
    "watchdog.groq_model": Mapping(NO, "no LLM diagnosis; read `kubectl describe pod` and events"),
    "watchdog.anthropic_model": Mapping(NO, "no LLM diagnosis; read `kubectl describe pod` and events"),
    "watchdog.providers": Mapping(NO, "no LLM diagnosis; read `kubectl describe pod` and events"),
    "oversight.review_checklist": Mapping(NO, "no oversight pass; a CronJob can run your own review"),
    "oversight.interval_minutes": Mapping(NO, "no oversight pass"),
    "alerts.dedup_window": Mapping(NO, "Alertmanager's `repeat_interval`"),
    "alerts.channels": Mapping(NO, "Alertmanager receivers"),
    "budget.usd_per_day": Mapping(NO, "an alerting rule on the fleet's summed cost counters"),
    "bulletin.max_age_days": Mapping(NO, "no bulletin on Kubernetes"),
}


def markdown_table(table: dict[str, Mapping]) -> str:
    rows = ["| key | carried | on Kubernetes |", "| --- | --- | --- |"]
    rows += [f"| `{k}` | {m.carried} | {m.becomes.replace('|', '/')} |" for k, m in table.items()]
    return "\n".join(rows) + "\n"


def value(p: Profile, key: str) -> Any:
    obj: Any = p
    for part in key.split("."):
        obj = getattr(obj, part)
    return obj


def _normal(v: Any) -> Any:
    if isinstance(v, dict):
        return tuple(sorted(v.items()))
    if isinstance(v, list):
        return tuple(v)
    return v


# Values of a partly-carried key that Kubernetes does keep.
_KEPT: dict[str, Callable[[Any], bool]] = {
    "restart.policy": lambda v: v == "always",
    "health.expected_status": lambda v: 200 <= v < 400,
}


def lost(p: Profile) -> list[str]:
    """The keys this profile sets (away from the default) that Kubernetes cannot keep, as lines."""
    out = []
    for key, m in PROFILE_KEYS.items():
        if m.carried == YES:
            continue
        v = value(p, key)
        if _normal(v) in ((), None, _normal(schema.BY_KEY[key].default)):
            continue
        if key in _KEPT and _KEPT[key](v):
            continue
        out.append(f"{key} = {_show(v)}: {m.becomes}")
    return out


def _show(v: Any) -> str:
    if isinstance(v, tuple) and v and all(isinstance(x, tuple) and len(x) == 2 for x in v):
        return "{" + ", ".join(f"{k} = {_show(x)}" for k, x in v) + "}"  # a table
    if isinstance(v, tuple) and v and not isinstance(v[0], str | int | float):
        return f"[{len(v)} entries]"
    if isinstance(v, tuple):
        return "[" + ", ".join(_show(x) for x in v) + "]"
    if isinstance(v, str):
        return f'"{v}"'
    if isinstance(v, bool):
        return str(v).lower()
    return f"{v:g}" if isinstance(v, float) else str(v)
