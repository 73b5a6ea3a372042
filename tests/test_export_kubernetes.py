"""`fleetctl export kubernetes`: golden manifests, offline schema validation, secrets kept out."""

from __future__ import annotations

import os
import re
import shutil
import string
import tempfile
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fleetctl.cli import main
from fleetctl.common.errors import FleetError
from fleetctl.export import mapping
from fleetctl.export.kubernetes import (
    KUSTOMIZATION,
    cpu_quantity,
    export_fleet,
    memory_quantity,
)
from fleetctl.fleet import schema
from fleetctl.fleet.profiles import load_fleet

ROOT = Path(__file__).parent.parent
GOLDEN = Path(__file__).parent / "golden" / "kubernetes-openclaw"
EXAMPLE = ROOT / "export" / "kubernetes"
DOC = ROOT / "docs" / "kubernetes.md"

# The current minor version kubernetes-validate ships, and the one before it.
LATEST = kubernetes_validate.latest_version()
_major, _minor = LATEST.split(".")[:2]
VERSIONS = (LATEST, f"{_major}.{int(_minor) - 1}")
# Kubernetes' resource.Quantity grammar (the OpenAPI schema only says "string").
QUANTITY = re.compile(r"^([0-9]+(\.[0-9]*)?|\.[0-9]+)(Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E)?$")

OPENCLAW_FLEET_TOML = """\
[defaults.kubernetes]
image = "ghcr.io/openclaw/openclaw:2026.9.6"
# In a pod the gateway must listen on the pod's address, not loopback.
command = ["openclaw", "--profile", "{name}", "gateway", "run", "--port", "{port}", "--bind", "lan"]
"""
OPENCLAW_CONFIG = '{\n  // the gateway\n  gateway: { mode: "local", port: 48620 },\n}\n'
SECRET = "sk-proj-0123456789abcdefghijklmnop"


def openclaw_fleet(tmp_path: Path, home: Path, config: str = OPENCLAW_CONFIG) -> Path:
    d = tmp_path / "oc"
    d.mkdir(exist_ok=True)
    shutil.copy(ROOT / "profiles" / "examples" / "openclaw.toml", d / "gateway.toml")
    (d / "fleet.toml").write_text(OPENCLAW_FLEET_TOML)
    (home / ".openclaw-gateway").mkdir(exist_ok=True)
    (home / ".openclaw-gateway" / "openclaw.json").write_text(config)
    secrets = home / ".config" / "fleetctl" / "secrets"
    secrets.mkdir(parents=True, exist_ok=True)
    (secrets / "gateway.env").write_text(f"OPENAI_API_KEY={SECRET}\nGATEWAY_TOKEN=tok-9f8e7d6c5b4a\n")
    return d


def objects(files: dict[str, str]) -> list[dict[str, Any]]:
    return [o for name, text in sorted(files.items()) for o in yaml.safe_load_all(text) if o]


def validate_all(files: dict[str, str]) -> None:
    for obj in objects(files):
        if obj["kind"] == "Kustomization":
            assert set(obj) <= {"apiVersion", "kind", "resources", "namespace"}
            assert all(r in files for r in obj["resources"])
            continue
        for version in VERSIONS:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.ValidationError as e:
                pytest.fail(f"{obj['kind']} {obj['metadata']['name']} invalid for {version}: {e.message}")


# --- golden and checked-in -------------------------------------------------------------------
def test_checked_in_example_matches_profiles(home: Path) -> None:
    result = CliRunner().invoke(
        main, ["export", "kubernetes", str(ROOT / "profiles"), "-o", str(EXAMPLE), "--check"]
    )
    assert result.exit_code == 0, result.output


def test_openclaw_golden(tmp_path: Path, home: Path) -> None:
    files = export_fleet(load_fleet(openclaw_fleet(tmp_path, home)), namespace="agents").files
    if os.environ.get("FLEETCTL_UPDATE_GOLDEN"):
        shutil.rmtree(GOLDEN, ignore_errors=True)
        GOLDEN.mkdir(parents=True)
        for name, text in files.items():
            (GOLDEN / name).write_text(text)
    assert sorted(files) == sorted(f.name for f in GOLDEN.iterdir())
    for name, text in files.items():
        assert text == (GOLDEN / name).read_text(), name


def test_every_manifest_validates_against_the_kubernetes_schemas(tmp_path: Path, home: Path) -> None:
    validate_all({f.name: f.read_text() for f in EXAMPLE.glob("*.yaml")})
    validate_all(export_fleet(load_fleet(openclaw_fleet(tmp_path, home)), namespace="agents").files)


