"""The suite registry is the one place that lists the services; everything suite-wide derives from it."""
from __future__ import annotations

import importlib
import importlib.util
import re
import sys
import textwrap
from pathlib import Path

import pytest

from crm.processes import suite_processes
from crm.registry import SUITE, Registry, ServiceEntry
from services.common.broker import declare_topology
from services.common.identity import generate_keypair
from services.gateway.routes import RouteTable

REPO_ROOT = Path(__file__).resolve().parents[3]
PRIVATE, PUBLIC = generate_keypair()

# A complete service package, as small as it gets: an app with one view and a worker, one handler, one table.
WIDGETS_PACKAGE = {
    "__init__.py": '"""Widgets: a service added to the suite by one registry entry."""\n',
    "models.py": """
        from sqlalchemy.orm import Mapped, mapped_column
        from services.common.db import make_base, messaging_models

        Base = make_base()
        OutboxMessage, InboxEntry = messaging_models(Base)

        class Widget(Base):
            __tablename__ = "widgets"
            seq: Mapped[int] = mapped_column(primary_key=True)
    """,
    "handlers.py": """
        def on_contact_created(uow, event):
            pass

        HANDLERS = {"crm.contact.created": on_contact_created}
    """,
    "app.py": """
        from flask.views import MethodView
        from flask_smorest import Blueprint
        from services.common.runtime import build_runtime
        from services.common.web import create_service_app, runtime_readiness
        from services.common.worker import Worker
        from . import handlers
        from .models import InboxEntry, OutboxMessage

        blp = Blueprint("widgets", __name__, url_prefix="/api/v1/widgets")

        @blp.route("")
        class Widgets(MethodView):
            def get(self):
                return {"items": []}

        def create_app(settings):
            rt = build_runtime(settings, OutboxMessage, InboxEntry)
            return create_service_app("widgets", title="Widgets", blueprints=[blp], settings=settings,
                                      readiness=runtime_readiness(rt), extensions={"crm.runtime": rt})

        def create_worker(settings, *, bindings):
            return Worker(build_runtime(settings, OutboxMessage, InboxEntry), handlers.HANDLERS, bindings)
    """,
    "migrations/script.py.mako": "",
    "migrations/env.py": """
        from services.common.migrations import run_env
        from crm_widgets_pkg.models import Base

        run_env("widgets", Base.metadata)
    """,
    "migrations/versions/0001_widgets.py": """
        import sqlalchemy as sa
        from alembic import op

        revision = "0001"
        down_revision = None
        branch_labels = None
        depends_on = None

        def upgrade():
            op.create_table("widgets", sa.Column("seq", sa.Integer(), primary_key=True))

        def downgrade():
            op.drop_table("widgets")
    """,
}


@pytest.fixture
def widgets(tmp_path, monkeypatch):
    """The suite registry plus one entry for a widgets package written to a temporary folder."""
    root = tmp_path / "crm_widgets_pkg"
    for name, source in WIDGETS_PACKAGE.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield SUITE.with_entry(ServiceEntry("widgets", 8090, "crm_widgets_pkg", routes=("/api/v1/widgets",)))
    for name in [m for m in sys.modules if m.startswith("crm_widgets_pkg")]:
        del sys.modules[name]


class RecordingChannel:
    """Records the topology calls that declare_topology makes (a fake channel with the calls' real names)."""

    def __init__(self):
        self.queues, self.bindings = [], []

    def exchange_declare(self, *args, **kwargs):
        pass

    def queue_declare(self, queue, **kwargs):
        self.queues.append(queue)

    def queue_bind(self, queue, exchange, routing_key):
        self.bindings.append((queue, routing_key))


