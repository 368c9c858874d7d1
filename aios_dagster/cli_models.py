"""``aios-dagster models ...`` (the registry from a terminal) and ``aios-dagster mlflow-ui``.

Every subcommand reads the same registry the pipelines write (``Settings``: embedded SQLite
under the data folder, or ``AIOS_MLFLOW_TRACKING_URI``). Reading commands never create a
registry: an embedded one that does not exist yet is an error that says how to make one.
Approvals and rejections need a reason; the actor defaults to ``$USER``.

``promote`` and ``rollback`` (they also touch Triton) live in ``cli_rollout``. To add a
subcommand: a ``models_sub.add_parser(...)`` with ``set_defaults(run=...)``,
``add_audit_options`` for ``--actor``/``--reason``, and a ``cmd_*(args, settings)`` that may
use ``registry_for`` and ``model_spec``; raise ``CliError`` for a one-line failure.
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aios_dagster.settings import Settings

if TYPE_CHECKING:
    from aios_dagster.lib.inference.catalog import ModelSpec
    from aios_dagster.lib.lifecycle.governance import AliasEvent
    from aios_dagster.lib.lifecycle.registry import ModelRegistry


def _cli_error(message: str) -> Exception:
    from aios_dagster.cli import CliError  # cli imports this module; import back lazily

    return CliError(message)


def _out(line: str = "") -> None:
    sys.stdout.write(line + "\n")


def registry_for(settings: Settings) -> ModelRegistry:
    """The registry of ``settings``; an embedded one must exist (reading creates nothing)."""
    from aios_dagster.lib.lifecycle.registry import ModelRegistry

    uri = settings.registry_tracking_uri
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
        raise _cli_error(
            f"no model registry at {uri.removeprefix('sqlite:///')}: train a model first "
            "(make demo), or set AIOS_MLFLOW_TRACKING_URI to the production registry"
        )
    return ModelRegistry(tracking_uri=uri, artifact_location=settings.registry_artifact_location)


def model_spec(settings: Settings, name: str) -> ModelSpec:
    """The catalog entry of ``name`` (the model Components under ``Settings.models_dir``)."""
    from aios_dagster.lib.inference.catalog import load_catalog

    specs = load_catalog(settings.models_dir)
    if name not in specs:
        raise _cli_error(f"unknown model {name!r}; declared: {sorted(specs)}")
    return specs[name]


def _registry_call(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Run a registry call; its refusals (unknown version, rejected, empty reason) as one line."""
    from aios_dagster.lib.lifecycle.registry import RegistryError

    try:
        return fn(*args, **kwargs)
    except (RegistryError, ValueError) as exc:
        raise _cli_error(str(exc)) from None


def _v(version: int | None) -> str:
    return f"v{version}" if version is not None else "none"


def _when(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def cmd_list(args: argparse.Namespace, settings: Settings) -> None:
    registry = registry_for(settings)
    versions = _registry_call(registry.versions, args.name)
    _out(
        f"{'version':>7}  {'registered (UTC)':<19}  {'aliases':<20}  {'gate':<6}  "
        f"{'approval':<22}  weights"
    )
    for v in versions:
        approval = f"{v.approval.decision} by {v.approval.actor}" if v.approval else "-"
        _out(
            f"{v.version:>7}  {v.created_at:%Y-%m-%d %H:%M:%S}  {','.join(v.aliases) or '-':<20}"
            f"  {v.tags.get('gate', '-'):<6}  {approval:<22}  {v.content_hash[:12]}"
        )


def _parse_time(text: str) -> datetime:
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise _cli_error(
            f"--at {text!r} is not an ISO time (e.g. 2026-11-20T14:30:00+01:00)"
        ) from None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when


def _event_line(e: AliasEvent) -> str:
    moved = f"{_v(e.previous_version)} -> {_v(e.version)}"
    return f"{_when(e.at)}  {e.alias:<10}  {moved:<12}  {e.actor}: {e.reason}"


def cmd_history(args: argparse.Namespace, settings: Settings) -> None:
    registry = registry_for(settings)
    if args.at is None:
        for event in _registry_call(registry.alias_history, args.name, args.alias):
            _out(_event_line(event))
        return
    alias = args.alias or "champion"
    when = _parse_time(args.at)
    before = [e for e in _registry_call(registry.alias_history, args.name, alias) if e.at <= when]
    if not before or before[-1].version is None:
        _out(f"{args.name}: no version was {alias} at {_when(when)}")
        return
    e = before[-1]
    _out(
        f"{args.name} v{e.version} was {alias} at {_when(when)} "
        f"(since {_when(e.at)}, set by {e.actor}: {e.reason})"
    )


def cmd_show(args: argparse.Namespace, settings: Settings) -> None:
    from aios_dagster.lib.lifecycle.cards import read_model_card

    registry = registry_for(settings)
    info = _registry_call(registry.version, args.name, args.version)
    try:
        card = read_model_card(registry, args.name, args.version)
    except FileNotFoundError:
        _out(f"{args.name} v{info.version} has no model card yet (the gate check writes it).")
        for key, value in sorted(info.tags.items()):
            _out(f"  {key}: {value}")
        return
    sys.stdout.write(card.markdown)


def _decide(args: argparse.Namespace, settings: Settings, decision: str) -> None:
    registry = registry_for(settings)
    approval = _registry_call(
        registry.record_decision,
        args.name,
        args.version,
        decision,
        actor=args.actor,
        reason=args.reason,
    )
    _out(
        f"{args.name} v{approval.version} {approval.decision} by {approval.actor} at "
        f"{_when(approval.at)}: {approval.reason}"
    )


def cmd_approve(args: argparse.Namespace, settings: Settings) -> None:
    _decide(args, settings, "approved")


def cmd_reject(args: argparse.Namespace, settings: Settings) -> None:
    _decide(args, settings, "rejected")


def mlflow_ui_command(settings: Settings, port: int) -> list[str]:
    """``mlflow server`` on 127.0.0.1 with the registry's backend store, one worker."""
    return [
        str(Path(sys.executable).with_name("mlflow")),
        "server",
        "--backend-store-uri",
        settings.registry_tracking_uri,
        "--default-artifact-root",
        settings.registry_artifact_location,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]


def cmd_mlflow_ui(args: argparse.Namespace, settings: Settings) -> None:
    """Serve the MLflow UI until Ctrl-C or SIGTERM, then stop the server and its workers."""
    from aios_dagster.cli_process import serve_foreground
    from aios_dagster.lib.lifecycle.registry import MLFLOW_ENV

    registry_for(settings)  # an embedded registry must exist: the UI would create an empty one
    # No job runner: it serves MLflow's GenAI jobs, which a registry UI does not use, and it
    # starts seven more Python processes (most of a minute of CPU here before the UI answers).
    env = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **os.environ, **MLFLOW_ENV}
    _out(f"MLflow UI on http://127.0.0.1:{args.port} (registry {settings.registry_tracking_uri})")
    sys.stdout.flush()
    code = serve_foreground(mlflow_ui_command(settings, args.port), env)
    if code != 0:
        raise _cli_error(f"mlflow server exited with status {code}")


