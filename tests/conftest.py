"""Fixtures shared by every test tier: real databases and vhosts of the run's own."""
from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor

import pytest

from tests.support import infra


@pytest.fixture
def amqp_url():
    """A RabbitMQ vhost of this test's own, for a test that publishes or consumes (fails, never skips)."""
    vhost, url = infra.create_vhost()
    yield url
    infra.delete_vhost(vhost)


@pytest.fixture(scope="session")
def shared_amqp_url():
    """One vhost for the run's tests that only need a reachable broker (readiness); nothing consumes there."""
    vhost, url = infra.create_vhost()
    yield url
    infra.delete_vhost(vhost)


@pytest.fixture(scope="session")
def migrated_template():
    """Factory: `migrated_template("contacts")` is a database migrated once per run, for tests to copy.

    Copying a migrated database (CREATE DATABASE ... TEMPLATE) takes a third of the time of creating one and
    running every migration, for each of the suite's many tests that want a fresh service database.
    """
    from crm.registry import SUITE

    templates: dict[str, str] = {}

    def template(name: str) -> str:
        if name not in templates:
            url = infra.create_database(f"template_{name}")
            SUITE.migrate(name, url)  # disposes its engine: a template must have no open connection
            templates[name] = url
        return templates[name]

    yield template
    for url in templates.values():
        infra.drop_database(url)


class _DatabaseCopies:
    """Copies of template databases made one ahead, and databases dropped, on threads of their own.

    Most tests take a fresh copy of a migrated template and drop it afterwards; each copy and each drop is a
    few tenths of a second of PostgreSQL's work (a drop waits for a checkpoint). Made while the previous test
    runs, the next copy is ready when its test starts, and the drop does not hold up the next test either.
    Copies are made on one thread and drops run on another, each in order: on one thread for both, a copy
    waited behind the previous test's drop, and tests waited for their copy for a third of their time.
    """

    def __init__(self):
        self._copier = ThreadPoolExecutor(max_workers=1, thread_name_prefix="test-database-copies")
        self._dropper = ThreadPoolExecutor(max_workers=1, thread_name_prefix="test-database-drops")
        self._spares: dict[str, Future] = {}  # template URL -> its next copy
        self._drops: list[Future] = []

    def take(self, label: str, template: str) -> str:
        spare = self._spares.pop(template, None)
        url = self._made(spare) if spare is not None else None
        if url is None:  # none made ahead, or making it failed: made now, so the error (if any) is this test's own
            url = infra.create_database(label, template=template)
        self._spares[template] = self._copier.submit(infra.create_database, label, template=template)
        return url

    @staticmethod
    def _made(spare: Future) -> str | None:
        """The copy made ahead, or None when making it failed (on behalf of another test: not this one's fault)."""
        try:
            return spare.result()
        except Exception:  # noqa: BLE001 - the caller makes the copy again, in the open
            return None

    def drop(self, url: str) -> None:
        self._drops.append(self._dropper.submit(infra.drop_database, url))
        self._drops = [drop for drop in self._drops if not drop.done() or drop.exception() is not None]

    def close(self) -> None:
        for spare in self._spares.values():  # each waits (on the drops' thread) for its copy to be made
            self._drops.append(self._dropper.submit(
                lambda made=spare: (url := self._made(made)) is None or infra.drop_database(url)))
        self._copier.shutdown(wait=True)
        self._dropper.shutdown(wait=True)
        for drop in self._drops:
            drop.result()  # a drop that failed fails the run's teardown rather than leaving databases behind


@pytest.fixture(scope="session")
def _database_copies(migrated_template):  # closed before the templates it copies are dropped
    copies = _DatabaseCopies()
    yield copies
    copies.close()


@pytest.fixture
def make_database(_database_copies):
    """Factory: `make_database("leads")` creates a fresh PostgreSQL database (a copy of `template=` if given),
    dropped after the test."""
    created = []

    def make(label: str, *, template: str | None = None) -> str:
        url = _database_copies.take(label, template) if template else infra.create_database(label)
        created.append(url)
        return url

    yield make
    for url in created:
        _database_copies.drop(url)


@pytest.fixture
def make_settings(request, shared_amqp_url):
    """Factory: settings for one service on a given database, with fast retries.

    A test that asks for `amqp_url` (it publishes or consumes) gets its own vhost; every other test only
    pings the broker and shares one, which spares a `rabbitmqctl` round trip per test.
    """
    from crm.registry import SUITE

    amqp_url = request.getfixturevalue("amqp_url") if "amqp_url" in request.fixturenames else shared_amqp_url

    def make(service: str, database_url: str, **env):
        base = {
            f"{service.upper()}_DATABASE_URL": database_url, "AMQP_URL": amqp_url,
            "CRM_RETRY_DELAYS": "0.2,0.5",
            "CRM_RELAY_POLL_INTERVAL": "0.05", "CRM_RELAY_LEASE_SECONDS": "3", "CRM_LOG_LEVEL": "WARNING",
        }
        # The gateway signs identity tokens, every other service only verifies them.
        if service == SUITE.gateway:
            base["CRM_IDENTITY_PRIVATE_KEY"] = infra.IDENTITY_PRIVATE_KEY
        else:
            base["CRM_IDENTITY_PUBLIC_KEY"] = infra.IDENTITY_PUBLIC_KEY
        base.update({k: str(v) for k, v in env.items()})
        return SUITE.settings(service, base)

    return make


@pytest.fixture
def service_app(make_database, make_settings, migrated_template):
    """Factory: `service_app("leads", **env)` is that service's app on a fresh migrated PostgreSQL database.

    Built through the suite registry, like every process. `database_url=` puts it on a database the test
    made (and migrated) itself, e.g. to run a second app or a worker on the same data. Engines are disposed
    after the test, so no connection outlives the database it points at.
    """
    from crm.registry import SUITE

    apps = []

    def make(name: str, *, database_url: str | None = None, **env):
        if database_url is None:
            database_url = make_database(name, template=migrated_template(name))
        app = SUITE.create_app(name, make_settings(name, database_url, **env))
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.extensions["crm.runtime"].engine.dispose()


def pytest_sessionfinish(session, exitstatus):
    """In CI (CRM_FAIL_ON_SKIP=1) a skipped test fails the run: every service it needs is on the machine."""
    import os

    if os.environ.get("CRM_FAIL_ON_SKIP") != "1":
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter else []
    if skipped and session.exitstatus == 0:
        reporter.write_line(f"CRM_FAIL_ON_SKIP: {len(skipped)} test(s) were skipped; CI requires every test to run.", red=True)
        session.exitstatus = 1
