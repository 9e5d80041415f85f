"""Settings are read from the environment and a bad value names its variable."""
from __future__ import annotations

import pytest

from services.common.identity import generate_keypair
from services.common.settings import SettingsError, from_env

PRIVATE, PUBLIC = generate_keypair()


def test_defaults_use_a_sqlite_file_under_the_data_dir():
    s = from_env("leads", {"CRM_IDENTITY_PUBLIC_KEY": PUBLIC, "CRM_DATA_DIR": "/tmp/crm-data"})
    assert s.database_url == "sqlite:////tmp/crm-data/leads.db"
    assert s.amqp_url.startswith("amqp://")
    assert s.gateway_port == 8080


def test_a_per_service_database_url_wins_over_the_shared_one():
    s = from_env("contacts", {"CRM_IDENTITY_PUBLIC_KEY": PUBLIC, "DATABASE_URL": "postgresql://a/b",
                              "CONTACTS_DATABASE_URL": "postgresql://c/d"})
    assert s.database_url == "postgresql://c/d"


@pytest.mark.parametrize("variable, value", [
    ("CRM_GATEWAY_PORT", "eighty"),
    ("CRM_GATEWAY_PORT", "70000"),
    ("AMQP_URL", "http://broker"),
    ("LEADS_DATABASE_URL", "mysql://x"),
    ("CRM_RETRY_DELAYS", "1,soon"),
    ("CRM_PREFETCH", "0"),
    ("CRM_LOG_LEVEL", "chatty"),
    ("CRM_IDENTITY_TOKEN_TTL", "60"),
    ("CRM_IDENTITY_TOKEN_TTL", "0"),
    ("CRM_RATE_LIMIT", "600"),
    ("CRM_RATE_LIMIT", "600/fortnight"),
    ("CRM_RATE_LIMIT", "0/minute"),
])
def test_a_malformed_value_stops_start_up_naming_the_variable(variable, value):
    env = {"CRM_IDENTITY_PUBLIC_KEY": PUBLIC, variable: value}
    with pytest.raises(SettingsError) as err:
        from_env("leads", env)
    assert err.value.variable == variable
    assert variable in str(err.value)


def test_a_service_needs_the_identity_public_key_and_the_gateway_the_private_key():
    with pytest.raises(SettingsError, match="CRM_IDENTITY_PUBLIC_KEY"):
        from_env("leads", {})
    with pytest.raises(SettingsError, match="CRM_IDENTITY_PRIVATE_KEY"):
        from_env("gateway", {"CRM_IDENTITY_PUBLIC_KEY": PUBLIC}, signs_identity=True)
    gateway = from_env("gateway", {"CRM_IDENTITY_PRIVATE_KEY": PRIVATE}, signs_identity=True)
    assert gateway.identity_private_key == PRIVATE and gateway.identity_public_key == PUBLIC
    assert gateway.identity_token_ttl == 30


def test_a_service_refuses_to_start_holding_the_private_key():
    """No service, and no plugin inside one, may be able to mint identity tokens."""
    for variable in ("CRM_IDENTITY_PRIVATE_KEY", "CRM_IDENTITY_PRIVATE_KEY_FILE"):
        with pytest.raises(SettingsError) as err:
            from_env("leads", {"CRM_IDENTITY_PUBLIC_KEY": PUBLIC, variable: PRIVATE})
        assert err.value.variable == "CRM_IDENTITY_PRIVATE_KEY"


def test_the_old_shared_secret_is_refused_with_directions():
    with pytest.raises(SettingsError, match="crm identity init") as err:
        from_env("leads", {"CRM_IDENTITY_PUBLIC_KEY": PUBLIC, "CRM_IDENTITY_SECRET": "x" * 40})
    assert err.value.variable == "CRM_IDENTITY_SECRET"


def test_keys_are_read_from_files_and_checked(tmp_path):
    public_file = tmp_path / "public.pem"
    public_file.write_text(PUBLIC)
    assert from_env("leads", {"CRM_IDENTITY_PUBLIC_KEY_FILE": str(public_file)}).identity_public_key == PUBLIC
    with pytest.raises(SettingsError) as err:
        from_env("leads", {"CRM_IDENTITY_PUBLIC_KEY_FILE": str(tmp_path / "missing.pem")})
    assert err.value.variable == "CRM_IDENTITY_PUBLIC_KEY_FILE"
    with pytest.raises(SettingsError) as err:
        from_env("leads", {"CRM_IDENTITY_PUBLIC_KEY": "-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----\n"})
    assert err.value.variable == "CRM_IDENTITY_PUBLIC_KEY"
    _other_private, other_public = generate_keypair()
    with pytest.raises(SettingsError, match="not the public half"):
        from_env("gateway", {"CRM_IDENTITY_PRIVATE_KEY": PRIVATE, "CRM_IDENTITY_PUBLIC_KEY": other_public},
                 signs_identity=True)


def test_retry_delays_parse_as_seconds():
    assert from_env("leads", {"CRM_IDENTITY_PUBLIC_KEY": PUBLIC, "CRM_RETRY_DELAYS": "0.5, 2,10"}).retry_delays == (0.5, 2.0, 10.0)