def add_audit_options(parser: argparse.ArgumentParser) -> None:
    """``--reason`` (required) and ``--actor`` (default ``$USER``): what the audit records."""
    parser.add_argument("--reason", required=True, help="why: recorded in the audit log")
    parser.add_argument(
        "--actor",
        default=os.environ.get("USER") or None,
        required=not os.environ.get("USER"),
        help="who decides (default: $USER)",
    )


def add_model_commands(sub: Any, formatter_class: type[argparse.HelpFormatter]) -> Any:
    """Add ``models`` (with its subcommands) and ``mlflow-ui``; return the ``models``
    subparsers so more subcommands can be added."""
    models = sub.add_parser(
        "models",
        help="the model registry: versions, alias history, model cards, approvals",
        description="Inspect registered model versions and record approvals. The registry is "
        "MLflow's (embedded under <data>/mlflow, or AIOS_MLFLOW_TRACKING_URI).",
        formatter_class=formatter_class,
    )
    models_sub = models.add_subparsers(dest="models_command", required=True, metavar="ACTION")

    listing = models_sub.add_parser(
        "list", help="versions with aliases, gate and approval", formatter_class=formatter_class
    )
    listing.add_argument("name", help="registered model name, e.g. email_router")
    listing.set_defaults(run=cmd_list)

    history = models_sub.add_parser(
        "history",
        help="who moved which alias when and why; --at: which version held it then",
        description="The append-only alias history. With --at, the version that held the "
        "alias (default champion) at that time.",
        formatter_class=formatter_class,
    )
    history.add_argument("name", help="registered model name")
    history.add_argument(
        "--alias", default=None, help="one alias (default: all; champion with --at)"
    )
    history.add_argument(
        "--at", default=None, help="ISO time; without a UTC offset it is taken as UTC"
    )
    history.set_defaults(run=cmd_history)

    show = models_sub.add_parser(
        "show", help="print a version's model card (Markdown)", formatter_class=formatter_class
    )
    show.add_argument("name", help="registered model name")
    show.add_argument("version", type=int, help="registry version number")
    show.set_defaults(run=cmd_show)

    for action, run, verb in (
        ("approve", cmd_approve, "Approve"),
        ("reject", cmd_reject, "Reject"),
    ):
        p = models_sub.add_parser(
            action,
            help=f"{verb.lower()} a version (recorded: who, when, why)",
            description=f"{verb} a registered version. The decision is appended to the "
            "approvals log and set as tags on the MLflow version. A rejection is final.",
            formatter_class=formatter_class,
        )
        p.add_argument("name", help="registered model name")
        p.add_argument("version", type=int, help="registry version number")
        add_audit_options(p)
        p.set_defaults(run=run)

    from aios_dagster.cli_rollout import add_rollout_commands  # it imports this module

    add_rollout_commands(models_sub, formatter_class)

    ui = sub.add_parser(
        "mlflow-ui",
        help="serve the MLflow UI for the model registry on 127.0.0.1",
        description="Run `mlflow server` on 127.0.0.1 with the registry's backend store and "
        "artifact location; Ctrl-C stops it.",
        formatter_class=formatter_class,
    )
    ui.add_argument("--port", type=int, default=5000, help="port of the MLflow UI")
    ui.set_defaults(run=cmd_mlflow_ui)
    return models_sub
