"""The container image, the compose stack and the Kubernetes manifests are valid and consistent."""

from __future__ import annotations

import copy
import importlib.util
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_DIR = ROOT / "deploy" / "compose"
K8S = ROOT / "deploy" / "kubernetes"
CRDS = {"ServiceMonitor", "PrometheusRule"}  # not in kubernetes-validate's core schemas
NAME = "alvaria-emailqueue-exporter"

# SPEC §2: the settings the exporter documents; each is ALVARIA_<NAME>, secrets also <NAME>_FILE.
TARGET_SETTINGS = {
    "org_id", "api_key", "client_id", "client_secret", "access_token", "region", "token_url",
    "token_realm", "token_auth_method", "scope", "api_url", "extended_info", "email_type", "work_type_ids",
    "states",
}  # fmt: skip
SECRETS = {"api_key", "client_secret", "access_token"}
GLOBAL_SETTINGS = {
    "listen_address", "poll_interval", "page_size", "max_concurrency", "request_timeout",
    "max_retries", "stale_after", "series_ttl", "waiting_states", "age_buckets",
    "max_work_types", "agent_metrics", "log_level", "log_format", "config_file",
    "web_config_file", "shard", "total_shards", "max_requests_per_second",
}  # fmt: skip
SIMULATOR_SETTINGS = {
    "listen_address", "scenario", "seed", "speed", "page_cap", "org_id", "client_id",
    "client_secret", "api_key", "strict_realm",
}  # fmt: skip
FILE_KEYS = {f"{name}_file" for name in SECRETS}
DOCUMENTED_ENV = {
    f"ALVARIA_{name.upper()}" for name in TARGET_SETTINGS | GLOBAL_SETTINGS | FILE_KEYS
} | {f"ALVARIA_SIM_{name.upper()}" for name in SIMULATOR_SETTINGS}


def _tool(name: str) -> str:
    venv_bin = Path(sys.executable).parent / name
    found = str(venv_bin) if venv_bin.exists() else shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed (make venv / make system-deps installs it)")
    return found


def _run(args: list[str]) -> subprocess.CompletedProcess[str]:
    # Fixed tool paths and repository files only: no untrusted input reaches the command line.
    return subprocess.run(args, capture_output=True, text=True, check=False)  # noqa: S603


def _load_all(path: Path) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc is not None]


# --- Dockerfile ----------------------------------------------------------------------------------


def test_dockerfile_is_hadolint_clean() -> None:
    result = _run([_tool("hadolint"), "--failure-threshold", "style", str(ROOT / "Dockerfile")])
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_runs_as_numeric_non_root_user_with_healthcheck() -> None:
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert re.search(r"^USER [1-9]\d*:[1-9]\d*$", text, re.M)
    assert re.search(r"^EXPOSE 9654$", text, re.M)
    assert "/healthz" in text.split("HEALTHCHECK", 1)[1]
    assert 'ENTRYPOINT ["alvaria-emailqueue-exporter"]' in text
    assert "PYTHONDONTWRITEBYTECODE=1" in text
    assert "org.opencontainers.image.source" in text or "org.opencontainers.image.title" in text


def test_dockerignore_lets_every_copied_path_through() -> None:
    allowed = {
        line[1:].rstrip("/")
        for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.startswith("!")
    }
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    sources = [
        src
        for line in re.findall(r"^COPY (?!--from)(.+)$", text, re.M)
        for src in line.split()[:-1]
    ]
    assert sources
    for src in sources:
        assert src in allowed, f"{src} is copied but excluded by .dockerignore"
        assert (ROOT / src).exists(), f"{src} is copied but missing"


# --- compose -------------------------------------------------------------------------------------


def _compose() -> dict[str, Any]:
    doc = yaml.safe_load((COMPOSE_DIR / "docker-compose.yml").read_text(encoding="utf-8"))
    assert isinstance(doc, dict)
    return doc


def _bind_mounts(service: dict[str, Any]) -> Iterator[tuple[str, str]]:
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source, target = volume.split(":")[:2]
        else:
            source, target = volume.get("source", ""), volume["target"]
        if source.startswith((".", "/")):
            yield source, target


def test_every_compose_host_path_exists() -> None:
    paths = []
    for service in _compose()["services"].values():
        paths += [source for source, _ in _bind_mounts(service)]
        build = service.get("build")
        if build:
            context = COMPOSE_DIR / build["context"]
            paths += [build["context"], str((context / build["dockerfile"]).relative_to(ROOT))]
        paths += service.get("env_file", [])
    assert paths
    missing = [p for p in paths if not (COMPOSE_DIR / p).exists() and not (ROOT / p).exists()]
    assert not missing, f"compose mounts paths that do not exist: {missing}"


