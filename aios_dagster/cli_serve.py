"""``aios-dagster serve``: run a real-time handler (``defs/realtime/<name>/``) until it is stopped.

A long-running process (a Deployment in ``deploy/``): it consumes new-mail events and decides
each within seconds. SIGTERM stops it between two passes; whatever it had not committed is
delivered again to the next process, which finds the decisions already written and keeps them.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from aios_dagster.settings import Settings


def cmd_serve(args: argparse.Namespace, settings: Settings) -> None:
    from aios_dagster.cli import CliError
    from aios_dagster.lib.realtime.service import build_runtime

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    instance = None
    home = os.environ.get("DAGSTER_HOME") or str(settings.dagster_home)
    if not args.no_dagster and (Path(home) / "dagster.yaml").exists():
        import dagster as dg

        os.environ["DAGSTER_HOME"] = home
        instance = dg.DagsterInstance.get()
    from aios_dagster.lib.connectors.source import SourceError

    try:
        runtime = build_runtime(settings, args.handler, instance=instance)
    except (ValueError, SourceError) as exc:  # a bad declaration, a topic that is not there
        raise CliError(str(exc)) from None
    stop = threading.Event()

    def _stop(_signum: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    sys.stderr.write(f"handler {runtime.spec.name}: consuming {runtime.source.describe()}\n")
    sys.stderr.flush()
    try:
        stats = runtime.run(stop, max_events=args.max_events, idle_exit_s=args.idle_exit_s)
    finally:
        runtime.source.close()
        runtime.ctx.store.close()
        if runtime.ctx.sinks is not None:
            runtime.ctx.sinks.close()
        if instance is not None:
            instance.dispose()
    sys.stdout.write(json.dumps({"handler": runtime.spec.name, **stats.snapshot()}) + "\n")


def add_serve_commands(sub: Any, fmt: type[argparse.HelpFormatter]) -> None:
    serve = sub.add_parser(
        "serve",
        help="run a real-time handler: decide each new email within seconds",
        description="Consume new-mail events (Kafka or a drop folder, as the handler declares), "
        "land, feature, score and persist each decision, committing the source only after it "
        "is durable. Runs until SIGTERM/Ctrl-C.",
        formatter_class=fmt,
    )
    serve.add_argument("handler", nargs="?", help="handler name (the only one if omitted)")
    serve.add_argument("--max-events", type=int, help="stop after this many events")
    serve.add_argument(
        "--idle-exit-s", type=float, help="stop after this many seconds without an event"
    )
    serve.add_argument(
        "--no-dagster",
        action="store_true",
        help="do not report to the Dagster instance (reports still go to the online store)",
    )
    serve.set_defaults(run=cmd_serve)
