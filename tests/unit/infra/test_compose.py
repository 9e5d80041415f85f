"""docker-compose.yml, checked statically: every command, variable, dependency and port is a real one.

Decisions this file enforces (docs/containers.md explains them):
- every CRM process runs the one image, with an explicit command (never the image's default CMD);
- the gateway is the only service that publishes a port: PostgreSQL, RabbitMQ and Redis stay on the
  compose network (reach them with `docker compose exec`, or an override file of your own);
- a variable set on a CRM container must be one that services/common/settings.py reads; third-party
  images may set only the variables in THIRD_PARTY_ENV.
"""
from __future__ import annotations

import re
import shlex
from pathlib import Path
from urllib.parse import urlsplit

import click
import pytest

from crm.cli import cli
from crm.registry import SUITE
from services.common import settings as settings_module
from services.common.identity import generate_keypair

from .conftest import DOCKERFILE, REPO_ROOT, interpolate, load_compose

# Variables the third-party images document, by image repository. Kept short on purpose: anything else
# set on these containers is probably a typo or a setting the image ignores.
THIRD_PARTY_ENV = {
    "postgres": {"POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB", "POSTGRES_INITDB_ARGS", "PGDATA"},
    # RabbitMQ takes its users from definitions.json (importing definitions at boot skips
    # RABBITMQ_DEFAULT_USER/PASS), so only node-level variables make sense here.
    "rabbitmq": {"RABBITMQ_NODENAME", "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS"},
    "redis": set(),
}
INFRA_WITH_HEALTHCHECK = ("postgres", "rabbitmq", "redis")
PUBLIC_SERVICE, PUBLIC_PORT = "gateway-web", "8080"
WSGI_TARGET = re.compile(r"^services\.(?P<svc>\w+)\.wsgi:app$")
SERVICES = SUITE.names
UPSTREAMS = tuple(e.name for e in SUITE.upstreams)
WORKERS = tuple(e.name for e in SUITE.workers)


def settings_variables() -> set[str]:
    """Every environment variable name in settings.py's source, with `{x.upper()}` expanded per service."""
    source = Path(settings_module.__file__).read_text()
    names: set[str] = set()
    for literal in re.findall(r'f?"((?:[A-Z0-9_]|\{\w+\.upper\(\)\})+)"', source):
        if "_" not in literal:
            continue  # "DEBUG", "INFO", ...: values, not variable names
        if "{" in literal:
            # Over-approximates (CRM_GATEWAY_URL is not read): fine for an allow-list of known names.
            names.update(re.sub(r"\{\w+\.upper\(\)\}", svc.upper(), literal) for svc in SERVICES)
        else:
            names.add(literal)
    return names


def argv(service: dict) -> list[str]:
    command = service.get("command")
    return shlex.split(command) if isinstance(command, str) else list(command or [])


def environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {key: interpolate(str(value)) for key, value in env.items()}


def depends_on(service: dict) -> dict:
    deps = service.get("depends_on") or {}
    return {name: None for name in deps} if isinstance(deps, list) else deps


def parse_crm(args: list[str]) -> list[click.Command]:
    """Parse `crm ARGS` with the real click tree, without running anything; returns the command path."""
    ctx = click.Context(cli, info_name="crm")
    path: list[click.Command] = [cli]
    command, rest = cli, list(args)
    while isinstance(command, click.Group):  # the crm groups take no options of their own
        if not rest:
            raise click.UsageError(f"`{ctx.command_path}` needs a subcommand", ctx)
        sub = command.get_command(ctx, rest[0])
        if sub is None:
            raise click.UsageError(f"no such command {rest[0]!r}", ctx)
        ctx = sub.make_context(rest[0], rest[1:], parent=ctx)  # validates arguments, choices and options
        path.append(sub)
        command, rest = sub, rest[1:]
    return path


def image_repository(image: str) -> str:
    return image.rsplit("/", 1)[-1].split(":", 1)[0]


# -- every service is buildable or pullable ---------------------------------------------------------

def test_every_service_has_an_image_or_a_build(services):
    missing = [name for name, svc in services.items() if "image" not in svc and "build" not in svc]
    assert not missing, f"services with neither image nor build: {missing}"