def test_compose_exporter_env_is_documented() -> None:
    services = _compose()["services"]
    for name in ("exporter", "simulator"):
        env = services[name].get("environment", {})
        undocumented = set(env) - DOCUMENTED_ENV
        assert not undocumented, f"{name}: {undocumented}"
    assert services["exporter"]["environment"]["ALVARIA_API_URL"] == "http://simulator:8080"


def test_compose_prometheus_config_is_valid_and_loads_the_rules() -> None:
    config = COMPOSE_DIR / "prometheus.yml"
    result = _run([_tool("promtool"), "check", "config", "--syntax-only", str(config)])
    assert result.returncode == 0, result.stdout + result.stderr
    mounts = dict(_bind_mounts(_compose()["services"]["prometheus"]))
    rules_target = mounts["../prometheus/rules"]
    rule_files = yaml.safe_load(config.read_text(encoding="utf-8"))["rule_files"]
    assert all(pattern.startswith(rules_target + "/") for pattern in rule_files)


def test_compose_grafana_provisioning_points_at_the_mounts() -> None:
    services = _compose()["services"]
    mounts = dict(_bind_mounts(services["grafana"]))
    dashboards_target = mounts["../../grafana/dashboards"]
    providers = yaml.safe_load(
        (ROOT / "grafana/provisioning/dashboards/emailqueue.yml").read_text(encoding="utf-8")
    )["providers"]
    assert any(p["options"]["path"].rstrip("/") == dashboards_target for p in providers), (
        f"no dashboard provider reads {dashboards_target}"
    )
    datasources = yaml.safe_load(
        (ROOT / "grafana/provisioning/datasources/prometheus.yml").read_text(encoding="utf-8")
    )["datasources"]
    urls = [ds.get("url", "") for ds in datasources if ds.get("type") == "prometheus"]
    assert any(re.fullmatch(r"https?://prometheus:9090/?", url) for url in urls), urls


# --- Kubernetes: a small kustomize for the features the manifests use -------------------------


def _json_patch(obj: dict[str, Any], ops: list[dict[str, Any]]) -> None:
    for op in ops:
        *parents, last = [
            part.replace("~1", "/").replace("~0", "~") for part in op["path"][1:].split("/")
        ]
        node: Any = obj
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if op["op"] == "remove":
            del node[int(last) if isinstance(node, list) else last]
        elif isinstance(node, list) and last == "-":
            assert op["op"] == "add"
            node.append(copy.deepcopy(op["value"]))
        elif isinstance(node, list):
            index = int(last)
            if op["op"] == "add":
                node.insert(index, copy.deepcopy(op["value"]))
            else:
                node[index] = copy.deepcopy(op["value"])
        else:
            assert op["op"] in ("add", "replace"), op
            node[last] = copy.deepcopy(op["value"])


def _kustomize(directory: Path, used: set[Path]) -> list[dict[str, Any]]:
    """Render a kustomization: resources, configMapGenerator, JSON6902 patches, images."""
    kustomization = directory / "kustomization.yaml"
    used.add(kustomization)
    spec = yaml.safe_load(kustomization.read_text(encoding="utf-8"))
    objects: list[dict[str, Any]] = []
    for resource in spec.get("resources", []):
        path = (directory / resource).resolve()
        if path.is_dir():
            objects += _kustomize(path, used)
        else:
            used.add(path)
            objects += _load_all(path)
    for generator in spec.get("configMapGenerator", []):
        data = {}
        for file in generator["files"]:
            used.add((directory / file).resolve())
            data[Path(file).name] = (directory / file).read_text(encoding="utf-8")
        labels = generator.get("options", {}).get("labels", {})
        metadata = {"name": generator["name"], "labels": labels}
        objects.append(
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": data}
        )
    for patch in spec.get("patches", []):
        path = (directory / patch["path"]).resolve()
        used.add(path)
        ops = yaml.safe_load(path.read_text(encoding="utf-8"))
        if isinstance(ops, dict) and ops.get("$patch") == "delete":  # strategic merge: delete
            gone = (ops["kind"], ops["metadata"]["name"])
            kept = [o for o in objects if (o["kind"], o["metadata"]["name"]) != gone]
            assert len(kept) == len(objects) - 1, f"{patch['path']} deletes nothing"
            objects = kept
            continue
        target = patch["target"]
        matches = [
            o
            for o in objects
            if o["kind"] == target["kind"] and o["metadata"]["name"] == target["name"]
        ]
        assert len(matches) == 1, f"{patch['path']} matches {len(matches)} objects"
        _json_patch(matches[0], ops)
    for image in spec.get("images", []):
        for obj in objects:
            for container in (
                obj.get("spec", {}).get("template", {}).get("spec", {}).get("containers", [])
            ):
                if container["image"] == image["name"]:
                    container["image"] = f"{image['newName']}:{image['newTag']}"
    return objects


