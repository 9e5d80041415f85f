"""infra/k8s, checked offline: the base and the production overlay, built as kustomize builds them.

The build is tests/support/k8s.py (compared with `kubectl kustomize` where kubectl is installed). Built-in
kinds are validated against the Kubernetes API schema (kubernetes-validate, strict: unknown fields fail);
the custom resources (RabbitmqCluster, CloudNativePG Cluster and Database, ServiceMonitor) are checked here
for the fields their operators require. Beyond the schema:
- every process of the registry has a Deployment running its command, with every setting it needs
  (the environment it would get, secrets replaced by dummies, is fed to the real settings);
- no secret value is written in the manifests; the gateway alone is reachable from outside;
- every process has an autoscaler, a disruption budget, probes, limits and a ServiceMonitor;
- the RabbitMQ topology and the databases are the ones the registry derives.
"""
from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar
from urllib.parse import urlsplit

import click
import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import SchemaNotFoundError

from crm.processes import suite_processes
from crm.registry import SUITE, Registry, ServiceEntry
from services.common.broker import dlq_name, queue_name
from services.common.identity import generate_keypair
from services.common.settings import web_concurrency
from tests.support.k8s import build, containers, pod_specs

from .conftest import DOCKERFILE, REPO_ROOT
from .test_compose import parse_crm, settings_variables

K8S_DIR = REPO_ROOT / "infra" / "k8s"
OVERLAYS = {"base": K8S_DIR / "base", "production": K8S_DIR / "overlays" / "production"}
KUBERNETES_VERSION = "1.31"  # the oldest release the manifests support (preStop `sleep` needs 1.30+)
CUSTOM_KINDS = {
    ("rabbitmq.com/v1beta1", "RabbitmqCluster"),
    ("postgresql.cnpg.io/v1", "Cluster"),
    ("postgresql.cnpg.io/v1", "Database"),
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
}
GUNICORN_CONFIG = "/etc/crm/gunicorn.conf.py"

# Secrets an operator of the cluster creates (docs/operations.md, "Kubernetes"), with their keys.
DOCUMENTED_SECRETS = {"crm-identity": {"private-key", "public-key"}, "crm-amqp": {"url"}}
# Valid stand-ins for what the Secrets hold, so the real settings can check everything else.
DUMMY_PRIVATE_KEY, DUMMY_PUBLIC_KEY = generate_keypair()
DUMMY_AMQP_URL = "amqp://crm:stand-in@crm-rabbitmq:5672/%2F"
DUMMY_SECRET_VALUES = {
    ("crm-identity", "private-key"): DUMMY_PRIVATE_KEY,
    ("crm-identity", "public-key"): DUMMY_PUBLIC_KEY,
    ("crm-amqp", "url"): DUMMY_AMQP_URL,
}
# Variables the CRM containers may set besides the settings: libpq's credentials, and the worker's ops port.
EXTRA_VARIABLES = {"PGUSER", "PGPASSWORD", "CRM_WORKER_PORT"}
# Connections one worker pod may hold at once: its consumer, its relay's claims and its LISTEN connection, the
# retention purge, the outbox-backlog metric and /readyz. A web pod: one per request thread.
WORKER_CONNECTIONS = 6
POSTGRES_RESERVED_CONNECTIONS = 10  # superuser_reserved_connections and the operator's own sessions


