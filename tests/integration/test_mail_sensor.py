"""New .eml files in the mailbox request a refresh run; the cursor stops a second request."""

import os
from datetime import date
from pathlib import Path

import dagster as dg

from aios_dagster.definitions import build_definitions
from aios_dagster.lib.generator import deliver_new_emails, generate_reference_data
from aios_dagster.settings import Settings


def test_new_mail_requests_one_run(tmp_path: Path) -> None:
    settings = Settings.from_env({"AIOS_DATA_DIR": str(tmp_path / "data")})
    generate_reference_data(settings.sources_dir, emails_per_week=50, customers=20, weeks=1)
    defs = build_definitions(settings)
    sensor = defs.resolve_sensor_def("new_mail_sensor")
    resources = {"sources": defs.resources["sources"]}

    with dg.instance_for_test() as instance:
        first = sensor(dg.build_sensor_context(instance=instance, resources=resources))
        assert len(first.run_requests) == 1  # the existing mailbox has never been ingested
        cursor = first.cursor

        again = sensor(
            dg.build_sensor_context(instance=instance, resources=resources, cursor=cursor)
        )
        assert again.run_requests == [] and again.cursor == cursor

        new = deliver_new_emails(settings.sources_dir, count=3, seed=5, day=date(2026, 11, 16))
        assert len(new) == 3
        later = sensor(
            dg.build_sensor_context(instance=instance, resources=resources, cursor=cursor)
        )
        assert len(later.run_requests) == 1
        assert later.run_requests[0].tags["aios/newest_email"] in {p.name for p in new}
        assert later.cursor != cursor

        settled = sensor(
            dg.build_sensor_context(instance=instance, resources=resources, cursor=later.cursor)
        )
        assert settled.run_requests == []

        # A file copied in with an old modification time (cp -p, rsync -a) still counts.
        late = deliver_new_emails(settings.sources_dir, count=1, seed=6, day=date(2026, 11, 16))
        os.utime(late[0], ns=(1, 1))
        copied = sensor(
            dg.build_sensor_context(
                instance=instance, resources=resources, cursor=settled.cursor or later.cursor
            )
        )
        assert len(copied.run_requests) == 1
