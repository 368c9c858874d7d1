"""What an operator does to a running deployment, through the Dagster webserver's GraphQL API.

Launching a day's scoring, backfilling a range of days, turning a sensor or schedule on and
reading how runs and backfills went, from a laptop or a CI job, with nothing but the
webserver's URL: no code location, no instance configuration, no database credentials.
``dagster_graphql``'s client covers launching a run and reading its status; the rest (sensors,
schedules, backfills, runs by tag) are plain GraphQL documents sent with ``gql``, the client
library ``dagster_graphql`` itself is built on.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from dagster_graphql import DagsterGraphQLClient, DagsterGraphQLClientError
from gql import Client, gql
from gql.transport.exceptions import TransportError
from gql.transport.requests import RequestsHTTPTransport

LOCATION = "aios_dagster"
"""The code location's name in the workspace (deploy/ and tests name it so)."""
REPOSITORY = "__repository__"
"""The repository name Dagster gives a module's ``@dg.definitions``."""
FINISHED_RUN = frozenset({"SUCCESS", "FAILURE", "CANCELED"})
FINISHED_BACKFILL = frozenset(
    {"COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED"}
)

# Every Dagster error type implements the ``Error`` interface, so one spread reads any of them.
_START_SENSOR = gql(
    """
    mutation($selector: SensorSelector!) {
      startSensor(sensorSelector: $selector) {
        __typename
        ... on Error { message }
        ... on Sensor { sensorState { status } }
      }
    }"""
)
_START_SCHEDULE = gql(
    """
    mutation($selector: ScheduleSelector!) {
      startSchedule(scheduleSelector: $selector) {
        __typename
        ... on Error { message }
        ... on ScheduleStateResult { scheduleState { status } }
      }
    }"""
)
_LAUNCH_BACKFILL = gql(
    """
    mutation($params: LaunchBackfillParams!) {
      launchPartitionBackfill(backfillParams: $params) {
        __typename
        ... on Error { message }
        ... on LaunchBackfillSuccess { backfillId }
        ... on InvalidStepError { invalidStepKey }
        ... on InvalidOutputError { invalidOutputName }
      }
    }"""
)
_BACKFILL = gql(
    """
    query($id: String!) {
      partitionBackfillOrError(backfillId: $id) {
        __typename
        ... on Error { message }
        ... on PartitionBackfill {
          status
          partitionNames
          runs { runId status tags { key value } }
        }
      }
    }"""
)
_RUNS = gql(
    """
    query($filter: RunsFilter, $limit: Int) {
      runsOrError(filter: $filter, limit: $limit) {
        __typename
        ... on Error { message }
        ... on Runs {
          results { runId jobName status startTime endTime tags { key value } }
        }
      }
    }"""
)


class OperatorError(RuntimeError):
    """The webserver refused or failed a request; the message is its own."""


@dataclass(frozen=True)
class RunInfo:
    """One run as the webserver reports it."""

    run_id: str
    job: str
    status: str
    tags: dict[str, str]
    start: float | None
    end: float | None


@dataclass(frozen=True)
class BackfillInfo:
    """A backfill and the runs it has launched so far."""

    backfill_id: str
    status: str
    partitions: tuple[str, ...]
    runs: tuple[RunInfo, ...]

    @property
    def finished(self) -> bool:
        return self.status in FINISHED_BACKFILL