def load_generator():
    spec = importlib.util.spec_from_file_location("crm_k8s_generate", K8S_DIR / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GENERATE = load_generator()
BUILDS = {name: build(path) for name, path in OVERLAYS.items()}


@pytest.fixture(params=sorted(OVERLAYS))
def objects(request) -> list[dict]:
    return BUILDS[request.param]


@pytest.fixture
def production() -> list[dict]:
    return BUILDS["production"]


# -- reading the build --------------------------------------------------------------------------------------

def of_kind(objects: list[dict], kind: str) -> list[dict]:
    return [o for o in objects if o["kind"] == kind]


def named(objects: list[dict], kind: str) -> dict[str, dict]:
    return {o["metadata"]["name"]: o for o in of_kind(objects, kind)}


def the_one(objects: list[dict], kind: str) -> dict:
    found = of_kind(objects, kind)
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def config_map(objects: list[dict], name: str) -> dict:
    """A generated ConfigMap by its name before kustomize's hash suffix (or its full name)."""
    found = [c for c in of_kind(objects, "ConfigMap") if re.fullmatch(rf"{re.escape(name)}(-[a-z0-9]{{10}})?",
                                                                      c["metadata"]["name"])]
    assert len(found) == 1, f"ConfigMap {name}: found {len(found)}"
    return found[0]


def crm_deployments(objects: list[dict]) -> dict[str, dict]:
    """The Deployments of CRM processes (not Redis): component web or worker."""
    return {name: d for name, d in named(objects, "Deployment").items()
            if d["metadata"]["labels"].get("app.kubernetes.io/component") in ("web", "worker")}


def container(workload: dict) -> dict:
    (only,) = workload["spec"]["template"]["spec"]["containers"]
    return only


def port_named(c: dict, name: str) -> int:
    ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
    assert name in ports, f"container {c['name']} has no port named {name!r}: {ports}"
    return ports[name]


def selects(selector: dict, labels: dict) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def secret_references(objects: list[dict]) -> set[tuple[str, str]]:
    refs = set()
    for obj in objects:
        for spec in pod_specs(obj):
            for c in containers(spec):
                for var in c.get("env", []):
                    ref = var.get("valueFrom", {}).get("secretKeyRef")
                    if ref:
                        refs.add((ref["name"], ref["key"]))
                for source in c.get("envFrom", []):
                    if "secretRef" in source:
                        refs.add((source["secretRef"]["name"], "*"))
    return refs


def postgres(objects: list[dict]) -> dict:
    return the_one(objects, "Cluster")


def rabbitmq(objects: list[dict]) -> dict:
    return the_one(objects, "RabbitmqCluster")


def dummy_secret(objects: list[dict], name: str, key: str) -> str:
    """What a Secret the manifests reference would hold; fails for a Secret nothing provides."""
    if (name, key) in DUMMY_SECRET_VALUES:
        return DUMMY_SECRET_VALUES[(name, key)]
    if name == f"{postgres(objects)['metadata']['name']}-app" and key in ("username", "password"):
        return postgres(objects)["spec"]["bootstrap"]["initdb"]["owner"] if key == "username" else "stand-in"
    if name == f"{rabbitmq(objects)['metadata']['name']}-default-user" and key in ("username", "password"):
        return "stand-in"
    raise AssertionError(f"Secret {name!r} (key {key!r}) is neither documented nor made by an operator")


def environment(objects: list[dict], c: dict) -> dict[str, str]:
    """The environment Kubernetes would give container `c`, with the Secrets' values replaced by stand-ins."""
    env: dict[str, str] = {}
    for source in c.get("envFrom", []):
        assert set(source) == {"configMapRef"}, f"{c['name']}: envFrom {source}"
        env.update(config_map(objects, source["configMapRef"]["name"])["data"])
    for var in c.get("env", []):
        if "value" in var:
            # $(NAME) expands a variable defined earlier, as the kubelet does.
            env[var["name"]] = re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), m.group(0)), var["value"])
        elif "secretKeyRef" in var["valueFrom"]:
            ref = var["valueFrom"]["secretKeyRef"]
            env[var["name"]] = dummy_secret(objects, ref["name"], ref["key"])
        else:
            ref = var["valueFrom"]["configMapKeyRef"]
            env[var["name"]] = config_map(objects, ref["name"])["data"][ref["key"]]
    return env


def web_ports(registry: Registry) -> dict[str, int]:
    return {e.name: e.port for e in registry.entries if e.web}


