"""The ``aios-dagster`` command: generate data, run local Triton, run the demo, serve the UI.

Commands find the project's data folder the same way from any working directory
(``find_data_dir``), and the ones that only read never create anything.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import Any

from aios_dagster.settings import Settings

DESCRIPTION = (
    "Generate the reference data, run the triage demo end to end, serve the Dagster UI with a "
    "supervised local Triton, explain or reprocess what the pipelines decided, and inspect or "
    "approve registered model versions (and serve the MLflow UI). The data "
    "folder is $AIOS_DATA_DIR, else ./data of the checkout this package runs from."
)
_PACKAGE_PARENT = Path(__file__).resolve().parent.parent


class CliError(Exception):
    """A mistake the user can fix; printed as one line, without a traceback."""


def find_data_dir(environ: dict[str, str], *, create: bool) -> Path:
    """The project's data folder, whatever the current directory.

    ``AIOS_DATA_DIR`` when set; otherwise ``data/`` of the checkout (``AIOS_PROJECT_DIR`` or
    the folder holding this package) if it exists, or, for commands that write (``create``),
    if that folder is a checkout at all. An installed package has no checkout to fall back
    on, and guessing the current directory is how a stray ``./data`` used to appear.
    """
    if environ.get("AIOS_DATA_DIR"):
        return Path(environ["AIOS_DATA_DIR"]).expanduser().resolve()
    project = Path(environ.get("AIOS_PROJECT_DIR") or _PACKAGE_PARENT).expanduser().resolve()
    candidate = project / "data"
    if candidate.is_dir() or (create and (project / "pyproject.toml").is_file()):
        return candidate
    raise CliError(
        f"no data folder: {candidate} does not exist; set AIOS_DATA_DIR to the project's data "
        f"folder (or run `make demo` in the checkout to create it)"
    )


def _prepare_env(settings: Settings) -> None:
    """Process-wide settings for commands that run Dagster: instance home, analytics opt-outs."""
    from aios_dagster.instance import ensure_instance_home

    os.environ["AIOS_DATA_DIR"] = str(settings.data_dir)
    os.environ["DAGSTER_HOME"] = str(ensure_instance_home(settings.dagster_home))


def ensure_manifest(settings: Settings) -> Path:
    """``dbt parse`` if the project has no manifest yet (the Makefile normally does this)."""
    manifest = settings.dbt_project_dir / "target" / "manifest.json"
    if not manifest.exists():
        subprocess.run(
            [
                str(Path(sys.executable).with_name("dbt")),
                "parse",
                "--project-dir",
                str(settings.dbt_project_dir),
                "--profiles-dir",
                str(settings.dbt_project_dir),
                "--quiet",
            ],
            check=True,
        )
    return manifest


def cmd_generate(args: argparse.Namespace, settings: Settings) -> dict:
    from aios_dagster.lib.generator import generate_reference_data

    manifest = generate_reference_data(
        settings.sources_dir,
        seed=args.seed,
        emails_per_week=args.emails_per_week,
        weeks=args.weeks,
        customers=args.customers,
        start_date=settings.start_date,
        drift=args.drift,
        bad_records=not args.no_bad_records,
    )
    return manifest.to_dict()


def run_triage(
    settings: Settings, *, triton_url: str, metrics_url: str | None = None, instance: Any = None
) -> dict:
    """Materialise the whole triage job over the generated current week; return a summary.

    ``instance`` defaults to the one in ``DAGSTER_HOME`` so the demo's run shows in the UI.
    """
    import dagster as dg

    from aios_dagster.definitions import build_definitions
    from aios_dagster.demo_summary import summarize

    gen = json.loads((settings.sources_dir / "manifest.json").read_text())
    defs = build_definitions(
        replace(settings, triton_grpc_url=triton_url, triton_metrics_url=metrics_url)
    )
    job = defs.resolve_job_def("triage_job")
    result = job.execute_in_process(
        instance=instance or dg.DagsterInstance.get(),
        tags={
            "dagster/asset_partition_range_start": gen["current_start"],
            "dagster/asset_partition_range_end": gen["current_end"],
        },
        raise_on_error=False,
    )
    if not result.success:
        failed = [e.step_key for e in result.all_events if e.is_step_failure]
        raise SystemExit(f"triage_job failed in steps {failed}; see the run in the Dagster UI")
    return summarize(settings, run_id=result.run_id)


def cmd_demo(args: argparse.Namespace, settings: Settings) -> dict:
    from aios_dagster.lib.serving.launcher import LocalTritonServer

    started = time.monotonic()
    # The demo regenerates its sources, so what was derived from earlier ones goes first:
    # connectors are incremental and would otherwise keep an earlier demo's records. The
    # Triton repository is only a projection of the registry (which stays): publishing
    # rebuilds it, and a repository from an older layout could not be projected onto.
    derived_dirs = (
        settings.lake_dir,
        settings.cursors_dir.parent,
        settings.warehouse_path.parent,
        settings.model_repository,
    )
    for derived in derived_dirs:
        shutil.rmtree(derived, ignore_errors=True)
    generated = cmd_generate(args, settings)
    ensure_manifest(settings)
    settings.model_repository.mkdir(parents=True, exist_ok=True)
    with LocalTritonServer(settings.model_repository, settings.triton_work_dir) as server:
        summary = run_triage(settings, triton_url=server.grpc_url, metrics_url=server.metrics_url)
        from aios_dagster.lib.realtime.demo import decide_live_mail

        summary["live"] = decide_live_mail(
            settings,
            triton_url=server.grpc_url,
            day=date.fromisoformat(generated["current_end"]),
            seed=args.seed,
        )
    summary["elapsed_s"] = round(time.monotonic() - started, 1)
    summary["drift_injected"] = generated["drift"]
    print(
        f"\naios_dagster demo: {summary['emails']} emails, {summary['customers']} customers, "
        f"{summary['transactions']} transactions ingested; {summary['quarantined']} records "
        f"quarantined; {summary['predictions']} emails routed by {summary['model_name']} "
        f"v{summary['model_version']} on Triton ({summary['needs_review']} to human review); "
        f"drift {'DETECTED' if summary['dataset_drift'] else 'not detected'} "
        f"(share {summary['drift_share']:.2f}).\n{_lifecycle_line(summary)}"
        f"Drift report: {summary['drift_report']}\n"
        f"Drift and quality over time, per model: make drift-ui ({settings.drift_ui_url}, "
        f"workspace {summary['drift_workspace']})\n"
        f"{_live_line(summary['live'])}"
        f"Elapsed: {summary['elapsed_s']} s. Browse it all: make dev\n"
    )
    print(json.dumps(summary, sort_keys=True))
    return summary


def _live_line(live: dict) -> str:
    """What the real-time handler did with the mail dropped in the live folder."""
    routes = ", ".join(f"{d['email_id']} -> {d['decision']}" for d in live["decisions"][:3])
    return (
        f"Real time: {live['decided']} of {live['emails']} new emails decided by handler "
        f"email_triage_live in {live['seconds']} s ({routes}, ...)\n"
    )


def _lifecycle_line(summary: dict) -> str:
    """Champion, challenger and shadow agreement of each model, one line each."""
    lines = []
    for name, model in summary["models"].items():
        challenger = model["challenger"]
        shadow = (
            f", shadow agreement {model['shadow_agreement']:.1%} over {model['shadow_days']} days"
            if model["shadow_agreement"] is not None
            else (", not yet shadowed" if challenger else "")
        )
        lines.append(
            f"{name}: champion v{model['champion'] or '-'}, "
            f"challenger {f'v{challenger}' if challenger else 'none'}{shadow} "
            f"(registry: make mlflow-ui)\n"
        )
    return "".join(lines)


def _exit_on_signals() -> None:
    """Turn SIGTERM/SIGINT into SystemExit so ``with`` blocks stop Triton and dagster dev.

    Installed explicitly because some shells start background children with both signals
    *ignored*, and Python then never raises KeyboardInterrupt.
    """

    def _raise(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, _raise)
    signal.signal(signal.SIGINT, _raise)


def _default_signals() -> None:
    """Child processes get default signal handling back (see ``_exit_on_signals``)."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def cmd_dev(args: argparse.Namespace, settings: Settings) -> None:
    """Supervised local Triton plus ``dagster dev`` on 127.0.0.1, both stopped together.

    Triton keeps fixed ports, so the URL the code location reads from the environment stays
    right across Triton restarts and across ``make dev`` restarts.
    """
    from aios_dagster.lib.serving.supervisor import TritonSupervisor

    _exit_on_signals()
    ensure_manifest(settings)
    settings.model_repository.mkdir(parents=True, exist_ok=True)
    ports = (args.triton_http_port, args.triton_grpc_port, args.triton_metrics_port)
    with TritonSupervisor(
        settings.model_repository,
        settings.triton_work_dir,
        ports,
        max_restarts=args.triton_max_restarts,
    ) as triton:
        # The venv's bin first: `dagster dev` re-parses dbt with the `dbt` it finds on PATH.
        path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
        env = {
            **os.environ,
            "AIOS_TRITON_GRPC_URL": triton.grpc_url,
            "AIOS_TRITON_METRICS_URL": triton.metrics_url,
            "PATH": path,
        }
        print(f"Triton on {triton.grpc_url} (gRPC); Dagster UI on http://127.0.0.1:{args.port}")
        cmd = [
            str(Path(sys.executable).with_name("dagster")),
            "dev",
            "-h",
            "127.0.0.1",
            "-p",
            str(args.port),
            "-m",
            "aios_dagster.definitions",
        ]
        proc = subprocess.Popen(cmd, env=env, preexec_fn=_default_signals)
        try:
            proc.wait()
        except (KeyboardInterrupt, SystemExit):
            proc.send_signal(signal.SIGINT)  # dagster dev stops its webserver and daemon on INT
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=30)
            if proc.poll() is None:
                proc.kill()


