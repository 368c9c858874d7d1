"""Every GraphQL document ``aios-dagster remote`` sends is valid against the installed Dagster's
schema (a Dagster upgrade that renames a field fails here, before an operator meets it)."""

import pytest
from dagster_graphql.schema import create_schema
from graphql import validate

from aios_dagster.lib import operator_api

DOCUMENTS = ["_START_SENSOR", "_START_SCHEDULE", "_LAUNCH_BACKFILL", "_BACKFILL", "_RUNS"]


@pytest.mark.parametrize("name", DOCUMENTS)
def test_document_matches_the_webservers_schema(name: str) -> None:
    document = getattr(operator_api, name)
    errors = validate(create_schema().graphql_schema, getattr(document, "document", document))
    assert not errors, [e.message for e in errors]