def test_every_crm_process_is_built_from_the_one_dockerfile_under_one_image_name(crm_services):
    assert crm_services, "no service builds the CRM image"
    for name, svc in crm_services.items():
        build = svc["build"]
        assert (REPO_ROOT / build["context"]).resolve() == REPO_ROOT, name
        assert (REPO_ROOT / build["dockerfile"]).resolve() == DOCKERFILE, name
    assert len({svc.get("image") for svc in crm_services.values()}) == 1, "CRM services should share one image name"


def test_the_topology_has_a_web_and_a_worker_per_service_a_gateway_and_a_migration(services):
    expected = {f"{svc}-web" for svc in UPSTREAMS} | {f"{svc}-worker" for svc in WORKERS} | {"gateway-web", "migrate"}
    assert expected <= set(services), f"missing: {sorted(expected - set(services))}"
    assert set(INFRA_WITH_HEALTHCHECK) <= set(services)


# -- commands name real entry points -----------------------------------------------------------------

def test_every_crm_container_sets_a_command_instead_of_relying_on_the_default_cmd(crm_services):
    assert not [name for name, svc in crm_services.items() if not argv(svc)]


@pytest.mark.parametrize("name", [name for name, svc in load_compose()["services"].items() if "build" in svc])
def test_every_command_names_a_real_entry_point(crm_services, name):
    args = argv(crm_services[name])
    if args[0] == "crm":
        try:
            path = parse_crm(args[1:])
        except click.ClickException as exc:  # UsageError, BadParameter (e.g. a service with no worker)
            pytest.fail(f"{name}: `{shlex.join(args)}` is not a valid crm command: {exc.format_message()}")
        assert len(path) > 1, f"{name}: `crm` without a subcommand"
        if path[1].name == "worker":
            service = args[2]
            app = REPO_ROOT / "services" / service / "app.py"
            assert app.is_file() and "def create_worker" in app.read_text(), f"{name}: services/{service} has no worker"
    elif Path(args[0]).name == "gunicorn":
        targets = [WSGI_TARGET.match(a) for a in args[1:]]
        targets = [m for m in targets if m]
        assert len(targets) == 1, f"{name}: gunicorn needs exactly one services.<svc>.wsgi:app, got {args}"
        svc = targets[0].group("svc")
        assert (REPO_ROOT / "services" / svc / "wsgi.py").is_file(), f"{name}: services/{svc}/wsgi.py does not exist"
        if "--config" in args or "-c" in args:
            flag = "--config" if "--config" in args else "-c"
            config = args[args.index(flag) + 1]
            assert re.search(rf"^COPY\s+\S+\s+{re.escape(config)}\s*$", DOCKERFILE.read_text(), re.MULTILINE), \
                f"{name}: the image does not contain {config}"
    else:
        pytest.fail(f"{name}: unknown entry point {args[0]!r}; expected crm or gunicorn")


def test_web_containers_serve_their_own_service_and_workers_run_their_own(crm_services):
    for name, svc in crm_services.items():
        args = argv(svc)
        if name == "gateway-web":
            assert args == ["crm", "web", "gateway"], "the gateway runs on the buffering server of `crm web`"
        elif name.endswith("-web"):
            assert f"services.{name.removesuffix('-web')}.wsgi:app" in args, name
        elif name.endswith("-worker"):
            assert args == ["crm", "worker", name.removesuffix("-worker")], name
    assert argv(crm_services["migrate"]) == ["crm", "migrate"]


# -- environment --------------------------------------------------------------------------------------

def test_the_settings_regex_finds_the_variables_the_processes_need():
    names = settings_variables()
    assert {"AMQP_URL", "REDIS_URL", "DATABASE_URL", "CRM_IDENTITY_PUBLIC_KEY", "CRM_RETRY_DELAYS"} <= names
    assert {f"{svc.upper()}_DATABASE_URL" for svc in SERVICES} <= names
    assert {f"CRM_{svc.upper()}_URL" for svc in UPSTREAMS} <= names


def test_crm_containers_set_only_variables_the_settings_read(crm_services):
    known = settings_variables()
    for name, svc in crm_services.items():
        unknown = set(environment(svc)) - known
        assert not unknown, f"{name} sets variables no setting reads: {sorted(unknown)}"


