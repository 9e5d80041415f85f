"""`crm keys create|list|revoke` against the gateway database."""
from __future__ import annotations

import uuid

import pytest
from click.testing import CliRunner

from services.gateway.cli import keys
from tests.support.infra import IDENTITY_PRIVATE_KEY

pytestmark = pytest.mark.integration


@pytest.fixture
def run(gateway_database, upstream):
    def invoke(*args: str, database_url: str = gateway_database, **env):
        runner = CliRunner()
        # The gateway's identity key and the partners service (the echo upstream): a partner key is checked there.
        return runner.invoke(keys, list(args), env={"GATEWAY_DATABASE_URL": database_url, "DATABASE_URL": None,
                                                    "CRM_IDENTITY_PRIVATE_KEY": IDENTITY_PRIVATE_KEY,
                                                    "CRM_PARTNERS_URL": upstream.url, **env})
    return invoke


def test_a_partner_key_is_refused_for_a_partner_the_partners_service_does_not_know(run, upstream):
    ghost = str(uuid.uuid4())
    upstream.missing.add(f"/api/v1/partners/{ghost}")
    result = run("create", "--name", "ghost", "--partner", ghost)
    assert result.exit_code != 0
    assert f"No partner with id {ghost}" in result.output
    assert not result.stdout.startswith("crm_")
    asked = [r for r in upstream.received if r["path"] == f"/api/v1/partners/{ghost}"]
    assert asked and asked[-1]["headers"]["x-crm-identity"], "asked as the gateway, with a signed identity"


def test_a_partner_key_is_refused_when_the_partners_service_cannot_answer(run):
    result = run("create", "--name", "x", "--partner", str(uuid.uuid4()), CRM_PARTNERS_URL="http://127.0.0.1:9")
    assert result.exit_code != 0 and "partners service is unreachable" in result.output
    result = run("create", "--name", "x", "--partner", str(uuid.uuid4()), CRM_IDENTITY_PRIVATE_KEY=None)
    assert result.exit_code != 0 and "CRM_IDENTITY_PRIVATE_KEY_FILE" in result.output


def test_creating_a_key_prints_exactly_one_line_that_authenticates(run, client, upstream):
    result = run("create", "--name", "ci", "--scopes", "leads:read,contacts:read")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("crm_internal_")
    assert "shown only once" in result.stderr
    assert client.get("/api/v1/leads", headers={"Authorization": f"Bearer {lines[0]}"}).status_code == 200


def test_a_partner_key_from_the_cli_reaches_only_the_partner_portal(run, client, upstream):
    result = run("create", "--name", "acme", "--partner", str(uuid.uuid4()))
    assert result.exit_code == 0, result.output
    key = result.stdout.strip()
    assert key.startswith("crm_partner_")
    assert client.get("/api/v1/partner-portal/terms", headers={"X-API-Key": key}).status_code == 200
    assert client.get("/api/v1/leads", headers={"X-API-Key": key}).status_code == 403


def test_list_shows_keys_without_secrets_and_revoke_disables_one(run, client):
    key = run("create", "--name", "robot", "--scopes", "leads:*").stdout.strip()
    listing = run("list")
    assert listing.exit_code == 0
    assert "robot" in listing.stdout and "leads:*" in listing.stdout
    assert key not in listing.stdout
    row = next(line for line in listing.stdout.splitlines() if "robot" in line)
    key_id = row.split()[0]
    revoked = run("revoke", key_id)
    assert revoked.exit_code == 0, revoked.output
    assert client.get("/api/v1/leads", headers={"X-API-Key": key}).status_code == 401
    assert run("list").stdout.count("robot") == 1


@pytest.mark.parametrize("args", [
    ("create", "--name", "x"),
    ("create", "--name", "x", "--scopes", "a:read", "--partner", str(uuid.uuid4())),
])
def test_create_needs_exactly_one_of_scopes_or_partner(run, args):
    result = run(*args)
    assert result.exit_code == 2
    assert result.stdout == ""


def test_a_malformed_scope_is_an_error_not_a_key(run):
    result = run("create", "--name", "x", "--scopes", "leads:delete")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert "leads:delete" in result.stderr


def test_revoking_an_unknown_key_fails(run):
    result = run("revoke", str(uuid.uuid4()))
    assert result.exit_code != 0
    assert "No API key" in result.stderr


def test_an_unmigrated_database_is_a_clear_error_with_exit_code_2(run, make_database):
    result = run("list", database_url=make_database("bare"))
    assert result.exit_code == 2
    assert "crm migrate" in result.stderr