def test_deployment_carries_the_profile(tmp_path: Path, home: Path) -> None:
    files = export_fleet(load_fleet(openclaw_fleet(tmp_path, home))).files
    dep = yaml.safe_load(files["fleet-gateway-deployment.yaml"])
    pod = dep["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert dep["spec"]["replicas"] == 1 and dep["spec"]["strategy"] == {"type": "Recreate"}
    assert c["command"][-2:] == ["--bind", "lan"] and "48620" in c["command"]
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    startup = c["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 45  # health.startup_grace
    assert c["livenessProbe"]["timeoutSeconds"] == 3
    assert c["resources"]["limits"] == {"memory": "1536Mi"}
    assert c["envFrom"] == [{"secretRef": {"name": "fleet-gateway-secrets"}}]
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["terminationGracePeriodSeconds"] == 330  # restart.stop_timeout: OpenClaw's drain
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    assert mounts["/home/agent/.openclaw-gateway/openclaw.json"]["readOnly"] is True
    assert mounts["/home/agent/.openclaw-gateway/workspace"]["name"] == "state"
    head = files["fleet-gateway-deployment.yaml"].split("apiVersion:")[0]
    assert "restart.bad_config_exit_statuses = [78]" in head and "no equivalent" in head
    assert "--from-env-file=" in head


def test_sandbox_off_leaves_the_root_writable(tmp_path: Path, home: Path) -> None:
    d = openclaw_fleet(tmp_path, home)
    (d / "gateway.toml").write_text(
        (d / "gateway.toml").read_text().replace("[sandbox]\n", "[sandbox]\nenabled = false\n")
    )
    dep = yaml.safe_load(export_fleet(load_fleet(d)).files["fleet-gateway-deployment.yaml"])
    ctx = dep["spec"]["template"]["spec"]["containers"][0]["securityContext"]
    assert ctx["readOnlyRootFilesystem"] is False and ctx["allowPrivilegeEscalation"] is False


# --- secrets ---------------------------------------------------------------------------------
def test_no_secret_value_in_any_exported_file(tmp_path: Path, home: Path) -> None:
    out = tmp_path / "out"
    result = CliRunner().invoke(
        main, ["export", "kubernetes", str(openclaw_fleet(tmp_path, home)), "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert (
        'kubectl create secret generic fleet-gateway-secrets --from-env-file="$HOME/.config/'
        'fleetctl/secrets/gateway.env"' in result.output
    )
    # kompose-style: every key the profile sets that Kubernetes cannot keep is named.
    for key in ("restart.bad_config_exit_statuses", "restart.success_exit_statuses", "restart.kill_mode"):
        assert f"fleetctl: warning: gateway: {key} = " in result.output
    written = [f for f in out.iterdir()]
    assert len(written) == 5
    for f in written:
        text = f.read_text()
        assert SECRET not in text and "tok-9f8e7d6c5b4a" not in text, f
    assert SECRET not in result.output


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=st.text(string.ascii_letters + string.digits + "-_./+=", min_size=8, max_size=40))
def test_a_secret_in_the_config_file_is_refused(tmp_path: Path, home: Path, value: str) -> None:
    d = openclaw_fleet(tmp_path, home)
    (home / ".config/fleetctl/secrets/gateway.env").write_text(f"SOME_VALUE={value}\n")
    (home / ".openclaw-gateway/openclaw.json").write_text(f'{{\n  gateway: {{ key: "{value}" }},\n}}\n')
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["export", "kubernetes", str(d), "-o", str(out)])
    assert result.exit_code == 1
    assert "openclaw.json: line 2: looks like a secret" in result.output
    assert value not in result.output and not out.exists()


def test_a_token_shaped_config_value_is_refused_without_a_secrets_file(tmp_path: Path, home: Path) -> None:
    d = openclaw_fleet(tmp_path, home, config='{ auth: { token: "abc123def456" } }\n')
    with pytest.raises(FleetError, match="looks like a secret"):
        export_fleet(load_fleet(d))


def test_an_environment_reference_in_the_config_file_is_no_secret(tmp_path: Path, home: Path) -> None:
    config = '{ auth: { token: "${GATEWAY_TOKEN}" }, models: { key: "${OPENAI_API_KEY}" } }\n'
    d = openclaw_fleet(tmp_path, home, config=config)
    files = export_fleet(load_fleet(d)).files
    assert "${GATEWAY_TOKEN}" in files["fleet-gateway-config.yaml"]


def test_a_secret_value_in_the_profile_environment_is_refused(tmp_path: Path, home: Path) -> None:
    d = openclaw_fleet(tmp_path, home)
    profile = d / "gateway.toml"
    profile.write_text(
        profile.read_text().replace("[environment]\n", f'[environment]\nUPSTREAM = "{SECRET}"\n')
    )
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["export", "kubernetes", str(d), "-o", str(out)])
    assert result.exit_code == 1, result.output
    assert "would be written into fleet-gateway-deployment.yaml" in result.output
    assert SECRET not in result.output and not out.exists()