def cmd_explain(args: argparse.Namespace, settings: Settings) -> None:
    from aios_dagster.lib.inference.audit import explain_record

    try:
        lines = explain_record(
            settings.lake_dir / "decision_log", args.record_id, show_all=args.all
        )
    except (LookupError, FileNotFoundError) as exc:
        raise CliError(str(exc)) from None
    for line in lines:
        print(line)


def cmd_quarantine(args: argparse.Namespace, settings: Settings) -> dict:
    """Show a connector's quarantine by rule; with ``--reprocess``, validate it again."""
    from aios_dagster.lib.connectors.component import connector_specs
    from aios_dagster.lib.connectors.reprocess import reprocess_quarantine
    from aios_dagster.lib.contracts.landing import (
        count_records,
        quarantine_dataset,
        read_quarantine,
    )
    from aios_dagster.lib.contracts.store import ContractStore
    from aios_dagster.lib.lake import LakeResource

    specs = {s.name: s for s in connector_specs(settings)}
    if args.connector not in specs:
        raise SystemExit(f"unknown connector {args.connector!r}; known: {sorted(specs)}")
    spec = specs[args.connector]
    lake = LakeResource(root=str(settings.lake_dir))
    out: dict[str, Any] = {"connector": spec.name, "dataset": quarantine_dataset(spec.dataset)}
    if args.reprocess:
        contract = ContractStore(directory=str(settings.expectations_dir)).load(spec.contract)
        report = reprocess_quarantine(spec, contract, lake=lake)
        out["reprocessed"] = report.__dict__
    rows = read_quarantine(lake, spec.dataset)
    out["records"] = count_records(rows)
    out["by_rule"] = rows.groupby("rule").size().to_dict()
    print(json.dumps(out, sort_keys=True, default=str))
    return out