def test_third_party_containers_set_only_documented_variables(services):
    for name, svc in services.items():
        if "build" in svc:
            continue
        repo = image_repository(svc["image"])
        assert repo in THIRD_PARTY_ENV, f"{name}: no allow-list for image {svc['image']}; add one to THIRD_PARTY_ENV"
        unknown = set(environment(svc)) - THIRD_PARTY_ENV[repo]
        assert not unknown, f"{name} sets variables its image does not document: {sorted(unknown)}"


def _own_service(container: str) -> str | None:
    name = container.removesuffix("-web").removesuffix("-worker")
    return name if name in SERVICES and container != name else None


def _with_key_files(svc: dict, tmp_path: Path) -> dict[str, str]:
    """The container's environment with its identity key files made real: each must lie on a volume it mounts."""
    env = environment(svc)
    private, public = generate_keypair()
    mounts = {m.split(":")[1] for m in svc.get("volumes", [])}
    for variable, pem in (("CRM_IDENTITY_PRIVATE_KEY_FILE", private), ("CRM_IDENTITY_PUBLIC_KEY_FILE", public)):
        if variable in env:
            assert str(Path(env[variable]).parent) in mounts, f"{variable}={env[variable]} is on no mounted volume"
            local = tmp_path / f"{variable}.pem"
            local.write_text(pem)
            env[variable] = str(local)
    return env


def test_every_process_starts_with_valid_settings_on_postgresql(crm_services, services, tmp_path):
    for name, svc in crm_services.items():
        env = _with_key_files(svc, tmp_path)
        own = _own_service(name)
        for service in SERVICES:  # migrate and any admin command may touch every database
            # Only a process's own service must find its identity key; admin commands need none.
            settings = SUITE.settings(service, env, require_secret=service == own)  # raises naming the variable
            url = urlsplit(settings.database_url)
            assert url.scheme.startswith("postgresql"), f"{name}: {service} would fall back to {settings.database_url}"
            assert url.hostname in services and url.path == f"/crm_{service}", f"{name}: {service} -> {url.geturl()}"
        assert urlsplit(settings.amqp_url).hostname in services, name
        assert settings.redis_url and urlsplit(settings.redis_url).hostname in services, name


def test_the_gateway_reaches_every_upstream_on_its_web_container(crm_services, tmp_path):
    settings = SUITE.settings("gateway", _with_key_files(crm_services["gateway-web"], tmp_path))
    for svc in UPSTREAMS:
        url = urlsplit(settings.upstreams[svc])
        assert (url.hostname, url.port) == (f"{svc}-web", 8080), f"CRM_{svc.upper()}_URL -> {url.geturl()}"


def test_no_container_has_a_built_in_identity_key_and_only_the_gateway_holds_the_private_one(crm_services):
    for name, svc in crm_services.items():
        env = environment(svc)
        assert not {"CRM_IDENTITY_SECRET", "CRM_IDENTITY_PRIVATE_KEY", "CRM_IDENTITY_PUBLIC_KEY"} & set(env), \
            f"{name}: keys come from the identity volumes, never from the compose file"
        volumes = {m.split(":")[0] for m in svc.get("volumes", [])}
        holds_private = "CRM_IDENTITY_PRIVATE_KEY_FILE" in env or "identity-private" in volumes
        assert holds_private == (name in ("gateway-web", "identity-keys")), f"{name} and the private key"
        if name != "identity-keys":
            assert env.get("CRM_IDENTITY_PUBLIC_KEY_FILE") == "/identity/public/public.pem", name
            assert "identity-public:/identity/public:ro" in svc.get("volumes", []), name


def test_the_identity_keys_are_written_where_the_processes_read_them(crm_services):
    init = argv(crm_services["identity-keys"])
    assert init[:3] == ["crm", "identity", "init"]
    assert init[init.index("--private") + 1] == environment(crm_services["gateway-web"])["CRM_IDENTITY_PRIVATE_KEY_FILE"]
    assert init[init.index("--public") + 1] == environment(crm_services["contacts-web"])["CRM_IDENTITY_PUBLIC_KEY_FILE"]
    assert crm_services["identity-keys"].get("restart") == "no"


def test_postgres_init_creates_one_database_per_service(services):
    mounts = [v for v in services["postgres"].get("volumes", []) if "/docker-entrypoint-initdb.d" in v]
    assert len(mounts) == 1, "the init script must be mounted into /docker-entrypoint-initdb.d"
    source = REPO_ROOT / mounts[0].split(":", 1)[0]
    created = re.findall(r"^\s*CREATE DATABASE\s+(\w+)\s*;", source.read_text(), re.IGNORECASE | re.MULTILINE)
    assert sorted(created) == sorted(f"crm_{svc}" for svc in SERVICES)


