"""Profiles → Kubernetes manifests. Deterministic like `units/`: same profiles and config files, same bytes.

Per agent: a Deployment (one replica, Recreate: an agent holds state), a Service (ClusterIP),
a PersistentVolumeClaim for its workspace and config dir, and its config file as a ConfigMap
whose name carries a content hash, so a config change rolls the Deployment and
`kubectl rollout undo` brings back the last good one. A kustomization.yaml lists them all for
`kubectl apply -k`. Secrets stay out: the Deployment refers to a Secret the user creates from
the secrets file with the printed `kubectl create secret` command.

Inside the pod `~/` is HOME, /home/agent; the agent runs as uid 1000 and listens on 0.0.0.0
(FLEET_HOST), since probes and the Service reach the pod's address, not its loopback.
"""

from __future__ import annotations

import hashlib
import math
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from fleetctl.common import paths
from fleetctl.common.errors import FleetError
from fleetctl.export import mapping
from fleetctl.fleet.profiles import Fleet, Profile

POD_HOME = "/home/agent"
POD_UID = 1000
POD_PYTHON = "python3"
PROBE_PERIOD = 10  # seconds between liveness/readiness probes
STARTUP_PERIOD = 5  # seconds between startup probes, so a fast agent is ready fast
PART_OF = "fleetctl"
KUSTOMIZATION = "kustomization.yaml"
_PLACEHOLDER = re.compile(r"(\{port\}|\{name\}|\{workspace\}|\{config_dir\}|\{python\})")
_ENV_REFERENCE = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*\}")
_LOOPBACK = re.compile(r"^(127\.0\.0\.1|localhost|loopback|::1)$|=(127\.0\.0\.1|localhost|loopback)$")


@dataclass(frozen=True)
class AgentConfigFile:
    """The agent's config file as read from its config dir on this machine."""

    path: str  # config.file: relative to the config dir
    content: bytes

    @property
    def key(self) -> str:
        """The ConfigMap key: the file's base name (keys cannot hold '/')."""
        return PurePosixPath(self.path).name

    @property
    def hash(self) -> str:
        return hashlib.sha256(self.content).hexdigest()[:10]


@dataclass
class Export:
    files: dict[str, str]  # file name in the output dir -> text
    secrets: list[str] = field(default_factory=list)  # `kubectl create secret` commands to run
    warnings: list[str] = field(default_factory=list)


# --- names and paths --------------------------------------------------------------------------
def object_name(p: Profile) -> str:
    return f"{paths.UNIT_PREFIX}{p.name}"


def secret_name(p: Profile) -> str:
    return f"{object_name(p)}-secrets"


def configmap_name(p: Profile, config: AgentConfigFile) -> str:
    return f"{object_name(p)}-config-{config.hash}"


def pod_path(path: str) -> str:
    """A profile path inside the pod: `~/x` lives under the pod's HOME."""
    return f"{POD_HOME}/{path[2:]}" if path.startswith("~/") else path


def labels(p: Profile) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": p.name,
        "app.kubernetes.io/component": p.role,
        "app.kubernetes.io/part-of": PART_OF,
        "app.kubernetes.io/managed-by": PART_OF,
    }


def selector(p: Profile) -> dict[str, str]:
    return {"app.kubernetes.io/name": p.name, "app.kubernetes.io/part-of": PART_OF}


def secret_command(p: Profile, namespace: str | None) -> str:
    """The exact command that makes the Secret the Deployment refers to; `$HOME` left to the shell."""
    assert p.secrets_file
    src = p.secrets_file
    env_file = '"$HOME/' + src[2:] + '"' if src.startswith("~/") else shlex.quote(src)
    ns = f" --namespace {namespace}" if namespace else ""
    return f"kubectl create secret generic {secret_name(p)}{ns} --from-env-file={env_file}"


# --- value conversions ------------------------------------------------------------------------
def memory_quantity(size: str) -> str:
    """systemd's binary sizes ("512M", "1.5G") as Kubernetes quantities ("512Mi", "1.5Gi")."""
    return size + "i" if size[-1] in "KMGT" else size