def _add_generate_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", type=int, default=7, help="random seed; same seed, same data")
    p.add_argument("--emails-per-week", type=int, default=10_000, help="emails generated per week")
    p.add_argument("--weeks", type=int, default=2, help="weeks of history to generate")
    p.add_argument("--customers", type=int, default=2_500, help="customers in the CRM export")
    p.add_argument("--drift", action="store_true", help="inject a fraud wave in the last week")
    p.add_argument(
        "--no-bad-records",
        action="store_true",
        help="leave out the malformed records that exercise the quarantine",
    )


def build_parser() -> argparse.ArgumentParser:
    fmt = argparse.ArgumentDefaultsHelpFormatter
    parser = argparse.ArgumentParser(prog="aios-dagster", description=DESCRIPTION)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    gen = sub.add_parser(
        "generate",
        help="write the reference source systems (mailbox, CRM, bank, labels)",
        description="Write the generated source systems into <data>/sources.",
        formatter_class=fmt,
    )
    _add_generate_options(gen)
    demo = sub.add_parser(
        "demo",
        help="regenerate the data and run the whole triage job on a local Triton",
        description="Regenerate the sources, start a local Triton, run triage_job over the "
        "current week and print a summary. Earlier lake, cursors and warehouse are removed.",
        formatter_class=fmt,
    )
    _add_generate_options(demo)
    dev = sub.add_parser(
        "dev",
        help="serve the Dagster UI with a supervised local Triton",
        description="Start Triton (restarted on the same ports if it dies) and `dagster dev`; "
        "Ctrl-C stops both.",
        formatter_class=fmt,
    )
    dev.add_argument("--port", type=int, default=3000, help="Dagster UI port")
    dev.add_argument("--triton-http-port", type=int, default=8000, help="Triton HTTP port")
    dev.add_argument(
        "--triton-grpc-port",
        type=int,
        default=8001,
        help="Triton gRPC port, passed to Dagster as AIOS_TRITON_GRPC_URL",
    )
    dev.add_argument(
        "--triton-metrics-port",
        type=int,
        default=8002,
        help="Triton metrics port, passed to Dagster as AIOS_TRITON_METRICS_URL",
    )
    dev.add_argument(
        "--triton-max-restarts",
        type=int,
        default=5,
        help="restarts of a dying Triton allowed within 10 minutes before giving up",
    )
    why = sub.add_parser(
        "explain",
        help="why was this email routed where it was",
        description="Print the decision logged for an email: route, confidence, policy, model.",
        formatter_class=fmt,
    )
    why.add_argument("record_id", help="the email's record id, as in the decision log")
    why.add_argument("--all", action="store_true", help="every logged decision, not the latest")
    quarantine = sub.add_parser(
        "quarantine",
        help="a connector's quarantined records; --reprocess after a fix",
        description="Count a connector's quarantined records by rule (read-only), or validate "
        "them again with --reprocess and land those that now pass.",
        formatter_class=fmt,
    )
    quarantine.add_argument("connector", help="connector name, e.g. raw_customers")
    quarantine.add_argument(
        "--reprocess", action="store_true", help="validate quarantined records again, land passes"
    )
    from aios_dagster.cli_models import add_model_commands  # it imports CliError from here

    add_model_commands(sub, fmt)
    from aios_dagster.cli_drift import add_drift_commands  # it imports CliError from here

    add_drift_commands(sub, fmt)
    from aios_dagster.cli_audit import add_audit_commands

    add_audit_commands(sub, fmt)
    from aios_dagster.cli_metrics import add_metrics_commands

    add_metrics_commands(sub, fmt)
    from aios_dagster.cli_remote import add_remote_commands

    add_remote_commands(sub, fmt)
    from aios_dagster.cli_serve import add_serve_commands

    add_serve_commands(sub, fmt)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        _run(args)
    except CliError as exc:
        raise SystemExit(f"aios-dagster {args.command}: {exc}") from None


