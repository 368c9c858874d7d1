"""Every job runs its steps with the executor AIOS_EXECUTOR names; a wrong name fails the load."""

import pytest

from aios_dagster.definitions import build_definitions
from aios_dagster.settings import Settings


def test_jobs_fork_their_steps_from_a_preloaded_server_by_default(tmp_path) -> None:
    defs = build_definitions(Settings.from_env({"AIOS_DATA_DIR": str(tmp_path)}))
    scoring = defs.resolve_job_def("scoring_job").executor_def
    assert scoring.name == "multiprocess_forkserver"
    config = scoring.config_schema.resolve_config({}).value["config"]  # what configured() fixed
    preload = {"preload_modules": ["aios_dagster.definitions"]}
    assert config["start_method"] == {"forkserver": preload}
    # The latency-bound micro-batch job keeps its own in-process executor.
    assert defs.resolve_job_def("microbatch_job").executor_def.name == "in_process"


def test_the_other_executors_are_chosen_by_name_and_a_wrong_name_is_refused(tmp_path) -> None:
    env = {"AIOS_DATA_DIR": str(tmp_path), "AIOS_EXECUTOR": "in_process"}
    defs = build_definitions(Settings.from_env(env))
    assert defs.resolve_job_def("triage_job").executor_def.name == "in_process"
    spawn = build_definitions(Settings.from_env({**env, "AIOS_EXECUTOR": "spawn"}))
    assert spawn.resolve_job_def("triage_job").executor_def.name == "multiprocess"
    with pytest.raises(ValueError, match="AIOS_EXECUTOR='threads'"):
        build_definitions(Settings.from_env({**env, "AIOS_EXECUTOR": "threads"}))
