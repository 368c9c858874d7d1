import json
from pathlib import Path

from aios_dagster.lib.dbt import build_args


def test_build_args_pass_the_data_dir_and_target() -> None:
    args = build_args("build", Path("/srv/aios"), target="postgres")
    assert args[:3] == ["build", "--target", "postgres"]
    assert json.loads(args[4]) == {"data_dir": "/srv/aios"}
