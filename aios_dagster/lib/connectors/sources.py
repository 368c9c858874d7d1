"""Where the source systems of the reference workflow are (generated ones when embedded)."""

from __future__ import annotations

from pathlib import Path

import dagster as dg


class SourceSystems(dg.ConfigurableResource):
    """Locations of the mailbox, CRM export, core-banking SQL database and routing labels."""

    mailbox_dir: str
    crm_csv: str
    transactions_db: str
    labels_csv: str

    @property
    def mailbox(self) -> Path:
        return Path(self.mailbox_dir)
