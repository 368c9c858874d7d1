import json
from pathlib import Path

from aios_dagster.lib.dbt import DbtBuildConfig, build_args


def test_an_incremental_build_is_the_default() -> None:
    args = build_args("build", Path("/srv/aios"))
    assert "--full-refresh" not in args
    assert json.loads(args[args.index("--vars") + 1]) == {"data_dir": "/srv/aios"}
    assert DbtBuildConfig().full_refresh is False


def test_full_refresh_rebuilds_the_incremental_models() -> None:
    args = build_args("build", Path("/srv/aios"), full_refresh=True)
    assert args[0] == "build" and args[-1] == "--full-refresh"
