"""Handler declarations: the shipped ones load, and a broken one fails naming file and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from aios_dagster.lib.realtime.component import HANDLER_COMPONENT, handler_specs, load_handler
from aios_dagster.settings import Settings


def _declare(tmp: Path, body: str) -> Path:
    path = tmp / "defs.yaml"
    path.write_text(f"type: {HANDLER_COMPONENT}\nattributes:\n{body}")
    return path


BASE = """  name: live
  model: email_router
  connector: raw_emails
"""


def test_the_shipped_handlers_load_and_kafka_only_where_a_broker_is_configured(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AIOS_KAFKA_BOOTSTRAP", raising=False)
    plain = Settings.from_env({"AIOS_DATA_DIR": str(tmp_path)})
    assert list(handler_specs(plain)) == ["email_triage_live"]
    live = handler_specs(plain)["email_triage_live"]
    assert live.source_config().path == str(plain.live_mailbox_dir)

    monkeypatch.setenv("AIOS_KAFKA_BOOTSTRAP", "10.0.0.5:9092")
    specs = handler_specs(Settings.from_env({"AIOS_DATA_DIR": str(tmp_path)}))
    kafka = specs["email_triage_kafka"].source_config()
    assert kafka.bootstrap_servers == "10.0.0.5:9092" and kafka.topic == "support-mail"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            "  source: {kind: folder, path: /x}\n  steps: [parse, score, persist]\n",
            r"'score' needs \['features'\]",
        ),
        (
            "  source: {kind: folder, path: /x}\n  steps: [parse, land, features, score]\n",
            "must end in 'persist'",
        ),
        ("  source: {kind: folder, path: /x}\n  steps: [parse, classify]\n", "unknown step"),
        (
            "  source: {kind: kafka, topic: t}\n",
            r"source\.kafka\.bootstrap_servers: Field required",
        ),
        ("  source: {kind: pigeon}\n", "source"),
        (
            "  source: {kind: folder, path: /x}\n"
            "  sinks: {topics: {bootstrap_servers: b, routed: r, review: v}}\n",
            "no 'sink' step delivers to them",
        ),
        (
            "  source: {kind: folder, path: /x}\n"
            "  steps: [parse, land, features, score, sink, persist]\n"
            "  sinks: {rpa: {url: u, folder_id: 1, token: t}}\n",
            r"sinks\.rpa\.queues: Field required",
        ),
        (
            "  source: {kind: folder, path: /x}\n  repeat_sender: {levels: [P3, P2, P1]}\n",
            "needs the 'remember' step",
        ),
        (
            "  source: {kind: folder, path: /x}\n  batch: {max_events: 0}\n",
            r"max_events.*greater than 0",
        ),
    ],
)
def test_a_broken_declaration_names_the_file_and_what_is_wrong(
    tmp_path: Path, extra: str, message: str
) -> None:
    path = _declare(tmp_path, BASE + extra)
    with pytest.raises(ValueError, match=message) as raised:
        load_handler(path, {"sources_dir": "/s"})
    assert str(path) in str(raised.value)


def test_serve_names_an_unknown_handler_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from aios_dagster.cli import main

    monkeypatch.setenv("AIOS_DATA_DIR", str(tmp_path))
    with pytest.raises(SystemExit) as raised:
        main(["serve", "no_such_handler", "--no-dagster"])
    assert str(raised.value) == (
        "aios-dagster serve: no enabled handler 'no_such_handler' (declared: ['email_triage_live'])"
    )
