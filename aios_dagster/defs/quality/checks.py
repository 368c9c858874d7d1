"""Blocking contract checks on every connector asset.

The connector already split bad records into quarantine; the check re-validates what actually
landed (the rows downstream will read) and enforces the contract's tolerance for quarantine. A
failure with ERROR severity stops dbt and everything after it for that run.
"""

import dagster as dg

from aios_dagster.defs.ingest.assets import CONTRACTED_DATASETS
from aios_dagster.lib.connectors.lake import LakeResource
from aios_dagster.lib.contracts.landing import quarantine_dataset
from aios_dagster.lib.contracts.runner import validate_frame
from aios_dagster.lib.contracts.store import ContractStore


def build_contract_check(asset_key: dg.AssetKey, dataset: str) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=asset_key,
        name=f"{dataset}_contract",
        blocking=True,
        description=f"Great Expectations contract expectations/{dataset}.json on the landed rows, "
        "and quarantine within the contract's tolerance.",
    )
    def _check(lake: LakeResource, contracts: ContractStore) -> dg.AssetCheckResult:
        contract = contracts.load(dataset)
        landed = lake.read(f"raw_{dataset}").to_pandas()
        quarantined = lake.read(quarantine_dataset(dataset)).to_pandas()
        result = validate_frame(landed, contract, source=f"lake/raw_{dataset}")
        bad_records = quarantined["offset"].nunique()  # ids may be null; offsets are not
        total = len(landed) + bad_records
        fraction = bad_records / total if total else 0.0
        failures = [o.rule for o in result.outcomes if not o.success]
        passed = not failures and fraction <= contract.max_quarantine_fraction
        return dg.AssetCheckResult(
            passed=passed,
            severity=dg.AssetCheckSeverity.ERROR
            if contract.blocking
            else dg.AssetCheckSeverity.WARN,
            metadata={
                "contract": f"{contract.name}@v{contract.version}",
                "rows_landed": len(landed),
                "records_quarantined": int(bad_records),
                "quarantine_fraction": round(fraction, 6),
                "max_quarantine_fraction": contract.max_quarantine_fraction,
                "failed_rules_on_landed_rows": failures,
                "quarantine_by_rule": dg.MetadataValue.json(
                    quarantined.groupby("rule").size().to_dict() if len(quarantined) else {}
                ),
                "quarantine_sample": dg.MetadataValue.json(quarantined.head(5).to_dict("records")),
            },
        )

    return _check


def contract_checks() -> list[dg.AssetChecksDefinition]:
    return [build_contract_check(key, ds) for key, ds in CONTRACTED_DATASETS.items()]