KUSTOMIZATIONS = ["base", "overlays/multi-org", "overlays/sharded"]
WORKLOADS = {"Deployment", "StatefulSet"}


def _build(name: str) -> list[dict[str, Any]]:
    return _kustomize(K8S / name, set())


def _validate(obj: dict[str, Any]) -> None:
    try:
        kubernetes_validate.validate(obj, kubernetes_validate.latest_version(), strict=True)
    except kubernetes_validate.ValidationError as error:
        where = f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"
        pytest.fail(f"{where}: {str(error).splitlines()[0]}")


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_kustomization_renders_valid_core_objects(name: str) -> None:
    objects = _build(name)
    kinds = {obj["kind"] for obj in objects}
    assert {"Service", "ServiceAccount", "NetworkPolicy"} <= kinds
    assert len(kinds & WORKLOADS) == 1, "one workload: a Deployment or the shards' StatefulSet"
    assert CRDS <= kinds
    for obj in objects:
        assert "namespace" not in obj["metadata"], "the base is namespace-agnostic"
        if obj["kind"] not in CRDS:
            _validate(obj)


def test_every_yaml_under_kubernetes_is_used_or_a_valid_standalone_object() -> None:
    used: set[Path] = set()
    for name in KUSTOMIZATIONS:
        _kustomize(K8S / name, used)
    for path in sorted(K8S.rglob("*.y*ml")):
        if path.resolve() in used:
            continue
        docs = _load_all(path)
        assert docs and all(isinstance(d, dict) and "kind" in d for d in docs), f"{path} is unused"
        for doc in docs:
            _validate(doc)


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_kubectl_kustomize_agrees(name: str) -> None:
    result = _run([shutil.which("kubectl") or "kubectl", "kustomize", str(K8S / name)])
    assert result.returncode == 0, result.stderr
    # configMapGenerator appends a content hash to the name; this test's renderer does not.
    rendered = {
        (o["kind"], re.sub(r"-[a-z0-9]{10}$", "", o["metadata"]["name"]))
        if o["kind"] == "ConfigMap"
        else (o["kind"], o["metadata"]["name"])
        for o in yaml.safe_load_all(result.stdout)
    }
    ours = {(o["kind"], o["metadata"]["name"]) for o in _build(name)}
    assert rendered == ours


def _deployment(name: str) -> dict[str, Any]:
    """The kustomization's one workload: a Deployment, or the sharded overlay's StatefulSet."""
    (deployment,) = [o for o in _build(name) if o["kind"] in WORKLOADS]
    return deployment


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_deployment_is_locked_down_and_probed(name: str) -> None:
    pod = _deployment(name)["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert pod["automountServiceAccountToken"] is False
    (container,) = pod["containers"]
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert security.get("runAsNonRoot", True) is True
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"metrics": 9654}
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]  # noqa: S108 (a path in the pod)
    undocumented = {e["name"] for e in container.get("env", [])} - DOCUMENTED_ENV
    assert not undocumented


def _secret_files(name: str) -> tuple[set[str], set[str]]:
    """Paths the Deployment mounts from the Secret, and the keys the example Secret holds."""
    pod = _deployment(name)["spec"]["template"]["spec"]
    secret_volumes = {
        v["name"] for v in pod["volumes"] if v.get("secret", {}).get("secretName") == NAME
    }
    (container,) = pod["containers"]
    (example,) = _load_all(K8S / name / "secret.example.yaml")
    keys = set(example["stringData"])
    dirs = {m["mountPath"] for m in container["volumeMounts"] if m["name"] in secret_volumes}
    return {f"{d}/{key}" for d in dirs for key in keys}, keys


