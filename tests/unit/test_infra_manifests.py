"""infra/: Kubernetes manifests parsed and checked field by field (no cluster here), the Dockerfile, and the
local service scripts (syntax, and the safety of `down` without any service running)."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import ray
import yaml

from groprompt.config import load_config
from tests.helpers import REPO_ROOT

INFRA = REPO_ROOT / "infra"
MANIFESTS = sorted(p for p in INFRA.rglob("*") if p.suffix in (".yaml", ".yml"))
SCRIPTS = sorted(INFRA.rglob("*.sh"))
GPU = "nvidia.com/gpu"


def documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def all_documents() -> list[tuple[Path, dict[str, Any]]]:
    return [(path, doc) for path in MANIFESTS for doc in documents(path)]


def of_kind(kind: str) -> list[dict[str, Any]]:
    return [doc for _, doc in all_documents() if doc["kind"] == kind]


def ray_cluster_specs() -> list[tuple[str, dict[str, Any]]]:
    """Every RayCluster spec: the RayClusters' and those embedded in RayJobs."""
    specs = [(doc["metadata"]["name"], doc["spec"]) for doc in of_kind("RayCluster")]
    specs += [(doc["metadata"]["name"], doc["spec"]["rayClusterSpec"]) for doc in of_kind("RayJob") if "rayClusterSpec" in doc["spec"]]
    return specs


def containers(pod_template: dict[str, Any]) -> list[dict[str, Any]]:
    return pod_template["spec"]["containers"]


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {item["name"]: item.get("value", item.get("valueFrom")) for item in container.get("env", [])}


def mlflow_service_url() -> str:
    (service,) = [doc for doc in of_kind("Service") if doc["metadata"]["name"] == "mlflow"]
    port = service["spec"]["ports"][0]["port"]
    return f"http://mlflow.{service['metadata']['namespace']}.svc.cluster.local:{port}"


def dockerfile_workdir() -> str:
    return re.search(r"^WORKDIR\s+(\S+)", (INFRA / "docker" / "Dockerfile").read_text(), re.M).group(1)


def parse_entrypoint(entrypoint: str) -> tuple[str, list[str], list[str], dict[str, str]]:
    """(script, --config files, dotted overrides, other options) of `python pipelines/X.py ...`."""
    tokens = shlex.split(entrypoint)
    assert tokens[0] == "python" and tokens[1].startswith("pipelines/"), entrypoint
    configs, overrides, options, index = [], [], {}, 2
    while index < len(tokens):
        token = tokens[index]
        if token == "--config":
            configs.append(tokens[index + 1])
            index += 2
        elif token.startswith("--"):
            flag = index + 1 >= len(tokens) or tokens[index + 1].startswith("--")
            options[token] = "" if flag else tokens[index + 1]
            index += 1 if flag else 2
        else:
            overrides.append(token)
            index += 1
    return tokens[1], configs, overrides, options


def test_there_are_manifests_and_each_parses_with_a_kind() -> None:
    names = {path.relative_to(INFRA).as_posix() for path in MANIFESTS}
    assert {
        "kuberay/raycluster.yaml",
        "kuberay/rayjob-train.yaml",
        "kuberay/rayjob-sweep.yaml",
        "kuberay/rayjob-infer.yaml",
        "kuberay/storage.yaml",
        "mlflow/mlflow.yaml",
        "mlflow/postgres.yaml",
    } <= names
    for path, doc in all_documents():
        assert doc.get("apiVersion") and doc.get("kind"), path
        if doc["kind"] != "Namespace":
            assert doc["metadata"].get("namespace") == "groprompt", (path, doc["metadata"])


def test_ray_resources_use_ray_io_v1_and_the_installed_ray_version() -> None:
    ray_docs = [doc for _, doc in all_documents() if doc["kind"] in ("RayCluster", "RayJob")]
    assert {doc["kind"] for doc in ray_docs} == {"RayCluster", "RayJob"}
    assert all(doc["apiVersion"] == "ray.io/v1" for doc in ray_docs)
    for name, spec in ray_cluster_specs():
        assert spec["rayVersion"] == ray.__version__, name


def test_token_authentication_stays_on_in_every_cluster() -> None:
    specs = ray_cluster_specs()
    assert specs
    for name, spec in specs:
        assert spec.get("authOptions", {}).get("mode") == "token", name
        for template in [spec["headGroupSpec"]["template"]] + [g["template"] for g in spec.get("workerGroupSpecs", [])]:
            for container in containers(template):
                assert env_of(container).get("RAY_AUTH_MODE", "token") != "disabled", name


