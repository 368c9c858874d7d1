"""Run the whole reference workflow for real on small generated data (shared by tests)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import dagster as dg

from aios_dagster.lib.generator import GenerationManifest, generate_reference_data
from aios_dagster.lib.serving.launcher import LocalTritonServer
from aios_dagster.settings import Settings

SMALL = {"emails_per_week": 1_200, "customers": 300, "weeks": 2, "seed": 11}


@dataclass
class PipelineRun:
    settings: Settings
    generated: GenerationManifest
    summary: dict
    instance: dg.DagsterInstance
    server: LocalTritonServer


def settings_for(data_dir: Path) -> Settings:
    return Settings.from_env({"AIOS_DATA_DIR": str(data_dir)})


def generate(settings: Settings, *, drift: bool) -> GenerationManifest:
    return generate_reference_data(
        settings.sources_dir, start_date=settings.start_date, drift=drift, **SMALL
    )