def test_base_secrets_come_from_the_example_secret() -> None:
    files, keys = _secret_files("base")
    (container,) = _deployment("base")["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in container["env"]}
    for var in ("ALVARIA_API_KEY", "ALVARIA_CLIENT_SECRET"):
        assert var not in env, f"{var} belongs in a file, not the pod spec"
        assert env[f"{var}_FILE"]["value"] in files
    for entry in env.values():
        ref = entry.get("valueFrom", {}).get("secretKeyRef")
        if ref:
            assert ref["name"] == NAME and ref["key"] in keys


CONFIG_OVERLAYS = ["overlays/multi-org", "overlays/sharded"]


@pytest.mark.parametrize("name", CONFIG_OVERLAYS)
def test_multi_org_overlay_mounts_a_documented_config_file(name: str) -> None:
    (container,) = _deployment(name)["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    config_path = Path(env["ALVARIA_CONFIG_FILE"])
    (configmap,) = [o for o in _build(name) if o["kind"] == "ConfigMap"]
    mounted = {m["mountPath"] for m in container["volumeMounts"]}
    assert str(config_path.parent) in mounted
    config = yaml.safe_load(configmap["data"][config_path.name])
    targets = config.pop("targets")
    assert len(targets) >= 2
    assert set(config) <= GLOBAL_SETTINGS | TARGET_SETTINGS | FILE_KEYS
    files, _ = _secret_files(name)
    for target in targets:
        assert set(target) <= TARGET_SETTINGS | FILE_KEYS, target
        assert not set(target) & SECRETS, "secrets go in *_file entries"
        assert {target[key] for key in FILE_KEYS & set(target)} <= files


# --- PrometheusRule ------------------------------------------------------------------------------


def _generator() -> ModuleType:
    path = K8S / "generate_prometheusrule.py"
    spec = importlib.util.spec_from_file_location("generate_prometheusrule", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_prometheusrule_is_generated_from_the_rule_files() -> None:
    generator = _generator()
    committed = (K8S / "base" / "prometheusrule.yaml").read_text(encoding="utf-8")
    expected = generator.build()
    assert yaml.safe_load(committed) == expected
    assert committed == generator.render(expected), (
        "run deploy/kubernetes/generate_prometheusrule.py"
    )
    groups = [g for f in generator.rule_files() for g in yaml.safe_load(f.read_text())["groups"]]
    assert expected["spec"]["groups"] == groups and groups


def test_prometheusrule_spec_passes_promtool(tmp_path: Path) -> None:
    (rule,) = _load_all(K8S / "base" / "prometheusrule.yaml")
    rules_file = tmp_path / "spec.rules.yml"
    rules_file.write_text(yaml.safe_dump(rule["spec"]), encoding="utf-8")
    result = _run([_tool("promtool"), "check", "rules", str(rules_file)])
    assert result.returncode == 0, result.stdout + result.stderr


# --- the exporter accepts what the manifests give it ---------------------------------------------


def _check_config(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {"PATH": "/usr/bin:/bin"}  # nothing from the caller's ALVARIA_* environment
    return _run_env([sys.executable, "-m", "exporter", "--check-config"], base | env)


def _run_env(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    # Same as _run: fixed interpreter and repository files only.
    return subprocess.run(args, capture_output=True, text=True, check=False, env=env)  # noqa: S603


def _write_secret_files(directory: Path, keys: set[str]) -> None:
    for key in keys:
        (directory / key).write_text(f"value-of-{key}\n", encoding="utf-8")


def test_exporter_accepts_the_base_deployment_settings(tmp_path: Path) -> None:
    _, keys = _secret_files("base")
    _write_secret_files(tmp_path, keys)
    (container,) = _deployment("base")["spec"]["template"]["spec"]["containers"]
    env = {}
    for entry in container["env"]:
        ref = entry.get("valueFrom", {}).get("secretKeyRef")
        value = f"value-of-{ref['key']}" if ref else entry["value"]
        env[entry["name"]] = value.replace("/etc/alvaria/credentials", str(tmp_path))
    result = _check_config(env)
    assert result.returncode == 0, result.stderr
    assert "value-of-api-key" not in result.stdout + result.stderr


def test_exporter_accepts_the_multi_org_config(tmp_path: Path) -> None:
    _, keys = _secret_files("overlays/multi-org")
    _write_secret_files(tmp_path, keys)
    (configmap,) = [o for o in _build("overlays/multi-org") if o["kind"] == "ConfigMap"]
    config = tmp_path / "config.yaml"
    text = configmap["data"]["config.yaml"].replace("/etc/alvaria/credentials", str(tmp_path))
    config.write_text(text, encoding="utf-8")
    result = _check_config({"ALVARIA_CONFIG_FILE": str(config)})
    assert result.returncode == 0, result.stderr
    checked = yaml.safe_load(result.stdout)
    assert [t["org_id"] for t in checked["targets"]] == ["acme", "globex"]


# --- the sharded overlay: a StatefulSet whose pod ordinal is the shard --------------------------


def _env(workload: dict[str, Any]) -> dict[str, str]:
    (container,) = workload["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e.get("value") for e in container["env"]}


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def test_sharded_overlay_runs_one_pod_per_shard() -> None:
    objects = _build("overlays/sharded")
    (sts,) = [o for o in objects if o["kind"] == "StatefulSet"]
    assert not [o for o in objects if o["kind"] == "Deployment"]
    env = _env(sts)
    assert env["ALVARIA_SHARD"] == "auto"
    assert int(env["ALVARIA_TOTAL_SHARDS"]) == sts["spec"]["replicas"] >= 2
    assert sts["spec"]["podManagementPolicy"] == "Parallel"
    pod_labels = sts["spec"]["template"]["metadata"]["labels"]
    services = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Service"}
    headless = services[sts["spec"]["serviceName"]]
    assert headless["spec"]["clusterIP"] == "None"
    assert _selects(headless["spec"]["selector"], pod_labels)
    (monitor,) = [o for o in objects if o["kind"] == "ServiceMonitor"]
    scraped = [
        name
        for name, svc in services.items()
        if _selects(monitor["spec"]["selector"]["matchLabels"], svc["metadata"]["labels"])
    ]
    assert scraped == [NAME], "every replica is scraped once, through one Service"
    (pdb,) = [o for o in objects if o["kind"] == "PodDisruptionBudget"]
    assert _selects(pdb["spec"]["selector"]["matchLabels"], pod_labels)
    assert pdb["spec"]["maxUnavailable"] == 1
    spread = sts["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]
    terms = spread["preferredDuringSchedulingIgnoredDuringExecution"]
    assert terms[0]["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"


def test_exporter_takes_its_shard_from_the_pod_name(tmp_path: Path) -> None:
    _, keys = _secret_files("overlays/sharded")
    _write_secret_files(tmp_path, keys)
    objects = _build("overlays/sharded")
    (configmap,) = [o for o in objects if o["kind"] == "ConfigMap"]
    (sts,) = [o for o in objects if o["kind"] == "StatefulSet"]
    config = tmp_path / "config.yaml"
    text = configmap["data"]["config.yaml"].replace("/etc/alvaria/credentials", str(tmp_path))
    config.write_text(text, encoding="utf-8")
    env = _env(sts) | {"ALVARIA_CONFIG_FILE": str(config)}
    # A StatefulSet's pod is named, and its host name set, <statefulset>-<ordinal>.
    result = _check_config(env | {"HOSTNAME": f"{sts['metadata']['name']}-2"})
    assert result.returncode == 0, result.stderr
    checked = yaml.safe_load(result.stdout)
    assert (checked["shard"], checked["total_shards"]) == (2, sts["spec"]["replicas"])
    assert len(checked["targets"]) >= 3
    result = _check_config(env | {"HOSTNAME": "not-a-pod"})
    assert result.returncode == 2 and "shard" in result.stderr


def _readme_block(marker: str) -> str:
    """The fenced YAML block of the Deployment page whose first line is `marker`."""
    text = (ROOT / "docs" / "deployment.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```yaml\n(.*?)```", text, re.S)
    (block,) = [str(b) for b in blocks if b.startswith(marker)]
    return block


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_readme_shard_overlay_works_where_step_2_puts_it(tmp_path: Path) -> None:
    # Step 2 puts the user's overlay next to deploy/ in a checkout of the repository.
    (tmp_path / "deploy").symlink_to(ROOT / "deploy")
    overlay = tmp_path / "my-shards"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(_readme_block("# my-shards/kustomization.yaml"))
    (overlay / "config.yaml").write_text((K8S / "overlays/sharded/config.yaml").read_text())
    result = _run([shutil.which("kubectl") or "kubectl", "kustomize", str(overlay)])
    assert result.returncode == 0, result.stderr
    objects = list(yaml.safe_load_all(result.stdout))
    for obj in objects:
        if obj["kind"] not in CRDS:
            _validate(obj)
    (sts,) = [o for o in objects if o["kind"] == "StatefulSet"]
    assert int(_env(sts)["ALVARIA_TOTAL_SHARDS"]) == sts["spec"]["replicas"]
    assert all(o["metadata"].get("namespace") == "monitoring" for o in objects)
