"""New .eml files in the mailbox request one micro-batch run; landed mail requests none."""

import os
from datetime import date
from pathlib import Path

import dagster as dg

from aios_dagster.definitions import build_definitions
from aios_dagster.lib.connectors.cursors import CursorStore
from aios_dagster.lib.generator import deliver_new_emails, generate_reference_data
from aios_dagster.settings import Settings


def test_new_mail_requests_one_run(tmp_path: Path) -> None:
    settings = Settings.from_env({"AIOS_DATA_DIR": str(tmp_path / "data")})
    generate_reference_data(settings.sources_dir, emails_per_week=50, customers=20, weeks=1)
    defs = build_definitions(settings)
    sensor = defs.resolve_sensor_def("raw_emails_sensor")
    resources = {"cursors": defs.resources["cursors"]}
    cursors: CursorStore = defs.resources["cursors"]

    with dg.instance_for_test() as instance:

        def evaluate() -> dg.SensorResult:
            return sensor(dg.build_sensor_context(instance=instance, resources=resources))

        first = evaluate()
        assert len(first.run_requests) == 1  # the mailbox has never been ingested

        # The connector's cursor (saved after landing) is what the sensor compares with.
        inbox = settings.mailbox_dir
        files = {p.name: f"{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in inbox.glob("*.eml")}
        cursors.save("raw_emails", {"files": files})
        assert evaluate().run_requests == []

        new = deliver_new_emails(settings.sources_dir, count=3, seed=5, day=date(2026, 11, 16))
        assert len(new) == 3
        assert len(evaluate().run_requests) == 1

        for path in new:
            files[path.name] = f"{path.stat().st_size}:{path.stat().st_mtime_ns}"
        cursors.save("raw_emails", {"files": files})
        assert evaluate().run_requests == []

        # A file copied in with an old modification time (cp -p, rsync -a) still counts.
        late = deliver_new_emails(settings.sources_dir, count=1, seed=6, day=date(2026, 11, 16))
        os.utime(late[0], ns=(1, 1))
        assert len(evaluate().run_requests) == 1