def expected_command(process) -> list[str]:
    """What the container runs for a process of suite_processes: gunicorn with the image's config and the same
    application, or the same `crm` subcommand (bound to all interfaces on 8080 where it takes --bind)."""
    argv = list(process.argv)
    if argv[1:3] == ["-m", "gunicorn"]:
        return ["gunicorn", "--config", GUNICORN_CONFIG, argv[-1]]
    assert argv[argv.index("-m") + 1] == "crm", f"{process.name}: neither gunicorn nor crm: {argv}"
    command = ["crm", *argv[argv.index("-m") + 2:]]
    if "--bind" in command:
        command[command.index("--bind") + 1] = "0.0.0.0:8080"
    return command


def deployment_gaps(objects: list[dict], registry: Registry) -> list[str]:
    """Processes of `registry` that have no Deployment running their command."""
    deployments = named(objects, "Deployment")
    gaps = []
    for process in suite_processes(web_ports(registry), {}, registry=registry):
        deployment = deployments.get(process.name)
        if deployment is None:
            gaps.append(f"{process.name}: no Deployment")
        elif container(deployment)["command"] != expected_command(process):
            gaps.append(f"{process.name}: runs {container(deployment)['command']}, not {expected_command(process)}")
    return gaps


def strings(value):
    """Every string inside a manifest value."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)


# -- the build ------------------------------------------------------------------------------------------------

def test_the_generated_base_is_what_generate_py_writes_from_the_registry_today():
    assert GENERATE.stale_files() == [], "infra/k8s/base/generated is stale: run `python infra/k8s/generate.py`"


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_the_test_builder_gives_what_kubectl_kustomize_gives(overlay):
    kubectl = shutil.which("kubectl")
    if not kubectl:
        pytest.skip("kubectl is not installed; the offline builder is still checked by every other test")
    out = subprocess.run([kubectl, "kustomize", str(OVERLAYS[overlay])], capture_output=True, text=True,
                         check=True, timeout=120).stdout

    def key(o):
        return o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]

    theirs = {key(o): o for o in yaml.safe_load_all(out) if o}
    ours = {key(o): o for o in BUILDS[overlay]}
    assert sorted(ours) == sorted(theirs)
    assert [k for k in ours if ours[k] != theirs[k]] == []


def test_every_built_in_object_is_valid_for_the_kubernetes_release(objects):
    custom = []
    for obj in objects:
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except SchemaNotFoundError:
            custom.append((obj["apiVersion"], obj["kind"]))
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path)
            pytest.fail(f"{obj['kind']}/{obj['metadata']['name']}: {path}: {exc.message}")
    assert set(custom) <= CUSTOM_KINDS, f"kinds with no schema here and no check below: {set(custom) - CUSTOM_KINDS}"
    assert {kind for _, kind in custom} == {kind for _, kind in CUSTOM_KINDS}


def test_the_validator_rejects_an_unknown_field():
    # Strict validation is what catches a misspelt field; make sure it is on.
    deployment = json.loads(json.dumps(crm_deployments(BUILDS["base"])["gateway"]))
    deployment["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


def test_everything_lives_in_the_crm_namespace(objects):
    assert the_one(objects, "Namespace")["metadata"]["name"] == "crm"
    assert {o["metadata"].get("namespace") for o in objects if o["kind"] != "Namespace"} == {"crm"}


# -- processes ------------------------------------------------------------------------------------------------

def test_every_process_of_the_registry_has_a_deployment_running_its_command(objects):
    assert deployment_gaps(objects, SUITE) == []
    expected = {p.name for p in suite_processes(web_ports(SUITE), {}, registry=SUITE)}
    assert set(crm_deployments(objects)) == expected, "a Deployment for a process the registry does not have"


def test_a_registry_process_without_a_deployment_is_reported(objects):
    widgets = SUITE.with_entry(ServiceEntry("widgets", 8090, "crm_widgets_pkg", routes=("/api/v1/widgets",)))
    assert deployment_gaps(objects, widgets) == ["widgets-web: no Deployment", "widgets-worker: no Deployment"]
    assert GENERATE.stale_files(widgets) != [], "the drift check must notice the registry's new service"


def test_adding_a_service_is_regenerating_the_base(tmp_path):
    widgets = SUITE.with_entry(ServiceEntry("widgets", 8090, "crm_widgets_pkg", routes=("/api/v1/widgets",)))
    copy = tmp_path / "k8s"
    shutil.copytree(K8S_DIR, copy)
    generated = copy / "base" / "generated"
    shutil.rmtree(generated)
    generated.mkdir()
    for name, text in GENERATE.render(widgets).items():
        (generated / name).write_text(text)
    objects = build(copy / "overlays" / "production")
    assert deployment_gaps(objects, widgets) == []
    gateway = environment(objects, container(named(objects, "Deployment")["gateway"]))
    assert widgets.settings("gateway", gateway).upstreams["widgets"] == "http://widgets-web:8080"
    assert "crm_widgets" in {d["spec"]["name"] for d in of_kind(objects, "Database")}
    migrate = environment(objects, container(named(objects, "Job")["crm-migrate"]))
    assert urlsplit(widgets.settings("widgets", migrate, require_secret=False).database_url).path == "/crm_widgets"


@pytest.mark.parametrize("process", suite_processes(web_ports(SUITE), {}), ids=lambda p: p.name)
def test_every_command_is_a_real_entry_point_of_the_image(process):
    command = expected_command(process)
    if command[0] == "crm":
        try:
            parse_crm(command[1:])
        except click.ClickException as exc:
            pytest.fail(f"{process.name}: {command} is not a valid crm command: {exc.format_message()}")
    else:
        assert re.search(rf"^COPY\s+\S+\s+{re.escape(GUNICORN_CONFIG)}\s*$", DOCKERFILE.read_text(), re.MULTILINE)
        assert command[-1] == SUITE.entry(process.service).wsgi_app


def test_web_containers_listen_where_their_command_binds_and_workers_where_crm_worker_port_says(objects):
    gunicorn_conf = (REPO_ROOT / "infra" / "docker" / "gunicorn.conf.py").read_text()
    bind = re.search(r'^bind = "0\.0\.0\.0:(\d+)"$', gunicorn_conf, re.MULTILINE)
    assert bind, "gunicorn.conf.py no longer binds 0.0.0.0:<port>"
    for name, deployment in crm_deployments(objects).items():
        c = container(deployment)
        if "--bind" in c["command"]:  # `crm web <svc> --bind HOST:PORT`
            assert port_named(c, "http") == int(c["command"][c["command"].index("--bind") + 1].rsplit(":", 1)[1])
        elif deployment["metadata"]["labels"]["app.kubernetes.io/component"] == "web":
            assert c["command"][:3] == ["gunicorn", "--config", GUNICORN_CONFIG], name
            assert port_named(c, "http") == int(bind.group(1)), name
        else:
            assert environment(objects, c)["CRM_WORKER_PORT"] == str(port_named(c, "ops")) == "9090", name


def test_every_process_gets_every_setting_it_needs(objects):
    cluster = postgres(objects)
    owner = cluster["spec"]["bootstrap"]["initdb"]["owner"]
    databases = {d["spec"]["name"]: d for d in of_kind(objects, "Database")}
    services = named(objects, "Service")
    deployments = named(objects, "Deployment")
    for process in suite_processes(web_ports(SUITE), {}):
        env = environment(objects, container(deployments[process.name]))
        settings = SUITE.settings(process.service, env)  # raises SettingsError naming the variable
        url = urlsplit(settings.database_url)
        assert url.scheme == "postgresql" and url.hostname == f"{cluster['metadata']['name']}-rw", process.name
        assert url.password is None and env["PGUSER"] == owner and env["PGPASSWORD"], process.name
        database = databases.get(url.path.lstrip("/"))
        assert database and database["spec"]["cluster"]["name"] == cluster["metadata"]["name"], process.name
        assert database["spec"]["owner"] == owner, process.name
        assert settings.amqp_url == DUMMY_AMQP_URL, process.name
        assert settings.identity_public_key == DUMMY_PUBLIC_KEY, process.name
        if process.kind == "web":
            # Set, not derived from os.cpu_count(), which in a container counts the node's CPUs.
            assert {"CRM_WEB_PROCESSES", "CRM_WEB_THREADS"} <= set(env), process.name
            web_concurrency(env)
        if process.service == SUITE.gateway:
            assert settings.identity_private_key == DUMMY_PRIVATE_KEY
            for upstream in SUITE.upstreams:
                target = urlsplit(settings.upstreams[upstream.name])
                service = services[target.hostname]
                assert target.port in [p["port"] for p in service["spec"]["ports"]], upstream.name
                pods = deployments[f"{upstream.name}-web"]["spec"]["template"]["metadata"]["labels"]
                assert selects(service["spec"]["selector"], pods), f"{target.hostname} does not select {upstream.name}"
            redis = urlsplit(settings.redis_url)
            assert redis.hostname in services and redis.port in [p["port"] for p in services[redis.hostname]["spec"]["ports"]]


def test_the_migration_job_migrates_every_service_database_once(objects):
    job = named(objects, "Job")["crm-migrate"]
    assert container(job)["command"] == ["crm", "migrate"] and parse_crm(["migrate"])
    assert job["spec"]["parallelism"] == 1 and job["spec"]["completions"] == 1
    assert "crm-migrate" not in {h["spec"]["scaleTargetRef"]["name"] for h in of_kind(objects, "HorizontalPodAutoscaler")}
    env = environment(objects, container(job))
    databases = {d["spec"]["name"] for d in of_kind(objects, "Database")}
    for service in SUITE.names:
        settings = SUITE.settings(service, env, require_secret=False)
        assert urlsplit(settings.database_url).path.lstrip("/") in databases, service
    assert set(databases) == {f"crm_{name}" for name in SUITE.names}


def test_crm_containers_set_only_variables_something_reads(objects):
    known = settings_variables() | EXTRA_VARIABLES
    for name, workload in {**crm_deployments(objects), "crm-migrate": named(objects, "Job")["crm-migrate"]}.items():
        unknown = set(environment(objects, container(workload))) - known
        assert not unknown, f"{name} sets variables nothing reads: {sorted(unknown)}"


def test_service_links_are_off_so_no_service_name_can_shadow_a_setting(objects):
    # A Service named crm-gateway would otherwise give every pod CRM_GATEWAY_PORT=tcp://...
    for obj in objects:
        for spec in pod_specs(obj):
            assert spec.get("enableServiceLinks") is False, obj["metadata"]["name"]


# -- secrets and exposure -----------------------------------------------------------------------------------

def test_no_secret_value_is_written_in_the_manifests(objects):
    assert not of_kind(objects, "Secret"), "Secrets are created in the cluster, never kept in these files"
    for obj in objects:
        for value in strings(obj):
            try:
                parts = urlsplit(value)
                password = parts.password if parts.scheme and parts.netloc else None
            except ValueError:
                password = None
            assert not password, f"{obj['kind']}/{obj['metadata']['name']}: a URL with a password: {value}"
        for spec in pod_specs(obj):
            for c in containers(spec):
                for var in c.get("env", []):
                    if re.search(r"SECRET|PASSWORD|TOKEN|CREDENTIAL|_KEY$", var["name"]):
                        assert "valueFrom" in var, f"{obj['metadata']['name']}: {var['name']} is written inline"
    definitions = json.loads(config_map(objects, "crm-rabbitmq-definitions")["data"]["definitions.json"])
    assert "users" not in definitions and "password" not in json.dumps(definitions)


def test_every_referenced_secret_is_documented_or_made_by_an_operator(objects):
    operations = (REPO_ROOT / "docs" / "operations.md").read_text()
    for name, key in secret_references(objects):
        dummy_secret(objects, name, key)  # fails for a Secret nobody provides
        if name in DOCUMENTED_SECRETS:
            assert key in DOCUMENTED_SECRETS[name], (name, key)
    for name, keys in DOCUMENTED_SECRETS.items():
        assert f"`{name}`" in operations, f"docs/operations.md does not say how to create the Secret {name}"
        assert all(f"`{key}`" in operations for key in keys), f"docs/operations.md: the keys of {name}"
    assert {("crm-identity", "private-key"), ("crm-identity", "public-key")} <= secret_references(objects)


def test_only_the_gateway_gets_the_identity_private_key(objects):
    # A process holding the private key could mint identity tokens for any principal.
    holders = {o["metadata"]["name"] for o in objects if ("crm-identity", "private-key") in secret_references([o])}
    assert holders == {SUITE.gateway}


def test_only_the_gateway_is_reachable_from_outside_the_cluster(objects):
    ingress = the_one(objects, "Ingress")
    backends = {path["backend"]["service"]["name"] for rule in ingress["spec"]["rules"]
                for path in rule["http"]["paths"]}
    assert backends == {SUITE.gateway}
    assert "defaultBackend" not in ingress["spec"]
    for service in of_kind(objects, "Service"):
        assert service["spec"].get("type", "ClusterIP") == "ClusterIP", service["metadata"]["name"]
    assert rabbitmq(objects)["spec"].get("service", {}).get("type", "ClusterIP") == "ClusterIP"
    for obj in objects:
        for spec in pod_specs(obj):
            assert not spec.get("hostNetwork"), obj["metadata"]["name"]
            assert not [p for c in containers(spec) for p in c.get("ports", []) if "hostPort" in p]


def test_production_serves_the_gateway_over_tls(production):
    ingress = the_one(production, "Ingress")
    hosts = {rule["host"] for rule in ingress["spec"]["rules"]}
    tls = ingress["spec"].get("tls", [])
    assert tls and hosts <= {host for entry in tls for host in entry["hosts"]} and all(e.get("secretName") for e in tls)


# -- pods -------------------------------------------------------------------------------------------------------

def test_every_pod_runs_as_non_root_with_a_read_only_root_filesystem_and_limits(objects):
    for obj in objects:
        for spec in pod_specs(obj):
            name = obj["metadata"]["name"]
            assert spec["securityContext"]["runAsNonRoot"] is True, name
            assert spec["securityContext"]["runAsUser"] > 0, name
            assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
            assert spec.get("automountServiceAccountToken") is False, name
            for c in containers(spec):
                ctx = c["securityContext"]
                assert ctx["allowPrivilegeEscalation"] is False and ctx["capabilities"]["drop"] == ["ALL"], name
                assert ctx["readOnlyRootFilesystem"] is True, name
                for bound in ("requests", "limits"):
                    assert {"cpu", "memory"} <= set(c["resources"][bound]), f"{name}: {bound}"


def test_every_process_is_probed_on_healthz_and_readyz(objects):
    for name, deployment in crm_deployments(objects).items():
        c = container(deployment)
        port = "http" if deployment["metadata"]["labels"]["app.kubernetes.io/component"] == "web" else "ops"
        assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": port}, name
        assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": port}, name
        assert c["startupProbe"]["httpGet"]["path"] == "/healthz", name
        port_named(c, port)


def test_every_process_has_a_service_an_autoscaler_and_a_disruption_budget(objects):
    services = named(objects, "Service")
    autoscalers = {h["spec"]["scaleTargetRef"]["name"]: h for h in of_kind(objects, "HorizontalPodAutoscaler")
                   if h["spec"]["scaleTargetRef"]["kind"] == "Deployment"}
    budgets = of_kind(objects, "PodDisruptionBudget")
    for name, deployment in crm_deployments(objects).items():
        pods = deployment["spec"]["template"]["metadata"]["labels"]
        assert "replicas" not in deployment["spec"], f"{name}: the autoscaler owns the replica count"
        assert selects(services[name]["spec"]["selector"], pods), name
        hpa = autoscalers[name]["spec"]
        assert 1 <= hpa["minReplicas"] <= hpa["maxReplicas"], name
        assert [m["resource"]["name"] for m in hpa["metrics"]] == ["cpu"], name
        assert len([b for b in budgets if selects(b["spec"]["selector"]["matchLabels"], pods)]) == 1, name


def test_production_keeps_two_pods_of_every_process_and_one_through_a_drain(production):
    autoscalers = {h["spec"]["scaleTargetRef"]["name"]: h["spec"] for h in of_kind(production, "HorizontalPodAutoscaler")}
    for name, deployment in crm_deployments(production).items():
        assert autoscalers[name]["minReplicas"] >= 2, name
        pods = deployment["spec"]["template"]["metadata"]["labels"]
        (budget,) = [b for b in of_kind(production, "PodDisruptionBudget")
                     if selects(b["spec"]["selector"]["matchLabels"], pods)]
        assert budget["spec"].get("minAvailable") == 1 and "maxUnavailable" not in budget["spec"], name
        assert budget["spec"]["minAvailable"] < autoscalers[name]["minReplicas"], f"{name}: a drain could block"
    assert postgres(production)["spec"]["instances"] == 3


def test_every_process_service_has_a_service_monitor_scraping_metrics(objects):
    monitors = of_kind(objects, "ServiceMonitor")
    services = named(objects, "Service")
    monitored = set()
    for monitor in monitors:
        spec = monitor["spec"]
        matches = [s for s in services.values() if selects(spec["selector"]["matchLabels"], s["metadata"]["labels"])]
        assert len(matches) == 1, f"ServiceMonitor {monitor['metadata']['name']} selects {len(matches)} Services"
        ports = {p["name"] for p in matches[0]["spec"]["ports"]}
        assert spec["endpoints"] and all(e["port"] in ports and e["path"] == "/metrics" for e in spec["endpoints"])
        monitored.add(matches[0]["metadata"]["name"])
    # Redis is the one Service without a monitor: it serves no /metrics.
    assert monitored == set(crm_deployments(objects)) == set(services) - {"redis"}


# -- operators' resources -----------------------------------------------------------------------------------

def test_the_postgresql_cluster_and_one_database_per_service(objects):
    cluster = postgres(objects)
    spec = cluster["spec"]
    assert isinstance(spec["instances"], int) and spec["instances"] >= 1
    assert spec["storage"]["size"] and spec["bootstrap"]["initdb"]["owner"] and spec["bootstrap"]["initdb"]["database"]
    for database in of_kind(objects, "Database"):
        assert database["spec"]["name"] and database["spec"]["owner"] == spec["bootstrap"]["initdb"]["owner"]
        assert database["spec"]["cluster"] == {"name": cluster["metadata"]["name"]}
        assert database["spec"].get("databaseReclaimPolicy", "retain") == "retain"
    assert sorted(d["spec"]["name"] for d in of_kind(objects, "Database")) == sorted(f"crm_{n}" for n in SUITE.names)


def test_postgresql_accepts_every_connection_the_autoscalers_allow(objects):
    config = config_map(objects, "crm-config")["data"]
    per_web_pod = int(config["CRM_WEB_PROCESSES"]) * int(config["CRM_WEB_THREADS"])
    autoscalers = {h["spec"]["scaleTargetRef"]["name"]: h["spec"] for h in of_kind(objects, "HorizontalPodAutoscaler")}
    most = WORKER_CONNECTIONS  # the migration Job
    for name, deployment in crm_deployments(objects).items():
        web = deployment["metadata"]["labels"]["app.kubernetes.io/component"] == "web"
        most += autoscalers[name]["maxReplicas"] * (per_web_pod if web else WORKER_CONNECTIONS)
    allowed = int(postgres(objects)["spec"]["postgresql"]["parameters"]["max_connections"])
    assert most <= allowed - POSTGRES_RESERVED_CONNECTIONS, (most, allowed)


def test_rabbitmq_runs_three_nodes_for_the_quorum_queues(objects):
    cluster = rabbitmq(objects)
    assert cluster["spec"]["replicas"] == 3
    assert cluster["spec"]["image"].startswith("rabbitmq:")
    # Definitions are imported by a Job, not at boot: a boot-time import skips the operator's default user.
    assert "load_definitions" not in cluster["spec"].get("rabbitmq", {}).get("additionalConfig", "")
    definitions = json.loads(config_map(objects, "crm-rabbitmq-definitions")["data"]["definitions.json"])
    queues = {q["name"]: q for q in definitions["queues"]}
    for service in SUITE.bindings():
        assert queues[queue_name(service)]["arguments"]["x-queue-type"] == "quorum"
        assert queues[dlq_name(service)]["arguments"]["x-queue-type"] == "quorum"


def test_the_definitions_are_the_compose_brokers_without_its_development_user(objects):
    compose = json.loads((REPO_ROOT / "infra" / "rabbitmq" / "definitions.json").read_text())
    compose.pop("users"), compose.pop("permissions")
    shipped = json.loads(config_map(objects, "crm-rabbitmq-definitions")["data"]["definitions.json"])
    assert shipped == compose


def test_the_definitions_job_mounts_the_file_and_uses_the_operators_user(objects):
    job = named(objects, "Job")["crm-rabbitmq-definitions"]
    spec = job["spec"]["template"]["spec"]
    c = container(job)
    env = environment(objects, c)
    (mount,) = c["volumeMounts"]
    (volume,) = [v for v in spec["volumes"] if v["name"] == mount["name"]]
    mounted = config_map(objects, volume["configMap"]["name"])
    assert mounted["metadata"]["name"] == config_map(objects, "crm-rabbitmq-definitions")["metadata"]["name"]
    assert Path(env["DEFINITIONS_FILE"]).parent == Path(mount["mountPath"])
    assert Path(env["DEFINITIONS_FILE"]).name in mounted["data"]
    assert c["command"][-1] == f"{mount['mountPath']}/import_definitions.py" and "import_definitions.py" in mounted["data"]
    assert urlsplit(env["RABBITMQ_MANAGEMENT_URL"]).hostname == rabbitmq(objects)["metadata"]["name"]
    user_secret = f"{rabbitmq(objects)['metadata']['name']}-default-user"
    assert {(user_secret, "username"), (user_secret, "password")} <= secret_references([job])


class _DefinitionsEndpoint(BaseHTTPRequestHandler):
    """Stands in for RabbitMQ's management API: records one POST, answers with `status`."""

    status: ClassVar[int] = 204
    received: ClassVar[list] = []  # each test gets a subclass with a list of its own (the `endpoint` fixture)

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append((self.path, self.headers["Authorization"], self.headers["Content-Type"], body))
        self.send_response(self.status)
        self.end_headers()
        if self.status >= 400:
            self.wfile.write(b'{"error":"not_authorised"}')

    def log_message(self, *args):
        pass