def test_adding_a_service_is_one_registry_entry_plus_its_package(widgets, tmp_path):
    # The broker topology: the new queue is bound to exactly what its handlers take.
    assert widgets.bindings()["widgets"] == ("crm.contact.created",)
    channel = RecordingChannel()
    declare_topology(channel, widgets.bindings(), (1.0,))
    assert ("crm.widgets", "crm.contact.created") in channel.bindings
    assert {"crm.widgets", "crm.widgets.dlq", "crm.widgets.retry.1000ms"} <= set(channel.queues)

    # The default route table and the gateway's upstreams.
    table = RouteTable.from_mapping(widgets.route_map())
    assert table.match("/api/v1/widgets/7").upstream == "widgets"
    gateway = widgets.settings("gateway", {"CRM_IDENTITY_PRIVATE_KEY": PRIVATE})
    assert gateway.upstreams["widgets"] == "http://127.0.0.1:8090"
    configured = widgets.settings("gateway", {"CRM_IDENTITY_PRIVATE_KEY": PRIVATE, "CRM_WIDGETS_URL": "http://w:1"})
    assert configured.upstreams["widgets"] == "http://w:1"

    # The processes `crm run` and the test suite start.
    ports = {e.name: e.port for e in widgets.entries if e.web}
    names = {p.name: p for p in suite_processes(ports, {}, registry=widgets)}
    assert "crm_widgets_pkg.wsgi:app" in names["widgets-web"].argv
    assert names["widgets-worker"].argv[-2:] == ("worker", "widgets")

    # Its database: settings, migrations, the app and the worker.
    env = {"CRM_IDENTITY_PUBLIC_KEY": PUBLIC, "CRM_DATA_DIR": str(tmp_path / "var")}
    settings = widgets.settings("widgets", env)
    assert settings.database_url.endswith("widgets.db")
    widgets.migrate("widgets", settings.database_url)
    app = widgets.create_app("widgets", settings)
    try:
        assert app.test_client().get("/healthz").json == {"status": "ok", "service": "widgets"}
        with app.extensions["crm.runtime"].engine.connect() as conn:
            assert "widgets" in conn.dialect.get_table_names(conn)
    finally:
        app.extensions["crm.runtime"].engine.dispose()
    worker = widgets.create_worker("widgets", settings)
    assert worker.consumer.bindings["widgets"] == ("crm.contact.created",)
    worker.runtime.engine.dispose()


def test_every_worker_declares_the_whole_suite_topology():
    # A worker that publishes before the consumer of its event has started must still find the queue bound.
    for entry in SUITE.workers:
        if SUITE.handlers(entry.name):
            worker = SUITE.create_worker(entry.name, SUITE.settings(entry.name, {
                "CRM_IDENTITY_PUBLIC_KEY": PUBLIC, "DATABASE_URL": "sqlite://"}))
            assert worker.consumer.bindings == SUITE.bindings()
            worker.runtime.engine.dispose()


def test_a_queue_is_bound_to_exactly_the_types_its_service_handles():
    for entry in SUITE.workers:
        assert set(SUITE.bindings()[entry.name]) == set(SUITE.handlers(entry.name))


def test_the_registry_refuses_a_service_or_a_route_listed_twice():
    contacts = SUITE.entry("contacts")
    with pytest.raises(ValueError, match="twice"):
        SUITE.with_entry(contacts)
    with pytest.raises(ValueError, match="route prefix"):
        SUITE.with_entry(ServiceEntry("other", 9000, "other", routes=(contacts.routes[0],)))
    with pytest.raises(ValueError, match="gateway"):
        Registry((contacts,))


def test_an_unknown_service_is_named_in_the_error():
    with pytest.raises(KeyError, match="nosuch"):
        SUITE.entry("nosuch")


def test_the_platform_kit_imports_no_service():
    """services/common is below every service: it never names one, not even in a string built for importlib."""
    pattern = re.compile(r"services\.(contacts|leads|loyalty|partners|gateway)")
    offenders = [f"{path.relative_to(REPO_ROOT)}:{number}"
                 for path in sorted((REPO_ROOT / "services" / "common").rglob("*.py"))
                 for number, line in enumerate(path.read_text().splitlines(), 1) if pattern.search(line)]
    assert offenders == []
    for path in (REPO_ROOT / "services" / "common").glob("*.py"):
        assert "import_module(f" not in path.read_text(), f"{path.name} imports a module named at run time"


def test_every_registered_package_has_the_service_shape():
    for entry in SUITE.entries:
        app = importlib.import_module(entry.app_module)
        assert callable(app.create_app), entry.name
        assert importlib.util.find_spec(f"{entry.package}.wsgi") is not None, entry.name
        assert SUITE.migrations_dir(entry.name).joinpath("env.py").is_file(), entry.name
        if entry.worker:
            assert callable(app.create_worker), entry.name