@pytest.mark.parametrize("raw, expected", [
    (None, "600/minute"), ("3/minute", "3/minute"), ("10/second;600/minute", "10/second;600/minute"),
    ("off", None), ("0", None),
])
def test_the_rate_limit_is_a_limit_string_or_off(raw, expected):
    env = {"CRM_IDENTITY_PUBLIC_KEY": PUBLIC} | ({"CRM_RATE_LIMIT": raw} if raw is not None else {})
    assert from_env("gateway", env).rate_limit == expected


def test_web_concurrency_defaults_from_the_cpu_count():
    from services.common.settings import DEFAULT_WEB_THREADS, web_concurrency

    assert web_concurrency({}, cpu_count=1) == (1, DEFAULT_WEB_THREADS)
    assert web_concurrency({}, cpu_count=2) == (1, DEFAULT_WEB_THREADS)
    assert web_concurrency({}, cpu_count=8) == (4, DEFAULT_WEB_THREADS)
    assert web_concurrency({"CRM_WEB_PROCESSES": "3", "CRM_WEB_THREADS": "2"}, cpu_count=8) == (3, 2)


@pytest.mark.parametrize("variable", ["CRM_WEB_PROCESSES", "CRM_WEB_THREADS"])
def test_web_concurrency_names_a_bad_variable(variable):
    from services.common.settings import web_concurrency

    with pytest.raises(SettingsError) as info:
        web_concurrency({variable: "0"})
    assert info.value.variable == variable


def test_the_gateway_key_cache_lasts_a_few_seconds_unless_set():
    assert from_env("gateway", {"CRM_IDENTITY_PUBLIC_KEY": PUBLIC}).key_cache_seconds == 5.0
    assert from_env("gateway", {"CRM_IDENTITY_PUBLIC_KEY": PUBLIC, "CRM_KEY_CACHE_SECONDS": "0.5"}).key_cache_seconds == 0.5


@pytest.mark.parametrize("value", ["0", "-1", "soon"])
def test_a_key_cache_time_that_is_not_a_positive_number_names_the_variable(value):
    with pytest.raises(SettingsError) as info:
        from_env("gateway", {"CRM_IDENTITY_PUBLIC_KEY": PUBLIC, "CRM_KEY_CACHE_SECONDS": value})
    assert info.value.variable == "CRM_KEY_CACHE_SECONDS"


def test_consumer_batches_default_to_hundreds_and_a_few_milliseconds():
    s = from_env("contacts", {"CRM_IDENTITY_PUBLIC_KEY": PUBLIC})
    assert s.prefetch >= 100
    assert 100 <= s.consumer_batch_size <= s.prefetch
    assert 0 < s.consumer_batch_linger <= 0.05


def test_consumer_batch_settings_are_read_and_validated():
    env = {"CRM_IDENTITY_PUBLIC_KEY": PUBLIC, "CRM_PREFETCH": "300", "CRM_CONSUMER_BATCH_SIZE": "150",
           "CRM_CONSUMER_BATCH_LINGER": "0"}
    s = from_env("contacts", env)
    assert (s.prefetch, s.consumer_batch_size, s.consumer_batch_linger) == (300, 150, 0.0)
    assert from_env("contacts", {"CRM_IDENTITY_PUBLIC_KEY": PUBLIC, "CRM_PREFETCH": "50"}).consumer_batch_size == 50


@pytest.mark.parametrize("variable, raw", [
    ("CRM_CONSUMER_BATCH_SIZE", "0"),
    ("CRM_CONSUMER_BATCH_SIZE", "many"),
    ("CRM_CONSUMER_BATCH_SIZE", "1000"),  # more than the prefetch could ever deliver
    ("CRM_CONSUMER_BATCH_LINGER", "-0.1"),
    ("CRM_CONSUMER_BATCH_LINGER", "2"),
    ("CRM_CONSUMER_BATCH_LINGER", "soon"),
])
def test_a_bad_consumer_batch_setting_names_its_variable(variable, raw):
    with pytest.raises(SettingsError) as info:
        from_env("contacts", {"CRM_IDENTITY_PUBLIC_KEY": PUBLIC, variable: raw})
    assert info.value.variable == variable


def test_the_base_currency_is_eur_unless_set_and_is_kept_in_capitals():
    assert from_env("contacts", {"CRM_IDENTITY_PUBLIC_KEY": PUBLIC}).base_currency == "EUR"
    assert from_env("contacts", {"CRM_IDENTITY_PUBLIC_KEY": PUBLIC, "CRM_BASE_CURRENCY": " chf "}).base_currency == "CHF"


@pytest.mark.parametrize("raw", ["EURO", "EUE", "E", "12€", "ABC"])
def test_a_base_currency_that_is_no_iso_4217_code_stops_start_up(raw):
    with pytest.raises(SettingsError) as info:
        from_env("contacts", {"CRM_IDENTITY_PUBLIC_KEY": PUBLIC, "CRM_BASE_CURRENCY": raw})
    assert info.value.variable == "CRM_BASE_CURRENCY" and "ISO 4217" in str(info.value)
