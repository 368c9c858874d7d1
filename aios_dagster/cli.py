"""The ``aios-dagster`` command: generate data, run local Triton, run the demo, serve the UI."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from aios_dagster.settings import Settings


def _prepare_env(settings: Settings) -> None:
    """Process-wide settings for this command only: instance home and analytics opt-outs."""
    from aios_dagster.instance import ensure_instance_home

    os.environ["AIOS_DATA_DIR"] = str(settings.data_dir)
    os.environ["DAGSTER_HOME"] = str(ensure_instance_home(settings.dagster_home))
    for key, value in {
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
        "GX_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "DAGSTER_DISABLE_TELEMETRY": "true",
    }.items():
        os.environ.setdefault(key, value)


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
    # connectors are incremental and would otherwise keep an earlier demo's records.
    for derived in (settings.lake_dir, settings.cursors_dir.parent, settings.warehouse_path.parent):
        shutil.rmtree(derived, ignore_errors=True)
    generated = cmd_generate(args, settings)
    ensure_manifest(settings)
    settings.model_repository.mkdir(parents=True, exist_ok=True)
    with LocalTritonServer(settings.model_repository, settings.triton_work_dir) as server:
        summary = run_triage(settings, triton_url=server.grpc_url, metrics_url=server.metrics_url)
    summary["elapsed_s"] = round(time.monotonic() - started, 1)
    summary["drift_injected"] = generated["drift"]
    print(
        f"\naios_dagster demo: {summary['emails']} emails, {summary['customers']} customers, "
        f"{summary['transactions']} transactions ingested; {summary['quarantined']} records "
        f"quarantined; {summary['predictions']} emails routed by {summary['model_name']} "
        f"v{summary['model_version']} on Triton ({summary['needs_review']} to human review); "
        f"drift {'DETECTED' if summary['dataset_drift'] else 'not detected'} "
        f"(share {summary['drift_share']:.2f}).\nDrift report: {summary['drift_report']}\n"
        f"Elapsed: {summary['elapsed_s']} s. Browse it all: make dev\n"
    )
    print(json.dumps(summary, sort_keys=True))
    return summary


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
    """Local Triton plus ``dagster dev`` on 127.0.0.1, both stopped together."""
    from aios_dagster.lib.serving.launcher import LocalTritonServer

    _exit_on_signals()
    ensure_manifest(settings)
    settings.model_repository.mkdir(parents=True, exist_ok=True)
    with LocalTritonServer(settings.model_repository, settings.triton_work_dir) as server:
        # The venv's bin first: `dagster dev` re-parses dbt with the `dbt` it finds on PATH.
        path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
        env = {
            **os.environ,
            "AIOS_TRITON_GRPC_URL": server.grpc_url,
            "AIOS_TRITON_METRICS_URL": server.metrics_url,
            "PATH": path,
        }
        print(f"Triton on {server.grpc_url} (gRPC); Dagster UI on http://127.0.0.1:{args.port}")
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
    from aios_dagster.lib.inference.audit import decisions_for, explain

    decisions = decisions_for(settings.lake_dir / "decision_log", args.record_id)
    if not decisions:
        raise SystemExit(f"no decision logged for {args.record_id}")
    for decision in decisions if args.all else decisions[-1:]:
        print(explain(decision))


def cmd_quarantine(args: argparse.Namespace, settings: Settings) -> dict:
    """Show a connector's quarantine by rule; with ``--reprocess``, validate it again."""
    from aios_dagster.lib.connectors.definitions import connector_specs, settings_paths
    from aios_dagster.lib.connectors.reprocess import reprocess_quarantine
    from aios_dagster.lib.contracts.landing import (
        count_records,
        quarantine_dataset,
        read_quarantine,
    )
    from aios_dagster.lib.contracts.store import ContractStore
    from aios_dagster.lib.lake import LakeResource

    specs = {s.name: s for s in connector_specs(settings_paths(settings))}
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="aios-dagster", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("generate", "demo"):
        p = sub.add_parser(name)
        p.add_argument("--seed", type=int, default=7)
        p.add_argument("--emails-per-week", type=int, default=10_000)
        p.add_argument("--weeks", type=int, default=2)
        p.add_argument("--customers", type=int, default=2_500)
        p.add_argument("--drift", action="store_true", help="inject a fraud wave in the last week")
        p.add_argument("--no-bad-records", action="store_true")
    dev = sub.add_parser("dev")
    dev.add_argument("--port", type=int, default=3000)
    why = sub.add_parser("explain", help="why was this email routed where it was")
    why.add_argument("record_id")
    why.add_argument("--all", action="store_true", help="every logged decision, not the latest")
    quarantine = sub.add_parser(
        "quarantine", help="a connector's quarantined records; --reprocess after a fix"
    )
    quarantine.add_argument("connector", help="connector name, e.g. raw_customers")
    quarantine.add_argument(
        "--reprocess", action="store_true", help="validate quarantined records again, land passes"
    )
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    _prepare_env(settings)
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
