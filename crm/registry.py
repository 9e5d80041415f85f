"""The suite registry: the one place that lists the services of CRM Suite.

Everything suite-wide derives from it: the broker topology (each queue is bound to exactly the event types its
service's handlers take), the service names the settings accept and the upstreams the gateway knows, the processes
`crm run` starts, the default route table and its upload routes, the RabbitMQ definitions file and the test
suite's process list. Adding a service is one `ServiceEntry` here plus its package (`app.py` with
`create_app`/`create_worker`, `wsgi.py` with gunicorn's `app` followed by `freeze_startup_objects()`,
`handlers.py` with `HANDLERS`, `migrations/`).

Entries name modules by dotted path and are imported only when asked for, so reading the registry (the gateway's
route table, `crm --help`) imports no service.
"""
from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class ServiceEntry:
    """One service of the suite."""

    name: str
    port: int  # default TCP port of its web process (CRM_<NAME>_PORT overrides it in `crm run`)
    package: str  # dotted package path; holds app.py, handlers.py (optional) and migrations/
    routes: tuple[str, ...] = ()  # gateway path prefixes served by this service
    # Paths under `routes` (templates like /api/v1/contacts/{id}/photo) whose views take uploads
    # (services.common.web.upload_arguments): the gateway lets bodies up to CRM_MAX_UPLOAD_BYTES through on them.
    upload_routes: tuple[str, ...] = ()
    web: bool = True  # has a web process behind the gateway
    worker: bool = True  # has a worker (outbox relay + consumer)
    title: str = ""

    @property
    def app_module(self) -> str:
        return f"{self.package}.app"

    @property
    def wsgi_app(self) -> str:
        """The gunicorn application path."""
        return f"{self.package}.wsgi:app"

    @property
    def env_prefix(self) -> str:
        return self.name.upper()


@dataclass(frozen=True)
class Registry:
    """An ordered set of services and what derives from it."""

    entries: tuple[ServiceEntry, ...]
    gateway: str = "gateway"
    _handlers: dict = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self):
        names = [e.name for e in self.entries]
        if len(set(names)) != len(names):
            raise ValueError(f"a service is registered twice: {names}")
        if self.gateway not in names:
            raise ValueError(f"the gateway {self.gateway!r} is not registered")
        prefixes = [p for e in self.entries for p in e.routes]
        if len(set(prefixes)) != len(prefixes):
            raise ValueError("a route prefix is registered for two services")
        for e in self.entries:
            for path in e.upload_routes:
                if not any(path.startswith(prefix + "/") for prefix in e.routes):
                    raise ValueError(f"{e.name}: upload route {path!r} is not under one of its routes")

    def with_entry(self, entry: ServiceEntry) -> "Registry":
        """A registry with one more service (tests use this)."""
        return Registry((*self.entries, entry), gateway=self.gateway)

    # -- lookups -------------------------------------------------------------------------------------
    @property
    def names(self) -> tuple[str, ...]:
        """Every service with a database (all of them, the gateway included)."""
        return tuple(e.name for e in self.entries)

    def entry(self, name: str) -> ServiceEntry:
        for e in self.entries:
            if e.name == name:
                return e
        raise KeyError(f"unknown service {name!r}; expected one of {', '.join(self.names)}")

    @property
    def upstreams(self) -> tuple[ServiceEntry, ...]:
        """The services the gateway forwards to."""
        return tuple(e for e in self.entries if e.web and e.name != self.gateway)

    @property
    def workers(self) -> tuple[ServiceEntry, ...]:
        return tuple(e for e in self.entries if e.worker)

    def upstream_ports(self) -> dict[str, int]:
        """Upstream name -> default port (the settings derive CRM_<NAME>_URL defaults from it)."""
        return {e.name: e.port for e in self.upstreams}

    # -- derived facts ---------------------------------------------------------------------------------
    def handlers(self, name: str) -> Mapping:
        """The integration-event handlers of one service (event type -> callable); empty when it has none."""
        if name not in self._handlers:
            entry = self.entry(name)
            try:
                module = importlib.import_module(f"{entry.package}.handlers")
            except ModuleNotFoundError as exc:
                if exc.name != f"{entry.package}.handlers":
                    raise
                self._handlers[name] = {}
            else:
                self._handlers[name] = dict(module.HANDLERS)
        return self._handlers[name]

    def bindings(self) -> dict[str, tuple[str, ...]]:
        """Service -> the event types its queue is bound to: exactly the types its handlers take."""
        return {e.name: tuple(sorted(self.handlers(e.name))) for e in self.workers}

    def route_map(self) -> dict[str, str]:
        """The default gateway route table: path prefix -> upstream service."""
        return {prefix: e.name for e in self.upstreams for prefix in e.routes}

    def upload_routes(self) -> tuple[str, ...]:
        """The paths of the default route table that take uploads (bodies up to CRM_MAX_UPLOAD_BYTES)."""
        return tuple(path for e in self.upstreams for path in e.upload_routes)

    def migrations_dir(self, name: str) -> Path:
        """The Alembic script folder of one service."""
        package = importlib.import_module(self.entry(name).package)
        return Path(package.__file__).parent / "migrations"

    # -- composition -------------------------------------------------------------------------------------
    def settings(self, name: str, env: Mapping[str, str] | None = None, **options):
        """One process's settings from the environment; the gateway's know every upstream of the registry."""
        from services.common.settings import from_env

        self.entry(name)
        gateway = name == self.gateway
        return from_env(name, env, upstreams=self.upstream_ports() if gateway else None, signs_identity=gateway,
                        **options)

    def app_module(self, name: str):
        return importlib.import_module(self.entry(name).app_module)

    def create_app(self, name: str, settings=None):
        """The web application of one service."""
        return self.app_module(name).create_app(settings)

    def create_worker(self, name: str, settings=None):
        """The worker of one service, declaring the whole suite's topology (so no event is ever unroutable)."""
        return self.app_module(name).create_worker(settings, bindings=self.bindings())

    def migrate(self, name: str, database_url: str, revision: str = "head") -> None:
        """Migrate one service's database."""
        from services.common.migrations import upgrade

        upgrade(name, database_url, self.migrations_dir(name), revision)


SUITE = Registry((
    ServiceEntry("contacts", 8081, "services.contacts", title="CRM Contacts",
                 routes=("/api/v1/contacts", "/api/v1/accounts", "/api/v1/segments", "/api/v1/analytics",
                         "/api/v1/termination/customers"),
                 upload_routes=("/api/v1/contacts/imports",)),
    ServiceEntry("leads", 8082, "services.leads", title="CRM Leads",
                 routes=("/api/v1/leads", "/api/v1/campaigns", "/api/v1/offers", "/api/v1/triggers",
                         "/api/v1/plugins")),
    ServiceEntry("loyalty", 8083, "services.loyalty", title="CRM Loyalty", routes=("/api/v1/loyalty",)),
    ServiceEntry("partners", 8084, "services.partners", title="CRM Partners",
                 routes=("/api/v1/partners", "/api/v1/contracts", "/api/v1/partner-portal",
                         "/api/v1/termination/partners")),
    ServiceEntry("gateway", 8080, "services.gateway", title="CRM Suite API", worker=False),
))
