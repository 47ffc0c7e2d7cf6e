"""The Kubernetes manifests in deploy/kubernetes: valid against the official schemas (strict, so
an unknown or misspelt field fails), and the ClusterRole grants exactly what opsmedic uses."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from kubernetes_validate import utils as kv_utils

from daemon.config import load_settings

ROOT = Path(__file__).parent.parent
MANIFESTS = sorted((ROOT / "deploy" / "kubernetes").glob("*.yaml"))

# A fixed version, so a new kubernetes-validate release cannot change what passes.
# It is the newest the package ships (kubernetes_validate.latest_version() at 1.37.0).
KUBERNETES_VERSION = "1.37.0"

EXPECTED_RULES = [
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "delete"]},
    {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
    {"apiGroups": [""], "resources": ["events"], "verbs": ["list", "create"]},
    {
        "apiGroups": ["apps"],
        "resources": ["deployments", "statefulsets", "daemonsets"],
        "verbs": ["get", "list", "patch"],
    },
    {"apiGroups": ["apps"], "resources": ["replicasets"], "verbs": ["get", "list"]},
    {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["get", "list", "create", "delete"]},
    {"apiGroups": ["batch"], "resources": ["cronjobs"], "verbs": ["get", "list", "patch"]},
]


def documents(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as f:
        return [doc for doc in yaml.safe_load_all(f) if doc is not None]


def find(kind: str, name: str) -> dict[str, Any]:
    found = [
        doc
        for path in MANIFESTS
        for doc in documents(path)
        if doc["kind"] == kind and doc["metadata"]["name"] == name
    ]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def test_the_schema_version_is_shipped() -> None:
    assert KUBERNETES_VERSION in kv_utils.all_versions()


def test_there_are_manifests() -> None:
    assert {p.name for p in MANIFESTS} >= {"rbac.yaml", "opsmedic.yaml"}


@pytest.mark.parametrize("path", MANIFESTS, ids=[p.name for p in MANIFESTS])
def test_manifest_is_valid(path: Path) -> None:
    docs = documents(path)
    assert docs, f"{path.name} has no documents"
    problems = []
    for doc in docs:
        where = f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except (kubernetes_validate.ValidationError, kubernetes_validate.SchemaNotFoundError) as e:
            problems.append(f"{where}: {e}")
    assert not problems, "\n".join(problems)


def test_an_unknown_field_is_rejected() -> None:
    deployment = copy.deepcopy(find("Deployment", "opsmedic"))
    kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container["securityContext"]["readOnlyRootFileSystem"] = True  # misspelt: Filesystem
    with pytest.raises(kubernetes_validate.ValidationError, match="readOnlyRootFileSystem"):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


def test_a_wrong_type_is_rejected() -> None:
    pvc = copy.deepcopy(find("PersistentVolumeClaim", "opsmedic-data"))
    pvc["spec"]["accessModes"] = "ReadWriteOnce"  # must be a list
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(pvc, KUBERNETES_VERSION, strict=True)


def test_cluster_role_grants_exactly_what_opsmedic_uses() -> None:
    rules = find("ClusterRole", "opsmedic")["rules"]
    for rule in rules:
        assert set(rule) == {"apiGroups", "resources", "verbs"}, rule  # no names, no URLs
        for key in ("apiGroups", "resources", "verbs"):
            assert "*" not in rule[key], rule
            assert not any("*" in item for item in rule[key]), rule
    assert rules == EXPECTED_RULES


def test_cluster_role_is_bound_to_the_service_account_the_pod_runs_as() -> None:
    binding = find("ClusterRoleBinding", "opsmedic")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": "opsmedic",
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "opsmedic", "namespace": "opsmedic"}
    ]
    assert find("ServiceAccount", "opsmedic")["metadata"]["namespace"] == "opsmedic"
    deployment = find("Deployment", "opsmedic")
    assert deployment["metadata"]["namespace"] == "opsmedic"
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == "opsmedic"


def test_deployment_runs_one_hardened_writer() -> None:
    deployment = find("Deployment", "opsmedic")
    spec = deployment["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}
    pod = spec["template"]["spec"]
    (container,) = pod["containers"]
    assert container["args"] == ["run", "--config", "/etc/opsmedic/opsmedic.yaml"]
    assert not container["image"].endswith(":latest") and ":" in container["image"]
    security = container["securityContext"]
    assert security["runAsNonRoot"] and pod["securityContext"]["runAsNonRoot"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    assert {"requests", "limits"} <= set(container["resources"])
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: volumes[m["name"]] for m in container["volumeMounts"]}
    assert mounts["/var/lib/opsmedic"]["persistentVolumeClaim"]["claimName"] == "opsmedic-data"
    assert mounts["/var/run/secrets/opsmedic"]["secret"]["secretName"] == "opsmedic-slack"
    assert mounts["/etc/opsmedic"]["configMap"]["name"] == "opsmedic-config"
    assert mounts["/etc/opsmedic/playbooks"]["configMap"] == {
        "name": "opsmedic-playbooks",
        "optional": True,
    }
    pvc = find("PersistentVolumeClaim", "opsmedic-data")
    assert pvc["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert pvc["spec"]["resources"]["requests"]["storage"] == "1Gi"


def test_the_config_map_holds_a_valid_daemon_config(tmp_path: Path) -> None:
    config = tmp_path / "opsmedic.yaml"
    config.write_text(find("ConfigMap", "opsmedic-config")["data"]["opsmedic.yaml"])
    settings = load_settings(config)
    assert settings.playbooks == [Path("/etc/opsmedic/playbooks")]
    assert settings.database == Path("/var/lib/opsmedic/opsmedic.db")
    assert settings.notify.slack.token_file == Path("/var/run/secrets/opsmedic/slack-token")
    assert settings.kubernetes["default"].in_cluster is True
