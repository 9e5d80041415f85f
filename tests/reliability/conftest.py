from tests.support.fixtures import internal_client, suite  # noqa: F401
