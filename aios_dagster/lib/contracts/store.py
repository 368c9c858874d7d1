"""The folder of contract files (``expectations/``), a resource so deployments can move it."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from aios_dagster.lib.contracts.runner import Contract, load_contract


class ContractStore(dg.ConfigurableResource):
    directory: str

    def load(self, dataset: str) -> Contract:
        path = Path(self.directory) / f"{dataset}.json"
        if not path.exists():
            raise FileNotFoundError(f"no contract for dataset {dataset!r}: expected {path}")
        return load_contract(path)
