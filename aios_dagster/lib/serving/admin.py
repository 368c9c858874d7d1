"""Server and model management: readiness, loading models, reading a model's config.

Each function talks to every replica of one deployment and leaves the breakers of those that
answered closed: an answer is fresher evidence than the failures that opened them. Loading and
config reads go through the same retry layer as inference, so a server restarting under a run
delays the run instead of failing it.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import dagster as dg
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from aios_dagster.lib.serving.breaker import ReplicaBoard
from aios_dagster.lib.serving.errors import (
    TritonInferenceError,
    TritonPermanentError,
    TritonTransientError,
    classify,
    is_transient,
)
from aios_dagster.lib.serving.retrying import RetryBudget, RoundFailed, call_with_retries

_logger = dg.get_dagster_logger(__name__)


def probe(url: str, timeout_s: float) -> str:
    """``"ready"`` or why not. A fresh client per probe: a channel that failed to connect
    backs off its reconnects (up to minutes), which would hide a server that just came up.
    """
    with grpcclient.InferenceServerClient(url=url) as client:
        try:
            if client.is_server_live(client_timeout=timeout_s) and client.is_server_ready(
                client_timeout=timeout_s
            ):
                return "ready"
            return "server live but not ready"
        except InferenceServerException as exc:
            return str(exc)


def wait_until_ready(urls: list[str], board: ReplicaBoard, timeout_s: float) -> dict[str, str]:
    """Block until at least one replica is live and ready; url -> "ready" or why not.

    Replicas that are down are logged (a degraded but working deployment should not fail a
    run) and returned. ``TimeoutError`` naming every URL if no replica became ready in time.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        status = {url: probe(url, 2.0) for url in urls}
        ready = [url for url, answer in status.items() if answer == "ready"]
        if ready:
            for url in ready:
                board.record_success(url)
            down = {url: answer for url, answer in status.items() if answer != "ready"}
            if down:
                _logger.warning(
                    "Triton: %d of %d replicas ready; down: %s",
                    len(ready),
                    len(urls),
                    "; ".join(f"{u} ({a})" for u, a in down.items()),
                )
            return status
        if time.monotonic() >= deadline:
            answers = "; ".join(f"{u}: {a}" for u, a in status.items())
            raise TimeoutError(
                f"Triton at {', '.join(urls)} was not live and ready within "
                f"{timeout_s:.1f}s (last answer: {answers})"
            )
        time.sleep(0.2)


def _load_on(url: str, model_name: str, timeout_s: float) -> None:
    with grpcclient.InferenceServerClient(url=url) as client:
        client.load_model(model_name, client_timeout=timeout_s)
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                if client.is_model_ready(model_name, client_timeout=5.0):
                    return
            except InferenceServerException:
                pass
            if time.monotonic() >= deadline:
                raise TritonPermanentError(
                    f"model {model_name!r} (latest version) was loaded on {url} but "
                    f"not ready within {timeout_s:.1f}s"
                )
            time.sleep(0.1)


