"""``aios-dagster metrics``: a Prometheus endpoint over the Dagster instance's run figures.

One long-running process (beside the daemon, or a small Deployment) that serves ``/metrics``:
each asset's newest rows, quarantined records, Triton requests, retries, failovers and latency
percentiles, review counts, drift share, and runs by job and status (see ``lib.run_metrics``).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from aios_dagster.settings import Settings


def cmd_metrics(args: argparse.Namespace, settings: Settings) -> None:
    import dagster as dg

    from aios_dagster.cli import CliError, _exit_on_signals
    from aios_dagster.lib.run_metrics import serve

    home = os.environ.get("DAGSTER_HOME") or str(settings.dagster_home)
    if not (Path(home) / "dagster.yaml").exists():
        raise CliError(f"no Dagster instance at {home}: run the pipeline first (make demo)")
    os.environ["DAGSTER_HOME"] = home
    _exit_on_signals()
    with dg.DagsterInstance.get() as instance:
        server, thread = serve(instance, args.host, args.port)
        sys.stdout.write(f"Prometheus metrics on http://{args.host}:{args.port}/metrics\n")
        sys.stdout.flush()
        try:
            thread.join()
        except (KeyboardInterrupt, SystemExit):
            server.shutdown()
            raise


def add_metrics_commands(sub: Any, fmt: type[argparse.HelpFormatter]) -> None:
    metrics = sub.add_parser(
        "metrics",
        help="serve Prometheus metrics of the runs (rows, quarantine, Triton latency, ...)",
        description="Serve /metrics: the newest figures of every asset and runs by job and "
        "status, read from the Dagster instance at each scrape.",
        formatter_class=fmt,
    )
    metrics.add_argument("--host", default="127.0.0.1", help="address to listen on")
    metrics.add_argument("--port", type=int, default=9108, help="port to listen on")
    metrics.set_defaults(run=cmd_metrics)
