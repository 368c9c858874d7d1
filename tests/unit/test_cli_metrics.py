"""``aios-dagster metrics`` without an instance says how to make one, in one line."""

from pathlib import Path

import pytest

from aios_dagster.cli import main


def test_metrics_without_an_instance_fails_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIOS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    (tmp_path / "data").mkdir()
    with pytest.raises(SystemExit) as exc:
        main(["metrics", "--port", "1"])
    message = str(exc.value)
    assert message.startswith("aios-dagster metrics: no Dagster instance at")
    assert "make demo" in message and "\n" not in message