def load_model(
    urls: list[str], board: ReplicaBoard, model_name: str, timeout_s: float, budget: RetryBudget
) -> list[str]:
    """Load (or reload) ``model_name`` on every reachable replica; the replicas now ready.

    Replicas are loaded in parallel. While no replica is reachable the load is retried under
    ``budget``; once one is, unreachable ones are skipped with a warning (a replica loads the
    repository when it restarts, and version pinning keeps a lagging one from mixing versions
    into a result). A replica that answers but fails the load raises at once.
    """
    what = f"model {model_name!r} (all versions per its version_policy)"

    def attempt() -> tuple[list[str], dict[str, BaseException]]:
        errors: dict[str, BaseException] = {}
        with ThreadPoolExecutor(max_workers=len(urls), thread_name_prefix="triton-load") as pool:
            futures = {url: pool.submit(_load_on, url, model_name, timeout_s) for url in urls}
            for url, future in futures.items():
                error = future.exception()
                if error is not None:
                    errors[url] = error
        unreachable = {u: e for u, e in errors.items() if is_transient(e)}
        failed = {u: e for u, e in errors.items() if u not in unreachable}
        loaded = [url for url in urls if url not in errors]
        if failed:
            details = "; ".join(f"{u}: {e}" for u, e in failed.items())
            raise TritonPermanentError(
                f"{what}: load failed on {len(failed)} of {len(urls)} replica(s): {details}"
                + (f" (loaded on {', '.join(loaded)})" if loaded else "")
            ) from next(iter(failed.values()))
        if not loaded:
            raise RoundFailed([f"{u}: {e}" for u, e in unreachable.items()], len(urls))
        return loaded, unreachable

    def give_up(last: RoundFailed, retries: int, spent: bool) -> TritonInferenceError:
        return TritonTransientError(
            f"{what}: load request failed, no Triton replica reachable after {retries} "
            f"retries{_budget_note(budget, spent)}: {'; '.join(last.errors)}"
        )

    (loaded, unreachable), _ = call_with_retries(
        attempt, budget, started=time.monotonic(), what=what, give_up=give_up
    )
    for url in loaded:
        board.record_success(url)
    if unreachable:
        _logger.warning(
            "model %r loaded on %s; unreachable replicas skipped: %s",
            model_name,
            ", ".join(loaded),
            "; ".join(f"{u} ({e})" for u, e in unreachable.items()),
        )
    return loaded


def read_model_config(
    urls: list[str],
    board: ReplicaBoard,
    model_name: str,
    timeout_s: float,
    reset_s: float,
    budget: RetryBudget,
) -> dict[str, Any]:
    """The server's view of the model config, as a JSON-style dict.

    Asked of the first replica whose breaker is not open, failing over on transient errors,
    and retried like inference when none answers (a restarting server). A failed read does not
    count against a breaker: it is the inference that follows which decides that. A model the
    server does not know is a ``TritonPermanentError`` at once.
    """
    what = f"model {model_name!r} (latest version): reading its config"

    def attempt() -> dict[str, Any]:
        skip = {h.url for h in board.snapshot(urls, reset_s) if h.state == "open"}
        candidates = [u for u in urls if u not in skip] or urls
        errors: list[str] = []
        for url in candidates:
            with grpcclient.InferenceServerClient(url=url) as client:
                try:
                    response = client.get_model_config(
                        model_name, as_json=True, client_timeout=timeout_s
                    )
                except InferenceServerException as exc:
                    if is_transient(exc):
                        errors.append(f"{url}: {exc}")
                        continue
                    hint = (
                        "; load it first (TritonResource.load_model)"
                        if classify(exc) == "model_unavailable"
                        else ""
                    )
                    raise TritonPermanentError(
                        f"{what} from {url} failed (not retried){hint}: {exc}"
                    ) from exc
            board.record_success(url)
            return dict(response.get("config", response))
        raise RoundFailed(errors, len(candidates))

    def give_up(last: RoundFailed, retries: int, spent: bool) -> TritonInferenceError:
        return TritonTransientError(
            f"{what} failed on every replica after {retries} retries"
            f"{_budget_note(budget, spent)}: {'; '.join(last.errors)}"
        )

    config, _ = call_with_retries(
        attempt, budget, started=time.monotonic(), what=what, give_up=give_up
    )
    return config


def labels_from_config(config: dict[str, Any]) -> dict[str, tuple[str, ...]]:
    """Head name -> labels from a model config's ``labels_<head>`` parameters, in output order.

    Pure, so a caller that already read the config (to check its signature) reuses it.
    """
    params: dict[str, dict[str, str]] = config.get("parameters", {})
    heads = [str(out["name"]).removesuffix("_probs") for out in config.get("output", [])] + [
        key.removeprefix("labels_") for key in params if key.startswith("labels_")
    ]
    labels: dict[str, tuple[str, ...]] = {}
    for head in heads:
        value = params.get(f"labels_{head}", {}).get("string_value")
        if value is not None and head not in labels:
            labels[head] = tuple(value.split(","))
    return labels


def _budget_note(budget: RetryBudget, spent: bool) -> str:
    return f" (retry budget of {budget.total_s:g}s spent)" if spent else ""
