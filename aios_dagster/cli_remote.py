"""``aios-dagster remote``: an operator's commands against a running webserver's GraphQL API.

Needs only the webserver's address (``--url``, else ``$AIOS_DAGSTER_URL``): no data folder, no
instance configuration. Every command prints one JSON object, so a script can read it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict
from typing import Any


def _client(args: argparse.Namespace) -> Any:
    from aios_dagster.lib.operator_api import OperatorClient

    return OperatorClient(args.url, location=args.location)


def cmd_remote(args: argparse.Namespace) -> dict[str, Any]:
    """Run one ``remote`` command; the JSON object it prints."""
    client = _client(args)
    if args.action == "launch":
        run_id = client.launch(args.job, partition=args.partition)
        out: dict[str, Any] = {"run_id": run_id, "job": args.job, "partition": args.partition}
        if args.wait:
            out["status"] = client.wait_run(run_id, timeout_s=args.wait)
        return out
    if args.action == "backfill":
        partitions = [p.strip() for p in args.partitions.split(",") if p.strip()]
        return {"backfill_id": client.backfill(args.job, partitions), "partitions": partitions}
    if args.action == "status":
        if args.backfill:
            return asdict(client.backfill_status(args.id))
        return {"run_id": args.id, "status": client.run_status(args.id)}
    if args.action == "start-sensor":
        return {"sensor": args.name, "status": client.start_sensor(args.name)}
    if args.action == "start-schedule":
        return {"schedule": args.name, "status": client.start_schedule(args.name)}
    raise ValueError(args.action)


def _print(args: argparse.Namespace) -> None:
    from aios_dagster.cli import CliError
    from aios_dagster.lib.operator_api import OperatorError

    try:
        sys.stdout.write(json.dumps(cmd_remote(args), sort_keys=True) + "\n")
    except (OperatorError, TimeoutError) as exc:
        raise CliError(str(exc)) from None
    except OSError as exc:
        raise CliError(f"cannot reach the webserver at {args.url}: {exc}") from None


def add_remote_commands(sub: Any, fmt: type[argparse.HelpFormatter]) -> None:
    remote = sub.add_parser(
        "remote",
        help="launch runs and backfills, start sensors and schedules on a running webserver",
        description="Talk to a running Dagster webserver through its GraphQL API: launch a "
        "(partitioned) job, backfill days, read a run's or a backfill's status, turn a sensor "
        "or schedule on. Prints JSON.",
        formatter_class=fmt,
    )
    remote.add_argument(
        "--url",
        default=os.environ.get("AIOS_DAGSTER_URL", "http://127.0.0.1:3000"),
        help="the webserver ($AIOS_DAGSTER_URL)",
    )
    remote.add_argument("--location", default="aios_dagster", help="code location name")
    actions = remote.add_subparsers(
        dest="action", required=True, metavar="ACTION", help="what to do (each has --help)"
    )
    launch = actions.add_parser("launch", help="queue a run of a job", formatter_class=fmt)
    launch.add_argument("job", help="job name, e.g. scoring_job")
    launch.add_argument("--partition", help="the day, for a partitioned job (YYYY-MM-DD)")
    launch.add_argument(
        "--wait", type=float, default=0, help="seconds to wait for the run to finish (0: don't)"
    )
    backfill = actions.add_parser(
        "backfill", help="one run of a partitioned job per day", formatter_class=fmt
    )
    backfill.add_argument("job", help="a partitioned job, e.g. scoring_job")
    backfill.add_argument("--partitions", required=True, help="comma-separated days")
    status = actions.add_parser("status", help="a run's or backfill's status", formatter_class=fmt)
    status.add_argument("id", help="run id, or backfill id with --backfill")
    status.add_argument("--backfill", action="store_true", help="the id is a backfill's")
    for name in ("start-sensor", "start-schedule"):
        action = actions.add_parser(name, help=f"turn a {name[6:]} on", formatter_class=fmt)
        action.add_argument("name", help=f"the {name[6:]}'s name")
    remote.set_defaults(run=_print)