# -- start-up order and health ---------------------------------------------------------------------------

def test_every_dependency_exists_and_names_its_condition(services):
    for name, svc in services.items():
        for target, spec in depends_on(svc).items():
            assert target in services, f"{name} depends on {target}, which does not exist"
            assert spec and "condition" in spec, f"{name} -> {target}: give a condition"
            expected = ("service_completed_successfully" if target in ("migrate", "identity-keys")
                        else "service_healthy")
            assert spec["condition"] == expected, f"{name} -> {target}: {spec['condition']}"
            if expected == "service_healthy":
                assert "healthcheck" in services[target], f"{name} waits for {target}, which has no health check"


def test_web_and_worker_containers_wait_for_the_migration_and_the_broker(crm_services):
    for name, svc in crm_services.items():
        if name == "identity-keys":
            continue
        if name == "migrate":
            assert {"postgres", "identity-keys"} <= set(depends_on(svc))
            continue
        assert {"identity-keys", "migrate", "rabbitmq", "postgres"} <= set(depends_on(svc)), name


def test_infrastructure_and_web_containers_have_health_checks(services):
    for name in [*INFRA_WITH_HEALTHCHECK, *(n for n in services if n.endswith("-web"))]:
        check = services[name].get("healthcheck")
        assert check and check.get("test") and not check.get("disable"), f"{name} has no health check"
    assert "pg_isready" in services["postgres"]["healthcheck"]["test"]
    assert services["rabbitmq"]["healthcheck"]["test"][-2:] == ["-q", "ping"]


def test_worker_health_checks_probe_the_ops_port(services):
    for name in (n for n in services if n.endswith("-worker")):
        check = services[name].get("healthcheck")
        assert check and not check.get("disable"), f"{name} has no health check"
        test = " ".join(check["test"])
        assert "python" in test and "urllib" in test, name
        assert f"127.0.0.1:{settings_module.DEFAULT_WORKER_PORT}/healthz" in test, name
        assert "CRM_WORKER_PORT" not in environment(services[name]), f"{name}: the check assumes the default port"


def test_web_health_checks_probe_healthz_with_python_because_the_image_has_no_curl(services):
    for name in (n for n in services if n.endswith("-web")):
        test = " ".join(services[name]["healthcheck"]["test"])
        assert "python" in test and "urllib" in test and "curl" not in test, name
        assert "127.0.0.1:8080/healthz" in test, name


def test_long_running_crm_containers_restart_and_the_migration_does_not(crm_services):
    for name, svc in crm_services.items():
        assert svc.get("restart") == ("no" if name in ("migrate", "identity-keys") else "unless-stopped"), name


# -- ports and scaling --------------------------------------------------------------------------------------

def test_only_the_gateway_publishes_a_port(services):
    publishing = sorted(name for name, svc in services.items() if svc.get("ports"))
    assert publishing == [PUBLIC_SERVICE]
    for port in services[PUBLIC_SERVICE]["ports"]:
        target = str(port["target"]) if isinstance(port, dict) else interpolate(str(port)).rsplit(":", 1)[-1]
        assert target.split("/")[0] == PUBLIC_PORT


def test_workers_can_be_scaled_because_nothing_pins_a_name_or_a_port(services):
    for name in (n for n in services if n.endswith("-worker")):
        assert "container_name" not in services[name] and not services[name].get("ports"), name


# -- the documented commands work on this file ------------------------------------------------------------

def test_the_commands_in_docs_containers_name_real_services_and_crm_subcommands(services):
    doc = (REPO_ROOT / "docs" / "containers.md").read_text()
    runs = re.findall(r"docker compose run --rm (\S+) (crm [^`\n#]+)", doc)
    assert any(args.startswith("crm keys create") for _, args in runs), "the first admin key command is missing"
    for service, args in runs:
        assert "build" in services.get(service, {}), f"docs run `{service}`, which is not a CRM container"
        parse_crm(shlex.split(args)[1:])
    scaled = re.findall(r"--scale (\S+?)=\d+", doc)
    assert scaled and all(name in services and not services[name].get("ports") for name in scaled), scaled
