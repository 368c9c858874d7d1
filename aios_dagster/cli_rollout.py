"""``aios-dagster models promote|rollback NAME``: one command each, the same audited functions
the ``<name>_promote`` / ``<name>_rollback`` jobs call.

A terminal is where an on-call engineer is when a model misbehaves, often when the Dagster UI
is not at hand; the command changes the registry's aliases (with who and why) and then makes
the Triton named by ``AIOS_TRITON_GRPC_URL`` serve them from the data folder's model repository,
exactly as the job does. Refusals (gate not passed, approval missing, nothing to roll back to,
Triton unreachable) are one line and change nothing in the registry.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from aios_dagster.cli_models import _cli_error, _out, add_audit_options, model_spec, registry_for
from aios_dagster.settings import Settings

if TYPE_CHECKING:
    from aios_dagster.lib.lifecycle.rollout import RolloutResult


def _rollout(args: argparse.Namespace, settings: Settings, action: str) -> RolloutResult:
    from aios_dagster.lib.lake import LakeResource
    from aios_dagster.lib.lifecycle.registry import RegistryError
    from aios_dagster.lib.lifecycle.rollout import RolloutError, promote, rollback
    from aios_dagster.lib.lifecycle.versions import write_card
    from aios_dagster.lib.serving.errors import TritonInferenceError
    from aios_dagster.lib.serving.repository_mirror import MirrorError, RepositoryMirror
    from aios_dagster.resources import triton_resource

    registry = registry_for(settings)
    spec = model_spec(settings, args.name)
    common: dict[str, Any] = {
        "registry": registry,
        "repository": settings.model_repository,
        "triton": triton_resource(settings),
        "mirror": RepositoryMirror(settings.model_repository_url)
        if settings.model_repository_url
        else None,
        "actor": args.actor,
        "reason": args.reason,
    }
    try:
        if action == "promote":
            result = promote(spec, version=args.version, **common)
            lake = LakeResource(root=str(settings.lake_dir))
            write_card(registry, spec, result.to_version, lake=lake)
        else:
            result = rollback(spec, **common)
    except (RolloutError, RegistryError, MirrorError, ValueError) as exc:
        raise _cli_error(str(exc)) from None
    except TritonInferenceError as exc:
        raise _cli_error(
            f"the registry moved but Triton at {settings.triton_grpc_url} did not follow: {exc}; "
            "run the command again once Triton answers (the registry decides what it serves)"
        ) from None
    return result


def _report(result: RolloutResult) -> None:
    d = result.deployment
    before = f"v{result.from_version}" if result.from_version is not None else "none"
    _out(
        f"{result.model_name}: {result.action} {before} -> v{result.to_version} by "
        f"{result.actor} in {result.seconds:.2f} s; Triton serves champion "
        f"v{d.champion}, challenger {f'v{d.challenger}' if d.challenger else 'none'}"
    )


def cmd_promote(args: argparse.Namespace, settings: Settings) -> None:
    _report(_rollout(args, settings, "promote"))


def cmd_rollback(args: argparse.Namespace, settings: Settings) -> None:
    _report(_rollout(args, settings, "rollback"))


def add_rollout_commands(models_sub: Any, formatter_class: type[argparse.HelpFormatter]) -> None:
    """Add ``models promote`` and ``models rollback`` to the ``models`` subcommands."""
    promote = models_sub.add_parser(
        "promote",
        help="make the challenger (or --version) champion and serve it on Triton",
        description="Promote the challenger, or the version given, to champion: refused if its "
        "gate did not pass or, for a model whose risk class requires it, nobody approved it. "
        "The alias change is audited; Triton then serves the new champion without a restart.",
        formatter_class=formatter_class,
    )
    promote.add_argument("name", help="registered model name, e.g. email_router")
    promote.add_argument(
        "--version", type=int, default=None, help="promote this version (default: challenger)"
    )
    add_audit_options(promote)
    promote.set_defaults(run=cmd_promote)

    back = models_sub.add_parser(
        "rollback",
        help="restore the previous champion in the registry and on Triton",
        description="Restore the champion before the current one (repeated rollbacks walk "
        "further back), audited, and make Triton serve it without a restart.",
        formatter_class=formatter_class,
    )
    back.add_argument("name", help="registered model name, e.g. email_router")
    add_audit_options(back)
    back.set_defaults(run=cmd_rollback)
