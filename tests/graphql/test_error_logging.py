"""Errors are logged by what they are, never by what the client sent (app.logs: no personal data)."""

from __future__ import annotations

import logging

import pytest
from graphql import GraphQLError

from app.graphql import schema as schema_module
from tests.factories import OPEN

SECRET_HOLDER = "SECRET-HOLDER-wx-openid-777"
SECRET_BANK = "6222029999887766"


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, dict]] = []

    def info(self, event: str, **fields: object) -> None:
        self.events.append(("info", event, fields))

    def error(self, event: str, **fields: object) -> None:
        self.events.append(("error", event, fields))


@pytest.fixture
def recorded(monkeypatch, caplog) -> Recorder:
    recorder = Recorder()
    monkeypatch.setattr(schema_module, "log", recorder)
    caplog.set_level(logging.DEBUG)
    return recorder


def _leaks(recorder: Recorder, caplog) -> list[str]:
    logged = [repr(event) for event in recorder.events] + [record.getMessage() for record in caplog.records]
    return [line for line in logged if SECRET_HOLDER in line or SECRET_BANK in line]


async def test_a_refused_variable_is_logged_by_its_code_not_its_value(api, recorded, caplog) -> None:
    variables = {"input": {"tenant": "wuhan", "holderRef": SECRET_HOLDER, "kind": "BANK_LINKED",
                           "acceptedAgreement": True, "bankAccountRef": SECRET_BANK, "x": 1}}
    errors = await api.errors(OPEN, as_="wuhan-app", variables=variables)
    assert errors[0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert SECRET_HOLDER in errors[0]["message"]  # the client is told exactly what was wrong with its input
    assert ("info", "graphql_error", {"operation": None, "path": None, "code": "BAD_USER_INPUT"}) in recorded.events
    assert _leaks(recorded, caplog) == []
    assert not [record for record in caplog.records if record.name == "strawberry.execution"]


async def test_a_document_that_does_not_parse_is_logged_without_its_text(api, recorded, caplog) -> None:
    errors = await api.errors('query { tenant(slug: "%s" ' % SECRET_HOLDER, as_="wuhan-app")
    assert errors[0]["extensions"]["code"] == "GRAPHQL_PARSE_FAILED"
    assert [event for event in recorded.events if event[2].get("code") == "GRAPHQL_PARSE_FAILED"]
    assert _leaks(recorded, caplog) == []


def test_a_bug_is_logged_at_error_with_its_type_and_frames_not_its_message(recorded, caplog) -> None:
    def resolver() -> None:
        raise ValueError(f"holder {SECRET_HOLDER} has bank account {SECRET_BANK}")

    try:
        resolver()
    except ValueError as bug:
        error = GraphQLError("wrapped", path=["openAccount"], original_error=bug)
    schema_module.build_schema().process_errors([error])
    [(level, event, fields)] = recorded.events
    assert (level, event, fields["error"], fields["path"]) == ("error", "graphql_unexpected_error", "ValueError",
                                                              "openAccount")
    assert fields["frames"][-1].endswith(" resolver") and "test_error_logging.py" in fields["frames"][-1]
    assert _leaks(recorded, caplog) == []
