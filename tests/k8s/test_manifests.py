"""The Kubernetes manifests: every overlay renders, validates against the schemas, passes the
security scan, and keeps the invariants the bot relies on."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2] / "k8s"
OVERLAYS = ["dev", "prod"]
K8S_VERSION = "1.30.0"
# Custom resources whose schemas ship with their operators, not with Kubernetes.
CRDS = {("monitoring.coreos.com/v1", "PodMonitor")}


def _tool(name: str) -> str:
    found = Path(sys.executable).parent / name
    path = str(found) if found.exists() else shutil.which(name)
    assert path, f"{name} is missing: install the dev extra (pip install -e '.[dev]')"
    return path


@pytest.fixture(scope="module", params=OVERLAYS)
def rendered(request: pytest.FixtureRequest) -> tuple[str, list[dict[str, Any]]]:
    out = subprocess.run(
        [_tool("kubectl"), "kustomize", str(ROOT / "overlays" / request.param)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return request.param, [d for d in yaml.safe_load_all(out.stdout) if d]


def _find(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    return next(d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name)


def test_every_object_validates_against_the_kubernetes_schemas(
    rendered: tuple[str, list[dict[str, Any]]],
) -> None:
    _, docs = rendered
    checked = 0
    for doc in docs:
        if (doc["apiVersion"], doc["kind"]) in CRDS:
            continue
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        checked += 1
    assert checked >= 7


def test_cluster_count_matches_replicas_and_probes_are_set(
    rendered: tuple[str, list[dict[str, Any]]],
) -> None:
    overlay, docs = rendered
    sts = _find(docs, "StatefulSet", "guildhouse")
    config = _find(docs, "ConfigMap", "guildhouse-config")
    assert int(config["data"]["CLUSTER_COUNT"]) == sts["spec"]["replicas"], overlay
    pod = sts["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    env = {e["name"]: e for e in container["env"]}
    assert env["CLUSTER_ID"]["valueFrom"]["fieldRef"]["fieldPath"].endswith("pod-index']")
    for secret in ("DISCORD_TOKEN", "DATABASE_URL", "REDIS_URL"):
        assert "secretKeyRef" in env[secret]["valueFrom"]
    # The graceful shutdown (15 s drain + 25 s worker grace) fits the pod's grace period.
    assert pod["terminationGracePeriodSeconds"] >= 40
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["securityContext"]["runAsNonRoot"] is True
    annotations = sts["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert {d["kind"] for d in docs} >= {"PodDisruptionBudget", "Job", "PodMonitor", "Service"}
    assert all(
        d["metadata"].get("namespace") != "default" for d in docs if d["kind"] != "Namespace"
    )


def test_security_scan_passes() -> None:
    done = subprocess.run(
        [
            _tool("checkov"),
            "--config-file",
            str(ROOT / ".checkov.yaml"),
            "-d",
            str(ROOT),
            "--quiet",
            "--compact",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stdout[-4000:]
