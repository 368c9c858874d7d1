"""Per-job pod sizes on Kubernetes: each job's ``dagster-k8s/config`` tag, from one file.

``deploy/k8s_job_tags.yaml`` holds every job's CPU and memory (dagster-k8s'
``UserDefinedDagsterK8sConfig``); the production image ships it and ``AIOS_K8S_JOB_TAGS``
points at it. Where it is not set (the embedded profile, tests) jobs carry no such tag. A job
the file does not name gets none (the run launcher's defaults apply), and the tests in
``tests/deploy`` hold the file's job names to the definitions both ways.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

import yaml

from aios_dagster.settings import current_settings

TAG = "dagster-k8s/config"


@functools.cache
def _read(path: str) -> dict[str, Any]:
    """The file's jobs; a relative path is the project's (``/app`` in the image)."""
    where = Path(path)
    if not where.is_absolute():
        where = Path(os.environ.get("AIOS_PROJECT_DIR") or Path(__file__).parents[2]) / where
    doc = yaml.safe_load(where.read_text()) or {}
    jobs = doc.get("jobs")
    if not isinstance(jobs, dict):
        raise ValueError(f"{path}: expected a 'jobs:' mapping of job name to dagster-k8s config")
    return jobs


def k8s_job_tags(job_name: str) -> dict[str, Any]:
    """``{"dagster-k8s/config": ...}`` for ``job_name`` when a tags file is configured."""
    path = current_settings().k8s_job_tags
    if not path:
        return {}
    config = _read(str(path)).get(job_name)
    return {TAG: config} if config else {}