# --- config → ConfigMap ----------------------------------------------------------------------
def test_a_config_change_renames_the_configmap_and_rolls_the_deployment(tmp_path: Path, home: Path) -> None:
    fleet = load_fleet(openclaw_fleet(tmp_path, home))

    def export(text: str) -> tuple[str, dict[str, Any], dict[str, str]]:
        (home / ".openclaw-gateway" / "openclaw.json").write_text(text)
        files = export_fleet(fleet).files
        cm = yaml.safe_load(files["fleet-gateway-config.yaml"])
        dep = yaml.safe_load(files["fleet-gateway-deployment.yaml"])
        return cm["metadata"]["name"], dep, files

    old_name, old_dep, _ = export(OPENCLAW_CONFIG)
    new_name, new_dep, files = export(OPENCLAW_CONFIG.replace("local", "remote"))
    assert old_name != new_name and old_name.startswith("fleet-gateway-config-")
    refs = [
        v["configMap"]["name"] for v in new_dep["spec"]["template"]["spec"]["volumes"] if "configMap" in v
    ]
    assert refs == [new_name]
    assert old_name not in files["fleet-gateway-deployment.yaml"]
    assert yaml.safe_load(files["fleet-gateway-config.yaml"])["data"]["openclaw.json"].count("remote") == 1
    assert export(OPENCLAW_CONFIG)[0] == old_name  # same content, same name: deterministic


def test_an_invalid_config_file_is_refused(tmp_path: Path, home: Path) -> None:
    d = openclaw_fleet(tmp_path, home, config="{ gateway: { mode: 'local' }\n")
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["export", "kubernetes", str(d), "-o", str(out)])
    assert result.exit_code != 0 and "openclaw.json" in result.output and "line" in result.output
    assert "Traceback" not in result.output and not out.exists()


def test_missing_config_file_exports_without_configmap_and_warns(tmp_path: Path, home: Path) -> None:
    d = openclaw_fleet(tmp_path, home)
    (home / ".openclaw-gateway" / "openclaw.json").unlink()
    out = export_fleet(load_fleet(d))
    assert "fleet-gateway-config.yaml" not in out.files
    assert any("openclaw.json not found" in w for w in out.warnings)


# --- refusals and --check --------------------------------------------------------------------
def test_no_image_is_refused_and_nothing_written(tmp_path: Path, home: Path) -> None:
    d = openclaw_fleet(tmp_path, home)
    (d / "fleet.toml").unlink()
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["export", "kubernetes", str(d), "-o", str(out)])
    assert result.exit_code == 1
    assert "gateway.toml: kubernetes.image: not set" in result.output and "Traceback" not in result.output
    assert not out.exists()


def test_bad_namespace_is_refused(tmp_path: Path, home: Path) -> None:
    result = CliRunner().invoke(main, ["export", "kubernetes", str(ROOT / "profiles"), "-n", "Bad_NS"])
    assert result.exit_code == 1 and "--namespace: 'Bad_NS'" in result.output


def test_check_detects_drift_and_stale_files(tmp_path: Path, home: Path) -> None:
    out = tmp_path / "k8s"
    shutil.copytree(EXAMPLE, out)
    args = ["export", "kubernetes", str(ROOT / "profiles"), "-o", str(out)]
    runner = CliRunner()
    assert runner.invoke(main, [*args, "--check"]).exit_code == 0
    dep = out / "fleet-coder-deployment.yaml"
    dep.write_text(dep.read_text().replace("replicas: 1", "replicas: 2"))
    (out / "fleet-ghost-service.yaml").write_text("kind: Service\n")
    result = runner.invoke(main, [*args, "--check"])
    assert result.exit_code == 1
    assert "fleet-coder-deployment.yaml: differs" in result.output
    assert "fleet-ghost-service.yaml: no profile exports it" in result.output
    assert runner.invoke(main, args).exit_code == 0  # writing repairs both
    assert runner.invoke(main, [*args, "--check"]).exit_code == 0
    assert not (out / "fleet-ghost-service.yaml").exists()