def cpu_quantity(percent: str) -> str:
    """CPUQuota= ("50%", "200%") as a CPU limit ("500m", "2")."""
    milli = int(percent.rstrip("%")) * 10
    return str(milli // 1000) if milli % 1000 == 0 else f"{milli}m"


def _seconds(x: float) -> int:
    return max(1, math.ceil(x))


def _no_expansion(text: str) -> str:
    """Kubernetes expands `$(VAR)` in command and env; `$$` keeps a literal `$`."""
    return text.replace("$(", "$$(")


def _placeholders(p: Profile, text: str) -> str:
    """The profile's {placeholders} with their values in the pod (what the unit gets on the host)."""
    values = {
        "{port}": str(p.port),
        "{name}": p.name,
        "{workspace}": pod_path(p.workspace),
        "{config_dir}": pod_path(p.config_dir),
        "{python}": POD_PYTHON,
    }
    parts = _PLACEHOLDER.split(text)
    return "".join(values.get(part, part) if j % 2 else _no_expansion(part) for j, part in enumerate(parts))


def pod_command(p: Profile) -> list[str]:
    argv = p.kubernetes.command or p.command
    return [pod_path(_placeholders(p, a)) if i == 0 else _placeholders(p, a) for i, a in enumerate(argv)]


# --- the objects ------------------------------------------------------------------------------
def _metadata(name: str, p: Profile, namespace: str | None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": labels(p)}
    if namespace:
        meta["namespace"] = namespace
    return meta


def _probe(path: str, p: Profile, period: int, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": "http"},
        "periodSeconds": period,
        "timeoutSeconds": _seconds(p.health.timeout),
        "failureThreshold": failures,
    }


def _env(p: Profile) -> list[dict[str, str]]:
    env = {
        "FLEET_AGENT": p.name,
        "FLEET_PORT": str(p.port),
        "FLEET_HOST": "0.0.0.0",
        "FLEET_WORKSPACE": pod_path(p.workspace),
        "FLEET_CONFIG_DIR": pod_path(p.config_dir),
        "HOME": POD_HOME,
    }
    # The profile's own value wins, as in the unit, with the same expansion the unit gives it.
    env.update({k: pod_path(_placeholders(p, v)) for k, v in p.environment})
    return [{"name": k, "value": v} for k, v in env.items()]


def _volumes(p: Profile, config: AgentConfigFile | None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    workspace, config_dir = pod_path(p.workspace), pod_path(p.config_dir)
    mounts: list[dict[str, Any]] = [{"name": "state", "mountPath": workspace, "subPath": "workspace"}]
    if config_dir != workspace:
        mounts.append({"name": "state", "mountPath": config_dir, "subPath": "config"})
    volumes: list[dict[str, Any]] = [
        {"name": "state", "persistentVolumeClaim": {"claimName": object_name(p)}},
    ]
    if config is not None:
        target = str(PurePosixPath(config_dir) / config.path)
        mounts.append({"name": "config", "mountPath": target, "subPath": config.key, "readOnly": True})
        volumes.append({"name": "config", "configMap": {"name": configmap_name(p, config)}})
    if p.sandbox.enabled:
        # A read-only root needs somewhere to write temporary files, as PrivateTmp= gives.
        mounts.append({"name": "tmp", "mountPath": "/tmp"})
        volumes.append({"name": "tmp", "emptyDir": {}})
    for i, extra in enumerate(p.sandbox.read_write_paths):
        if any(m["mountPath"] == pod_path(extra) for m in mounts):
            continue  # already writable: the workspace, the config dir or /tmp
        mounts.append({"name": f"rw-{i}", "mountPath": pod_path(extra)})
        volumes.append({"name": f"rw-{i}", "emptyDir": {}})
    mounts.sort(key=lambda m: m["mountPath"])  # parents before the mounts nested in them
    return mounts, volumes


def deployment(
    p: Profile, image: str, config: AgentConfigFile | None, namespace: str | None
) -> dict[str, Any]:
    mounts, volumes = _volumes(p, config)
    container: dict[str, Any] = {
        "name": "agent",
        "image": image,
        "command": pod_command(p),
        "workingDir": pod_path(p.workspace),
        "env": _env(p),
        "ports": [{"name": "http", "containerPort": p.port, "protocol": "TCP"}],
        "startupProbe": _probe(
            p.health.path, p, STARTUP_PERIOD, max(1, math.ceil(p.health.startup_grace / STARTUP_PERIOD))
        ),
        "livenessProbe": _probe(p.health.path, p, PROBE_PERIOD, 3),
        "readinessProbe": _probe(p.health.ready_path or p.health.path, p, PROBE_PERIOD, 3),
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "readOnlyRootFilesystem": p.sandbox.enabled,
            "runAsNonRoot": True,
        },
        "volumeMounts": mounts,
    }
    if p.secrets_file:
        container["envFrom"] = [{"secretRef": {"name": secret_name(p)}}]
    limits = {}
    if p.resources.memory_max:
        limits["memory"] = memory_quantity(p.resources.memory_max)
    if p.resources.cpu_quota:
        limits["cpu"] = cpu_quantity(p.resources.cpu_quota)
    if limits:
        container["resources"] = {"limits": limits}
    meta = _metadata(object_name(p), p, namespace)
    if p.description:
        meta["annotations"] = {"fleetctl/description": p.description}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta,
        "spec": {
            "replicas": 1,
            "strategy": {"type": "Recreate"},  # never two pods on one workspace
            "selector": {"matchLabels": selector(p)},
            "template": {
                "metadata": {"labels": labels(p)},
                "spec": {
                    "automountServiceAccountToken": False,  # an agent has no business with the API
                    "enableServiceLinks": False,
                    "terminationGracePeriodSeconds": _seconds(p.restart.stop_timeout),
                    "securityContext": {
                        "fsGroup": POD_UID,
                        "runAsGroup": POD_UID,
                        "runAsNonRoot": True,
                        "runAsUser": POD_UID,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [container],
                    "volumes": volumes,
                },
            },
        },
    }


def service(p: Profile, namespace: str | None) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(object_name(p), p, namespace),
        "spec": {
            "type": "ClusterIP",
            "selector": selector(p),
            "ports": [{"name": "http", "port": p.port, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def claim(p: Profile, namespace: str | None) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": _metadata(object_name(p), p, namespace),
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": memory_quantity(p.kubernetes.storage)}},
        },
    }


def configmap(p: Profile, config: AgentConfigFile, namespace: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _metadata(configmap_name(p, config), p, namespace),
        # Immutable: a new content is a new name, and old ones stay for `kubectl rollout undo`.
        "immutable": True,
    }
    try:
        body["data"] = {config.key: config.content.decode("utf-8")}
    except UnicodeDecodeError:
        import base64

        body["binaryData"] = {config.key: base64.b64encode(config.content).decode()}
    return body


# --- files ------------------------------------------------------------------------------------
class _Dumper(yaml.SafeDumper):
    """Multi-line text (a config file) as a literal block, so the ConfigMap reads like the file."""


def _str(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    style = "|" if "\n" in text else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


_Dumper.add_representer(str, _str)


def dump(header: list[str], *objects: dict[str, Any]) -> str:
    docs = [
        yaml.dump(o, Dumper=_Dumper, sort_keys=True, default_flow_style=False, allow_unicode=True, width=100)
        for o in objects
    ]
    return "".join(f"# {line}\n" if line else "#\n" for line in header) + "---\n".join(docs)


def _header(p: Profile) -> list[str]:
    return [
        f"Generated by `fleetctl export kubernetes` from profile {p.source.name} (agent {p.name}).",
        "Do not edit: change the profile and export again.",
    ]


def _deployment_notes(p: Profile, config: AgentConfigFile | None, namespace: str | None) -> list[str]:
    notes = [""]
    if p.secrets_file:
        notes += [
            "Create the Secret first (values never go into a manifest):",
            f"  {secret_command(p, namespace)}",
        ]
    if p.config.file and config is None:
        notes.append(f"No ConfigMap: {p.config.file} was not in the config dir when exported.")
    lost = mapping.lost(p)
    if lost:
        notes.append("No equivalent on Kubernetes (docs/kubernetes.md has the whole table):")
        notes += [f"  {line}" for line in lost]
    return notes if len(notes) > 1 else []


def agent_files(
    p: Profile, image: str, config: AgentConfigFile | None, namespace: str | None
) -> dict[str, str]:
    base = object_name(p)
    files = {
        f"{base}-deployment.yaml": dump(
            _header(p) + _deployment_notes(p, config, namespace), deployment(p, image, config, namespace)
        ),
        f"{base}-service.yaml": dump(_header(p), service(p, namespace)),
        f"{base}-pvc.yaml": dump(_header(p), claim(p, namespace)),
    }
    if config is not None:
        files[f"{base}-config.yaml"] = dump(_header(p), configmap(p, config, namespace))
    return files


def kustomization(resources: list[str], namespace: str | None) -> str:
    body: dict[str, Any] = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": sorted(resources),
    }
    if namespace:
        body["namespace"] = namespace
    header = ["Generated by `fleetctl export kubernetes`. Apply with `kubectl apply -k .`"]
    return dump(header, body)


def image_of(p: Profile) -> str:
    if not p.kubernetes.image:
        raise FleetError(
            f"{p.source}: kubernetes.image: not set; name the image that holds the agent's program "
            f'in the profile ([kubernetes] image = "registry.example.com/agent:1.0") or for every '
            "agent in fleet.toml ([defaults.kubernetes] image = ...)"
        )
    return p.kubernetes.image


def read_config(p: Profile) -> AgentConfigFile | None:
    """The agent's config file on this machine; refuse one that is invalid or holds a secret.

    An invalid config would only make a pod that crash-loops, so it is checked here as
    `fleetctl config apply` checks it (syntax, then config.schema), short of running the agent.
    """
    if not p.config.file:
        return None
    from fleetctl.configs.apply import validate
    from fleetctl.configs.files import read_managed

    config_dir = paths.expand(p.config_dir)
    content = read_managed(config_dir, [p.config.file]).get(p.config.file)
    if content is None:
        return None
    validate(p, content, str(config_dir / p.config.file))
    _refuse_secrets(p, config_dir / p.config.file, content)
    return AgentConfigFile(p.config.file, content)


def secret_values(p: Profile) -> list[str]:
    """The values in the agent's secrets files on this machine, long enough to mean something."""
    from fleetctl.secrets.envfile import agent_secret_values
    from fleetctl.secrets.redact import MIN_SECRET_LEN

    try:
        values = agent_secret_values(p)
    except OSError as e:
        raise FleetError(
            f"{e.filename}: cannot read ({e.strerror}); the export reads it to keep its values out of "
            "the manifests"
        ) from None
    return [v.strip() for v in values if len(v.strip()) >= MIN_SECRET_LEN]


def _refuse_secret_values(p: Profile, files: dict[str, str]) -> None:
    """Last guard: no secrets-file value may reach a manifest by any road (environment, argv...)."""
    values = secret_values(p)
    for name, text in sorted(files.items()):
        for key_value in values:
            if key_value in text:
                raise FleetError(
                    f"{p.source}: a value from {p.secrets_file or 'a secrets file'} would be written "
                    f"into {name}; keep secrets in the secrets file only, then export again"
                )


def _refuse_secrets(p: Profile, where: Path, content: bytes) -> None:
    """A ConfigMap is readable by anyone who can read the namespace: no secret may ride in it."""
    from fleetctl.diagnosis.redact import REDACTED, Redactor

    redactor = Redactor(secret_values(p), p.watchdog.redact)
    for n, line in enumerate(content.decode("utf-8", errors="replace").splitlines(), 1):
        # `${VAR}` is how a config reads a secret from the environment: the fix, not the leak.
        # Written as the redaction marker, the redactor leaves it as it is.
        line = _ENV_REFERENCE.sub(REDACTED, line)
        if redactor.redact(line) != line:
            raise FleetError(
                f"{where}: line {n}: looks like a secret, and a ConfigMap is not secret; move the "
                f"value to {p.secrets_file or 'a secrets_file'} and have the agent read it from "
                "its environment, then export again"
            )


def export_fleet(fleet: Fleet, namespace: str | None = None) -> Export:
    """Every agent's manifests plus the kustomization; config files are read from this machine."""
    if namespace is not None and not re.match(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", namespace):
        raise FleetError(f"--namespace: {namespace!r} is not a valid namespace name (lowercase, digits, '-')")
    images = {p.name: image_of(p) for p in fleet.profiles}  # refuse before anything is written
    out = Export(files={})
    for p in sorted(fleet.profiles, key=lambda p: p.name):
        config = read_config(p)
        files = agent_files(p, images[p.name], config, namespace)
        _refuse_secret_values(p, files)
        out.files.update(files)
        if p.secrets_file:
            out.secrets.append(secret_command(p, namespace))
        out.warnings += [f"{p.name}: {line}" for line in mapping.lost(p)]
        out.warnings += [f"{p.name}: {line}" for line in _loopback(p)]
        if p.config.file and config is None:
            out.warnings.append(
                f"{p.name}: config.file: {p.config.file} not found in {p.config_dir}; "
                "exported without a ConfigMap"
            )
    out.files[KUSTOMIZATION] = kustomization(list(out.files), namespace)
    return out


def _loopback(p: Profile) -> list[str]:
    argv = p.kubernetes.command or p.command
    found = [a for a in argv if _LOOPBACK.search(a)]
    if not found:
        return []
    return [
        f"command: {' '.join(found)}: binds loopback, which probes and the Service cannot reach in "
        "a pod; set kubernetes.command to listen on 0.0.0.0"
    ]


# --- the output folder ------------------------------------------------------------------------
def _is_ours(f: Path) -> bool:
    return f.name == KUSTOMIZATION or (f.name.startswith(paths.UNIT_PREFIX) and f.suffix == ".yaml")


def drift(files: dict[str, str], directory: Path) -> list[str]:
    """What differs between `directory` and the exported files (missing, changed, extra)."""
    problems = []
    for name, text in sorted(files.items()):
        f = directory / name
        if not f.exists():
            problems.append(f"{f}: missing")
        elif f.read_text() != text:
            problems.append(f"{f}: differs from what the profiles export")
    for f in sorted(directory.glob("*.yaml")):
        if _is_ours(f) and f.name not in files:
            problems.append(f"{f}: no profile exports it")
    return problems


@dataclass
class ExportResult:
    lines: list[str]
    drift: list[str]
    secrets: list[str]
    warnings: list[str]


def write_export(profiles_dir: Path, output: Path, namespace: str | None, check: bool) -> ExportResult:
    """`fleetctl export kubernetes`: write (or with check, compare) every file; remove stale ones."""
    from fleetctl.common.atomic import remove, write_atomic
    from fleetctl.fleet.profiles import load_fleet

    out = export_fleet(load_fleet(profiles_dir), namespace)
    found = drift(out.files, output) if output.is_dir() else [f"{output}: missing"]
    summary = f"{output}: up to date ({len(out.files)} files)"
    if check:
        return ExportResult(found or [summary], found, out.secrets, out.warnings)
    lines = []
    for name, text in out.files.items():
        f = output / name
        if not f.exists() or f.read_text() != text:
            # The config file's copy keeps the 0600 the config store gives configs.
            write_atomic(f, text, mode=0o600 if name.endswith("-config.yaml") else 0o644)
            lines.append(f"wrote {f}")
    for f in sorted(output.glob("*.yaml")):
        if _is_ours(f) and f.name not in out.files:
            remove(f)
            lines.append(f"removed {f}")
    return ExportResult(lines or [summary], [], out.secrets, out.warnings)
