"""``aios-dagster audit verify``: is the decision log still what was written?

Recomputes every sealed decision-log part and the hash chain of each model
(:mod:`~aios_dagster.lib.inference.log_chain`) and, when the Dagster instance of this data
folder exists, compares each chain head with the copy its runs recorded as asset metadata. One
line per problem (edited, deleted, inserted, reordered part, or a rewritten chain) and a non-zero
exit status; one line per model when the log is intact.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from aios_dagster.settings import Settings


def recorded_heads(settings: Settings) -> dict[str, str]:
    """The chain heads recorded in this data folder's Dagster instance (none if it has none)."""
    import dagster as dg

    from aios_dagster.lib.inference import log_chain
    from aios_dagster.lib.lifecycle.assets import catalog

    if not (settings.dagster_home / "dagster.yaml").exists():
        return {}
    os.environ["DAGSTER_HOME"] = str(settings.dagster_home)
    with dg.DagsterInstance.get() as instance:
        return log_chain.recorded_heads(instance, catalog())


def cmd_audit_verify(args: argparse.Namespace, settings: Settings) -> None:
    from aios_dagster.cli import CliError
    from aios_dagster.lib.inference.log_chain import summary, verify

    log_dir = settings.lake_dir / "decision_log"
    if not log_dir.exists():
        raise CliError(f"no decision log at {log_dir}: nothing has been scored yet")
    recorded = {} if args.no_dagster else recorded_heads(settings)
    problems = verify(log_dir, recorded)
    for problem in problems:
        _out(str(problem))
    if problems:
        raise CliError(f"the decision log at {log_dir} fails verification ({len(problems)})")
    for model, chain in summary(log_dir).items():
        _out(f"{model}: {chain['parts']} parts intact, chain head {chain['head'][:16]}")
    checked = f"{len(recorded)} heads match the Dagster event log" if recorded else "no copy"
    _out(f"decision log intact ({checked})")


def _out(line: str) -> None:
    sys.stdout.write(line + "\n")


def add_audit_commands(sub: Any, fmt: type[argparse.HelpFormatter]) -> None:
    audit = sub.add_parser(
        "audit",
        help="verify the decision log has not been altered",
        description="Checks on the audit records.",
        formatter_class=fmt,
    )
    audit_sub = audit.add_subparsers(dest="audit_command", required=True, metavar="ACTION")
    verify = audit_sub.add_parser(
        "verify",
        help="recompute the decision log's hash chains",
        description="Recompute every decision-log part and each model's hash chain, and compare "
        "the chain heads with the copies in the Dagster event log. Exits 1 naming each edited, "
        "deleted, inserted or reordered part.",
        formatter_class=fmt,
    )
    verify.add_argument(
        "--no-dagster",
        action="store_true",
        help="check the chains only, not against the heads the Dagster runs recorded",
    )
    verify.set_defaults(run=cmd_audit_verify)
