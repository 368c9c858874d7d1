"""The demo's live part: a few new emails dropped in the live folder, decided by the handler."""

from __future__ import annotations

import time
from datetime import date
from typing import Any

from aios_dagster.settings import Settings


def decide_live_mail(
    settings: Settings, *, triton_url: str, day: date, count: int = 5, seed: int = 7
) -> dict[str, Any]:
    """Deliver ``count`` emails dated ``day`` to the live folder; the folder handler decides
    them; what it decided and how long it took (file written to decision durable)."""
    from dataclasses import replace

    import duckdb

    from aios_dagster.lib.generator.generate import deliver_new_emails
    from aios_dagster.lib.realtime.service import build_runtime

    runtime = build_runtime(replace(settings, triton_grpc_url=triton_url), "email_triage_live")
    try:
        paths = deliver_new_emails(
            settings.sources_dir, count=count, seed=seed, day=day, folder="live"
        )
        started = time.monotonic()
        stats = runtime.run(max_events=len(paths), idle_exit_s=30)
        elapsed = time.monotonic() - started
    finally:
        runtime.source.close()
        runtime.ctx.store.close()
    ids = [p.stem for p in paths]
    glob = str(settings.lake_dir / "email_router_predictions" / "**" / "*__rt=*.parquet")
    with duckdb.connect() as conn:
        rows = conn.execute(
            f"select record_id, decision, priority, model_version from read_parquet('{glob}') "
            "where record_id in (select unnest($ids)) order by record_id",
            {"ids": ids},
        ).fetchall()
    return {
        "emails": len(paths),
        "decided": stats.decided,
        "seconds": round(elapsed, 2),
        "latency_s_p50": stats.percentile(0.5),
        "decisions": [
            {"email_id": r[0], "decision": r[1], "priority": r[2], "model_version": r[3]}
            for r in rows
        ],
    }
