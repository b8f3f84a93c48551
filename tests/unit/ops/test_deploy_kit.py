"""deploy/: validated as far as this machine allows (no Docker engine, no cluster). Kubernetes
manifests are parsed into the kubernetes client's models and must survive the round trip (a
misspelled or misplaced field is dropped by the models, so it shows); the probes, ports, grace
period and settings must agree with the worker; the KEDA queries and every Grafana panel must
name metrics the worker really exports, and every exported metric must have a panel."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from streamworker.cli import parser as cli
from streamworker.config import WorkerConfig, check_environment
from streamworker.consumer.meters import WorkerMetrics
from streamworker.leases.base import CoordinatorStats
from streamworker.ops.metrics import attach
from streamworker.sources.kinesis.calls import ReaderStats

DEPLOY = Path(__file__).resolve().parents[3] / "deploy"
CORE_MODELS = {"Deployment": "V1Deployment", "Service": "V1Service", "ServiceAccount": "V1ServiceAccount"}


def manifests() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for f in sorted((DEPLOY / "k8s").glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(f.read_text()) if d]
    return docs


def of_kind(kind: str) -> list[dict[str, Any]]:
    return [d for d in manifests() if d["kind"] == kind]


@pytest.mark.parametrize("doc", [d for d in manifests() if d["kind"] in CORE_MODELS], ids=lambda d: d["kind"])
def test_core_manifests_are_what_the_kubernetes_models_read(doc: dict[str, Any]) -> None:
    kubernetes = pytest.importorskip("kubernetes")
    api = kubernetes.client.ApiClient()
    model = api.deserialize(json.dumps(doc), CORE_MODELS[doc["kind"]], "application/json")
    assert api.sanitize_for_serialization(model) == doc  # nothing unknown, nothing misplaced


def exported_metrics() -> set[str]:
    """Every family the worker's registry serves, with every label it can carry."""

    class Consumer:
        label = shard_id = "shard-1"

        class progress:  # noqa: N801
            millis_behind_latest = 5

        class state:  # noqa: N801
            value = "HALTED"

    class View:
        def consumers(self) -> list[Any]:
            return [Consumer()]

        def held_count(self) -> int:
            return 1

        def lease_stats(self) -> CoordinatorStats:
            return CoordinatorStats()

        def kafka_lag(self, c: Any) -> int:
            return 3

        def reader_stats(self) -> ReaderStats:
            return ReaderStats()

    m = WorkerMetrics()
    attach(m, View())  # type: ignore[arg-type]
    return {family.name for family in m.registry.collect()}


def _named(text: str) -> set[str]:
    names = set(re.findall(r"streamworker_[a-z_]+", text))
    return {re.sub(r"_(total|bucket|sum|count)$", "", n) for n in names}


def test_the_dashboard_has_a_panel_for_every_metric_and_names_no_other() -> None:
    dash = json.loads((DEPLOY / "grafana" / "streamworker-dashboard.json").read_text())
    exprs = " ".join(t["expr"] for p in dash["panels"] for t in p["targets"])
    exported = exported_metrics()
    assert len(exported) >= 20
    assert _named(exprs) - exported == set(), "panels query metrics the worker does not export"
    assert exported - _named(exprs) == set(), "metrics without a panel"
    assert all(p["datasource"]["uid"] == "${datasource}" for p in dash["panels"])


def test_keda_scales_on_exported_lag_metrics_of_the_deployment() -> None:
    (scaled,) = of_kind("ScaledObject")
    (deployment,) = of_kind("Deployment")
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    assert scaled["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    queries = [t["metadata"]["query"] for t in scaled["spec"]["triggers"]]
    assert all(t["type"] == "prometheus" for t in scaled["spec"]["triggers"])
    assert set().union(*(_named(q) for q in queries)) == {"streamworker_millis_behind_latest",
                                                          "streamworker_consumer_lag"}
    assert _named(" ".join(queries)) <= exported_metrics()


def test_the_service_monitor_scrapes_the_metrics_port() -> None:
    (monitor,) = of_kind("ServiceMonitor")
    (service,) = of_kind("Service")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["path"] == "/metrics" and endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}


def test_the_deployment_agrees_with_the_worker() -> None:
    (deployment,) = of_kind("Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    check_environment({k: v or "" for k, v in env.items()}, WorkerConfig.model_fields)  # every STREAMWORKER_* names a setting
    port = int(env["STREAMWORKER_METRICS_PORT"])
    assert {p["name"]: p["containerPort"] for p in container["ports"]}["metrics"] == port
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert pod["terminationGracePeriodSeconds"] > float(env["STREAMWORKER_SHUTDOWN_TIMEOUT"])
    assert pod["securityContext"]["runAsNonRoot"] is True
    args, extra = cli.build_parser().parse_known_args(["run", *container["args"]])
    assert not extra and args.processor == "my_app:Totals"
    (account,) = of_kind("ServiceAccount")
    assert pod["serviceAccountName"] == account["metadata"]["name"]


def test_the_dockerfile_is_multi_stage_non_root_and_the_worker_is_pid_1() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    assert sum(ln.startswith("FROM ") for ln in lines) >= 2
    assert any(re.fullmatch(r"COPY --from=build \S+ \S+", ln) for ln in lines)
    user = [ln for ln in lines if ln.startswith("USER ")][-1]
    assert user.split()[1] not in ("root", "0")
    entry = [ln for ln in lines if ln.startswith("ENTRYPOINT ")][-1]
    assert json.loads(entry.removeprefix("ENTRYPOINT ")) == ["streamworker", "run"]  # exec form: no shell as PID 1
    assert "STOPSIGNAL SIGTERM" in lines
    for ln in lines:  # what it copies exists in the repository
        if ln.startswith("COPY ") and "--from" not in ln:
            src = ln.split()[-2]
            assert (DEPLOY.parent / src).exists(), src