@pytest.fixture
def endpoint():
    handler = type("Endpoint", (_DefinitionsEndpoint,), {"received": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield handler, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


def load_import_script():
    spec = importlib.util.spec_from_file_location("crm_import_definitions", K8S_DIR / "base" / "import_definitions.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_import_script_posts_the_definitions_with_basic_auth(endpoint, monkeypatch):
    handler, url = endpoint
    file = K8S_DIR / "base" / "generated" / "rabbitmq-definitions.json"
    for name, value in {"RABBITMQ_MANAGEMENT_URL": url + "/", "RABBITMQ_USERNAME": "admin",
                        "RABBITMQ_PASSWORD": "s3cret", "DEFINITIONS_FILE": str(file)}.items():
        monkeypatch.setenv(name, value)
    assert load_import_script().main() == 0
    ((path, authorization, content_type, body),) = handler.received
    assert path == "/api/definitions" and content_type == "application/json"
    assert authorization == "Basic YWRtaW46czNjcmV0"  # admin:s3cret
    assert body == file.read_bytes()


def test_the_import_script_fails_the_job_when_the_broker_refuses(endpoint, monkeypatch, capsys):
    handler, url = endpoint
    handler.status = 401
    for name, value in {"RABBITMQ_MANAGEMENT_URL": url, "RABBITMQ_USERNAME": "admin", "RABBITMQ_PASSWORD": "wrong",
                        "DEFINITIONS_FILE": str(K8S_DIR / "base" / "generated" / "rabbitmq-definitions.json")}.items():
        monkeypatch.setenv(name, value)
    assert load_import_script().main() == 1
    assert "HTTP 401" in capsys.readouterr().err