def test_head_is_cpu_only_and_a_worker_group_has_gpus() -> None:
    (cluster,) = of_kind("RayCluster")
    head = containers(cluster["spec"]["headGroupSpec"]["template"])[0]
    assert head["resources"]["limits"]["cpu"] and GPU not in head["resources"]["limits"]
    assert cluster["spec"]["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"  # no tasks on the head
    gpu_groups = [g for g in cluster["spec"]["workerGroupSpecs"] if GPU in containers(g["template"])[0]["resources"]["limits"]]
    assert gpu_groups, "no GPU worker group"
    for group in gpu_groups:
        limits = containers(group["template"])[0]["resources"]["limits"]
        assert int(limits[GPU]) >= 1 and group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
        assert any(t.get("key") == GPU for t in group["template"]["spec"].get("tolerations", []))
    train = next(doc for doc in of_kind("RayJob") if doc["metadata"]["name"] == "groprompt-train")
    assert any(GPU in containers(g["template"])[0]["resources"]["limits"] for g in train["spec"]["rayClusterSpec"]["workerGroupSpecs"])


S3_SECRET = "groprompt-s3"


def test_ray_pods_use_the_project_images_see_mlflow_and_read_the_bucket() -> None:
    """Every Ray pod reads the bucket with the credentials Secret and mounts no shared volume; the ReadWriteMany claim
    is there, optional, for what is not read from a bucket yet."""
    url = mlflow_service_url()
    (claim,) = of_kind("PersistentVolumeClaim")
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    for name, spec in ray_cluster_specs():
        for template in [spec["headGroupSpec"]["template"]] + [g["template"] for g in spec.get("workerGroupSpecs", [])]:
            container = containers(template)[0]
            image = container["image"]
            assert re.search(r"/groprompt:[\w.-]+$", image) and not image.endswith(":latest"), (name, image)
            gpu = GPU in container.get("resources", {}).get("limits", {})
            assert image.endswith("-gpu") == gpu, (name, image)  # CUDA torch only where there are GPUs
            assert env_of(container).get("MLFLOW_TRACKING_URI") == url, name
            volumes = template["spec"].get("volumes", [])
            claims = {v["persistentVolumeClaim"]["claimName"] for v in volumes if "persistentVolumeClaim" in v}
            secrets = {source["secretRef"]["name"] for source in container.get("envFrom", []) if "secretRef" in source}
            assert not claims and secrets == {S3_SECRET}, name


@pytest.mark.parametrize("job", ["groprompt-train", "groprompt-sweep", "groprompt-infer"])
def test_rayjob_entrypoints_run_existing_scripts_with_valid_configurations(job: str) -> None:
    (doc,) = [d for d in of_kind("RayJob") if d["metadata"]["name"] == job]
    spec = doc["spec"]
    script, configs, overrides, options = parse_entrypoint(spec["entrypoint"])
    assert (REPO_ROOT / script).is_file(), script
    assert script == f"pipelines/{job.removeprefix('groprompt-')}.py"
    assert configs and all((REPO_ROOT / config).is_file() for config in configs), configs
    config = load_config([REPO_ROOT / c for c in configs], overrides)  # unknown keys raise
    # Paths on storage every node sees: the bucket.
    if job == "groprompt-infer":
        paths = [options["--videos"], options["--queries"], options["--out"]]
    else:
        paths = [config.data.shards, config.data.embeddings, config.train.storage_path]
    if config.model.sam_checkpoint:
        paths.append(config.model.sam_checkpoint)
    assert all(path.startswith("s3://groprompt/") for path in paths), paths
    if job == "groprompt-train":
        assert config.train.use_gpu and config.train.num_workers >= 1
    runtime_env = yaml.safe_load(spec["runtimeEnvYAML"])
    assert runtime_env["env_vars"]["MLFLOW_TRACKING_URI"] == mlflow_service_url()
    assert runtime_env["working_dir"] == dockerfile_workdir()
    assert isinstance(spec["shutdownAfterJobFinishes"], bool)
    assert ("rayClusterSpec" in spec) != ("clusterSelector" in spec), "exactly one of rayClusterSpec / clusterSelector"
    if "clusterSelector" in spec:
        assert spec["clusterSelector"]["ray.io/cluster"] in {d["metadata"]["name"] for d in of_kind("RayCluster")}
        assert spec["shutdownAfterJobFinishes"] is False  # KubeRay does not tear down a cluster it did not make
    else:
        assert spec["shutdownAfterJobFinishes"] is True


def test_dockerfile_builds_on_the_matching_ray_image_with_the_constraints() -> None:
    text = (INFRA / "docker" / "Dockerfile").read_text()
    assert f"ARG BASE_IMAGE=rayproject/ray:{ray.__version__}-py311\n" in text
    assert f"py{sys.version_info.major}{sys.version_info.minor}" == "py311"
    assert "-c constraints.txt" in text and re.search(r"^COPY .*constraints\.txt", text, re.M)
    for folder in ("groprompt", "pipelines", "conf"):
        assert re.search(rf"^COPY .*\b{folder} ", text, re.M), folder
    assert (INFRA / "docker" / "Dockerfile.dockerignore").is_file()


def test_mlflow_server_uses_postgres_s3_and_a_health_probe() -> None:
    (deployment,) = [d for d in of_kind("Deployment") if d["metadata"]["name"] == "mlflow"]
    (container,) = containers(deployment["spec"]["template"])
    args = container["args"]
    assert args[0] == "server" and "--host=0.0.0.0" in args and "--serve-artifacts" in args
    assert any(a.startswith("--artifacts-destination=s3://") for a in args)
    env = env_of(container)
    assert env["MLFLOW_BACKEND_STORE_URI"].startswith("postgresql")
    assert env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"
    assert urlparse(env["MLFLOW_S3_ENDPOINT_URL"]).scheme in ("http", "https")
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "POSTGRES_PASSWORD"):
        assert "secretKeyRef" in env[key], key  # credentials only from Secrets
    assert container["readinessProbe"]["httpGet"]["path"] == "/health"
    # The in-cluster tracking URI's Host header passes MLflow's --allowed-hosts check.
    host = urlparse(mlflow_service_url()).netloc
    allowed = next(a for a in args if a.startswith("--allowed-hosts=")).split("=", 1)[1].split(",")
    assert host in allowed
    (service,) = [d for d in of_kind("Service") if d["metadata"]["name"] == "mlflow"]
    assert service["spec"]["selector"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    (postgres,) = of_kind("StatefulSet")
    assert "mlflow-postgres" in env["MLFLOW_BACKEND_STORE_URI"] and postgres["metadata"]["name"] == "mlflow-postgres"
    assert all(not isinstance(doc.get("data"), dict) for doc in of_kind("Secret"))  # no committed secrets


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.relative_to(INFRA).as_posix())
def test_scripts_are_strict_bash(script: Path) -> None:
    text = script.read_text()
    assert text.startswith("#!/usr/bin/env bash\n") and "set -euo pipefail" in text
    assert os.access(script, os.X_OK)
    subprocess.run(["bash", "-n", str(script)], check=True)