def _run(args: argparse.Namespace) -> None:
    if args.command == "remote":  # a webserver's address is all it needs: no data folder
        args.run(args)
        return
    writes = args.command in ("generate", "demo", "dev") or getattr(args, "reprocess", False)
    env = dict(os.environ)
    env["AIOS_DATA_DIR"] = str(find_data_dir(env, create=writes))
    settings = Settings.from_env(env)
    for key, value in {
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
        "GX_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "DAGSTER_DISABLE_TELEMETRY": "true",
    }.items():
        os.environ.setdefault(key, value)
    if args.command in ("demo", "dev"):
        _prepare_env(settings)
        _log_to_stderr()
    if args.command == "generate":
        print(json.dumps(cmd_generate(args, settings), sort_keys=True))
    elif args.command == "demo":
        cmd_demo(args, settings)
    elif args.command == "dev":
        cmd_dev(args, settings)
    elif args.command == "explain":
        cmd_explain(args, settings)
    elif args.command == "quarantine":
        cmd_quarantine(args, settings)
    elif args.command in ("models", "mlflow-ui", "drift-ui", "audit", "metrics", "serve"):
        args.run(args, settings)


def _log_to_stderr() -> None:
    """The package's log lines (Triton deaths and restarts) on the terminal running the command."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("aios_dagster")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