class OperatorClient:
    """The webserver at ``url`` (``http://host:port``), for the project's code location."""

    def __init__(
        self,
        url: str,
        *,
        location: str = LOCATION,
        repository: str = REPOSITORY,
        timeout_s: float = 60.0,
    ) -> None:
        self.url = url.rstrip("/")
        self.location = location
        self.repository = repository
        hostport = self.url.split("://", 1)[-1]
        host, _, port = hostport.partition(":")
        self._runs = DagsterGraphQLClient(
            host, port_number=int(port) if port else None, use_https=url.startswith("https")
        )
        transport = RequestsHTTPTransport(url=f"{self.url}/graphql", timeout=int(timeout_s))
        self._gql = Client(transport=transport, fetch_schema_from_transport=False)

    def _unreachable(self, exc: Exception) -> OperatorError:
        """One line naming the webserver and what went wrong (not the query text)."""
        cause = exc.__cause__ or exc
        reason = str(exc.args[1] if len(exc.args) > 1 else cause).splitlines()[0]
        return OperatorError(f"webserver at {self.url}: {reason}")

    def _execute(self, document: Any, variables: dict[str, Any], field: str) -> dict[str, Any]:
        try:
            answer = self._gql.execute(document, variable_values=variables)[field]
        except TransportError as exc:
            raise self._unreachable(exc) from exc
        if answer["__typename"] in ("PythonError", "UnauthorizedError") or "message" in answer:
            raise OperatorError(f"{field}: {answer['__typename']}: {answer.get('message')}")
        return answer

    def _repo(self) -> dict[str, str]:
        return {"repositoryName": self.repository, "repositoryLocationName": self.location}

    def start_sensor(self, name: str) -> str:
        """Turn sensor ``name`` on; returns its status as the webserver now has it."""
        selector = {**self._repo(), "sensorName": name}
        answer = self._execute(_START_SENSOR, {"selector": selector}, "startSensor")
        return str(answer["sensorState"]["status"])

    def start_schedule(self, name: str) -> str:
        """Turn schedule ``name`` on; returns its status."""
        selector = {**self._repo(), "scheduleName": name}
        answer = self._execute(_START_SCHEDULE, {"selector": selector}, "startSchedule")
        return str(answer["scheduleState"]["status"])

    def launch(
        self, job: str, *, partition: str | None = None, tags: dict[str, str] | None = None
    ) -> str:
        """Queue a run of ``job`` (of one ``partition`` for a partitioned job); its run id."""
        run_tags = dict(tags or {})
        if partition is not None:
            run_tags["dagster/partition"] = partition
        try:
            return self._runs.submit_job_execution(
                job,
                repository_location_name=self.location,
                repository_name=self.repository,
                tags=run_tags or None,
            )
        except DagsterGraphQLClientError as exc:
            raise self._unreachable(exc) from exc

    def run_status(self, run_id: str) -> str:
        try:
            return str(self._runs.get_run_status(run_id).value)
        except DagsterGraphQLClientError as exc:
            raise self._unreachable(exc) from exc

    def wait_run(self, run_id: str, timeout_s: float, poll_s: float = 1.0) -> str:
        """Block until the run has finished; its final status (raises when it has not)."""
        deadline = time.monotonic() + timeout_s
        while True:
            status = self.run_status(run_id)
            if status in FINISHED_RUN:
                return status
            if time.monotonic() > deadline:
                raise TimeoutError(f"run {run_id} still {status} after {timeout_s:.0f} s")
            time.sleep(poll_s)

    def backfill(self, job: str, partitions: list[str], *, title: str | None = None) -> str:
        """Launch a backfill of ``job`` over ``partitions`` (one run per partition); its id.

        A job backfill (not an asset backfill), so each run carries the job's tags and the run
        queue's tag limits apply to it.
        """
        params: dict[str, Any] = {
            "selector": {
                "partitionSetName": f"{job}_partition_set",
                "repositorySelector": self._repo(),
            },
            "partitionNames": partitions,
        }
        if title:
            params["title"] = title
        answer = self._execute(_LAUNCH_BACKFILL, {"params": params}, "launchPartitionBackfill")
        if answer["__typename"] != "LaunchBackfillSuccess":
            raise OperatorError(f"launchPartitionBackfill: {answer}")
        return str(answer["backfillId"])

    def backfill_status(self, backfill_id: str) -> BackfillInfo:
        answer = self._execute(_BACKFILL, {"id": backfill_id}, "partitionBackfillOrError")
        return BackfillInfo(
            backfill_id,
            str(answer["status"]),
            tuple(answer["partitionNames"] or ()),
            tuple(_run_info(run, job="") for run in answer["runs"]),
        )

    def runs(
        self, *, job: str | None = None, tags: dict[str, str] | None = None, limit: int = 100
    ) -> list[RunInfo]:
        """Runs newest first, of ``job`` and/or carrying every one of ``tags``."""
        run_filter: dict[str, Any] = {}
        if job:
            run_filter["pipelineName"] = job
        if tags:
            run_filter["tags"] = [{"key": k, "value": v} for k, v in tags.items()]
        answer = self._execute(_RUNS, {"filter": run_filter, "limit": limit}, "runsOrError")
        return [_run_info(run, job=run["jobName"]) for run in answer["results"]]


def _run_info(run: dict[str, Any], *, job: str) -> RunInfo:
    return RunInfo(
        run_id=str(run["runId"]),
        job=job or str(run.get("jobName") or ""),
        status=str(run["status"]),
        tags={t["key"]: t["value"] for t in run.get("tags") or ()},
        start=run.get("startTime"),
        end=run.get("endTime"),
    )
