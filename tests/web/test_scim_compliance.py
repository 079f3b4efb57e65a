"""An RFC 7643/7644 compliance checker, scim2-tester, run against a real server on loopback.

The checker reads the discovery documents, builds its model of the User resource from the
published schema, then creates, reads (with ``attributes`` and ``excludedAttributes``, also
through ``POST /.search``), replaces, patches (add, replace, remove of every attribute) and
deletes users with random values, and checks that each comes back exactly as sent. It checks
nothing Tokensmith does not offer: ServiceProviderConfig says no bulk, sort, ETag or password
change, and ResourceTypes lists only User (no Groups), so none of those checks apply.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx2
import pytest
from scim2_client.engines.httpx2 import SyncSCIMClient
from scim2_tester import CheckResult, Status, check_server

from tests.support.scim import provisioning_secret, provisioning_server
from tests.support.servers import LiveServer

SECRET = provisioning_secret()
DISCOVERY_CHECKS = {
    "service_provider_config_endpoint",
    "service_provider_config_endpoint_methods",
    "query_all_resource_types",
    "query_resource_type_by_id",
    "resource_types_schema_validation",
    "access_invalid_resource_type",
    "resource_types_endpoint_methods",
    "query_all_schemas",
    "access_schema_by_id",
    "access_invalid_schema",
    "schemas_endpoint_methods",
    "random_url",
}
USER_CHECKS = {
    "object_creation",
    "object_query",
    "object_query_without_id",
    "object_query_with_attributes",
    "object_list_with_attributes",
    "search_with_attributes",
    "object_replacement",
    "object_deletion",
    "check_add_attribute",
    "check_remove_attribute",
    "check_replace_attribute",
}


@pytest.fixture(scope="module")
def scim_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with provisioning_server(tmp_path_factory.mktemp("scim-compliance") / "data", SECRET, "scim-compliance") as live:
        yield live


def checked(server: LiveServer) -> list[CheckResult]:
    with httpx2.Client(
        base_url=f"{server.base_url}/scim/v2", timeout=30, headers={"Authorization": f"Bearer {SECRET}"}
    ) as http:
        return check_server(SyncSCIMClient(http))


@pytest.mark.timeout(60)
def test_every_check_of_the_user_resource_and_discovery_passes(scim_server):
    offset = len(scim_server.console())
    results = checked(scim_server)
    failed = [
        f"{result.title}: {result.status.name} {result.reason}"
        for result in results
        if result.status is not Status.SUCCESS
    ]
    assert failed == []
    titles = {result.title for result in results}
    assert titles == DISCOVERY_CHECKS | USER_CHECKS, "the checker ran every check it has for these"
    assert {result.resource_type for result in results if result.title in USER_CHECKS} == {"User"}
    patched = {result.reason.split("'")[1] for result in results if result.title == "check_replace_attribute"}
    assert patched == {"userName", "name", "displayName", "emails", "externalId", "active"}
    assert "Traceback" not in scim_server.console()[offset:]