def test_namespace_goes_on_every_object_and_the_kustomization(tmp_path: Path, home: Path) -> None:
    files = export_fleet(load_fleet(openclaw_fleet(tmp_path, home)), namespace="agents").files
    assert all(o.get("metadata", {}).get("namespace", "agents") == "agents" for o in objects(files))
    assert yaml.safe_load(files[KUSTOMIZATION])["namespace"] == "agents"


# --- conversions and generated profiles -------------------------------------------------------
@given(st.integers(1, 6400))
def test_cpu_quota_becomes_a_cpu_limit(percent: int) -> None:
    q = cpu_quantity(f"{percent}%")
    assert QUANTITY.match(q)
    assert (int(q[:-1]) if q.endswith("m") else int(q) * 1000) == percent * 10


@given(st.from_regex(schema.SIZE, fullmatch=True))
def test_sizes_become_quantities(size: str) -> None:
    q = memory_quantity(size)
    assert QUANTITY.match(q), q


_names = st.from_regex(r"[a-z][a-z0-9-]{0,20}[a-z0-9]", fullmatch=True)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    name=_names,
    port=st.integers(1024, 65535),
    memory=st.from_regex(r"[1-9][0-9]{0,3}[KMG]", fullmatch=True),
    cpu=st.integers(1, 800),
    timeout=st.floats(0.1, 30),
    grace=st.floats(0.5, 600),
    sandbox=st.booleans(),
    env=st.dictionaries(
        st.from_regex(r"[A-Z][A-Z0-9_]{0,10}", fullmatch=True).filter(
            lambda k: not schema.SECRETISH.search(k)
        ),
        st.text(string.printable.replace("\n", "").replace("\r", "").replace("\x0b", "").replace("\x0c", "")),
        max_size=3,
    ),
)
def test_generated_profiles_export_valid_manifests(
    tmp_path: Path,
    home: Path,
    name: str,
    port: int,
    memory: str,
    cpu: int,
    timeout: float,
    grace: float,
    sandbox: bool,
    env: dict[str, str],
) -> None:
    import tomli_w

    d = Path(tempfile.mkdtemp(dir=tmp_path))
    profile = {
        "command": ["{python}", "-m", "fleetctl.demo_agent", "--port", "{port}", "$(NOT_EXPANDED)"],
        "port": port,
        "environment": env,
        "secrets_file": "~/.config/fleetctl/secrets/{name}.env",
        "health": {"timeout": timeout, "startup_grace": grace, "ready_path": "/ready"},
        "resources": {"memory_max": memory, "cpu_quota": f"{cpu}%"},
        "sandbox": {"enabled": sandbox, "read_write_paths": ["~/cache", "/var/tmp/x"]},
        "config": {"file": "etc/c.json"},
        "kubernetes": {"image": "example/agent:1"},
    }
    (d / f"{name}.toml").write_text(tomli_w.dumps(profile))
    config = home / "agents" / name / "config" / "etc" / "c.json"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text('{"model": "small"}\n')
    files = export_fleet(load_fleet(d)).files
    assert f"fleet-{name}-config.yaml" in files
    validate_all(files)
    (c,) = yaml.safe_load(files[f"fleet-{name}-deployment.yaml"])["spec"]["template"]["spec"]["containers"]
    assert c["command"][-1] == "$$(NOT_EXPANDED)"
    assert QUANTITY.match(c["resources"]["limits"]["memory"]) and QUANTITY.match(
        c["resources"]["limits"]["cpu"]
    )
    assert c["startupProbe"]["periodSeconds"] * c["startupProbe"]["failureThreshold"] >= grace


# --- docs --------------------------------------------------------------------------------------
def test_mapping_table_lists_every_schema_key_and_the_docs_carry_it() -> None:
    assert list(mapping.PROFILE_KEYS) == [s.key for s in schema.SETTINGS]
    assert list(mapping.FLEET_KEYS) == [s.key for s in schema.FLEET_SETTINGS]
    text = DOC.read_text()
    assert mapping.markdown_table(mapping.PROFILE_KEYS) in text
    assert mapping.markdown_table(mapping.FLEET_KEYS) in text


def test_a_command_that_binds_loopback_is_named(tmp_path: Path, home: Path) -> None:
    d = openclaw_fleet(tmp_path, home)
    (d / "fleet.toml").write_text('[defaults.kubernetes]\nimage = "ghcr.io/openclaw/openclaw:2026.9.6"\n')
    warnings = export_fleet(load_fleet(d)).warnings
    assert any(w.startswith("gateway: command: loopback: binds loopback") for w in warnings), warnings
    assert not any(
        "binds loopback" in w for w in export_fleet(load_fleet(openclaw_fleet(tmp_path, home))).warnings
    )