def test_local_services_bind_loopback_and_never_stop_by_name() -> None:
    text = (INFRA / "local" / "services.sh").read_text()
    code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    assert "HOST=127.0.0.1" in code and "0.0.0.0" not in code
    assert '--dashboard-host="$HOST"' in code and '--host "$HOST"' in code
    assert "RAY_AUTH_MODE=token" in code
    for forbidden in ("pkill", "killall", "ray stop", 'ray" stop'):
        assert forbidden not in code, forbidden


def test_down_and_status_without_services_and_a_stale_pid_is_left_alone(tmp_path: Path) -> None:
    env = {**os.environ, "GROPROMPT_SERVICES_DIR": str(tmp_path), "GROPROMPT_VENV": sys.prefix}
    script = str(INFRA / "local" / "services.sh")
    status = subprocess.run(["bash", script, "status"], env=env, capture_output=True, text=True)
    assert status.returncode == 1 and "not running" in status.stdout
    # A recorded PID that is no longer the service (here: this pytest process) is never signalled.
    (tmp_path / "ray").mkdir(exist_ok=True)
    (tmp_path / "ray" / "head.pid").write_text(str(os.getpid()))
    down = subprocess.run(["bash", script, "down"], env=env, capture_output=True, text=True)
    assert down.returncode == 0, down.stderr
    assert "stale PID" in down.stdout and not (tmp_path / "ray" / "head.pid").exists()
    again = subprocess.run(["bash", script, "down"], env=env, capture_output=True, text=True)
    assert again.returncode == 0 and "not running" in again.stdout
    bad = subprocess.run(["bash", script, "up", "everything"], env=env, capture_output=True, text=True)
    assert bad.returncode == 1 and "unknown service" in bad.stderr
