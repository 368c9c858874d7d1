"""Tensors through POSIX shared memory registered with Triton, instead of inside gRPC messages.

Opt-in (``TritonResource.shared_memory``): it saves protobuf serialisation and the loopback
copy of every request, but only a server on this host, sharing its ``/dev/shm``, can map the
regions, so remote replicas (the production deployment) cannot use it.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import dagster as dg
import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.utils.shared_memory as shm
from tritonclient.utils import InferenceServerException

from aios_dagster.lib.serving.channels import ChannelPool
from aios_dagster.lib.serving.errors import (
    SHM_FORGOTTEN_MARKER,
    TritonPermanentError,
    is_transient,
    server_message,
)

_RELEASE_WAIT_S = 2.0
_logger = dg.get_dagster_logger(__name__)

OutputLayout = dict[str, tuple[tuple[int, ...], Any]]  # output -> (shape per full chunk, dtype)


@dataclass
class ShmSlot:
    """One shared-memory region: the input chunk at offset 0, then each output."""

    name: str
    handle: Any  # tritonclient.utils.shared_memory.SharedMemoryRegion
    byte_size: int
    registered: set[str] = field(default_factory=set)  # replicas that know this region

    @property
    def key(self) -> str:
        return f"/{self.name}"


def _unregister(client: grpcclient.InferenceServerClient, name: str, deadline: float) -> None:
    """Unregister a region, waiting (until ``deadline``) while the server still holds it.

    Triton releases a region shortly *after* the response went out ("Cannot unregister ...
    it is currently in use"); giving up at once would leak the server-side mapping. One
    deadline for the whole call bounds the wait even with many retired slots.
    """
    while True:
        try:
            client.unregister_system_shared_memory(name, client_timeout=2.0)
            return
        except InferenceServerException as exc:
            busy = "in use" in server_message(exc).lower()
            if not busy or time.monotonic() >= deadline:
                # A dead or restarted server holds no registration; a stuck one is logged.
                if busy:
                    _logger.warning("shared-memory region %s still in use: %s", name, exc)
                return
        time.sleep(0.01)


class ShmPool:
    """Shared-memory slots of one ``infer`` call.

    Why slots and their rules:

    * a region is created and registered with a replica once per call, not per request (a
      registration is an RPC, which would cost what shared memory saves);
    * a slot is leased by one request at a time and returned only after its outputs were
      copied out, so concurrent chunks never share bytes;
    * a slot whose request *failed* is retired, never reused: after a client-side deadline the
      server may still run the request and write its outputs into the region later, which
      would silently overwrite another chunk's rows;
    * everything is unregistered and unlinked when the call ends, retired slots included.
    """

    def __init__(self, n_slots: int, in_bytes: int, out_layout: OutputLayout) -> None:
        self.in_bytes = in_bytes
        self.out_layout = out_layout
        self.out_offsets: dict[str, int] = {}
        offset = in_bytes
        for name, (shape, dtype) in out_layout.items():
            self.out_offsets[name] = offset
            offset += int(np.prod(shape)) * np.dtype(dtype).itemsize
        self.byte_size = offset
        self._prefix = f"aios_infer_{os.getpid()}_{uuid.uuid4().hex[:10]}"
        self._lock = threading.Lock()
        self._all: list[ShmSlot] = []
        self._free: queue.SimpleQueue[ShmSlot] = queue.SimpleQueue()
        try:
            for _ in range(n_slots):  # one per worker thread up front; more after failures
                self._free.put(self._new_slot())
        except BaseException:
            # /dev/shm full or similar: unlink what was created before giving up.
            for slot in self._all:
                with contextlib.suppress(Exception):
                    shm.destroy_shared_memory_region(slot.handle)
            raise

    def _new_slot(self) -> ShmSlot:
        with self._lock:
            name = f"{self._prefix}_{len(self._all)}"
            handle = shm.create_shared_memory_region(name, f"/{name}", self.byte_size)
            slot = ShmSlot(name, handle, self.byte_size)
            self._all.append(slot)
        return slot

    def lease(self) -> ShmSlot:
        """A free slot, or a new one: never blocks, so a slot lost to an error cannot hang."""
        try:
            return self._free.get_nowait()
        except queue.Empty:
            return self._new_slot()

    def give_back(self, slot: ShmSlot) -> None:
        self._free.put(slot)

    def retire(self, slot: ShmSlot) -> None:
        """Never lease ``slot`` again (it stays allocated until ``close``); see the class doc."""

    def close(self, channels: ChannelPool) -> None:
        with self._lock:
            slots, self._all = self._all, []
        deadline = time.monotonic() + _RELEASE_WAIT_S
        for slot in slots:
            # One slot failing to release must not leak the others.
            with contextlib.suppress(Exception):
                for url in slot.registered:
                    _unregister(channels.get(url), slot.name, deadline)
            with contextlib.suppress(Exception):
                shm.destroy_shared_memory_region(slot.handle)


def infer_via_shm(
    client: grpcclient.InferenceServerClient,
    url: str,
    slot: ShmSlot,
    pool: ShmPool,
    model_name: str,
    model_version: str,
    input_name: str,
    chunk: np.ndarray,
    output_names: list[str],
    timeout_s: float,
    headers: dict[str, str] | None = None,
) -> tuple[str, dict[str, np.ndarray | None]]:
    """One request with its tensors in ``slot``: (answering version, copied outputs).

    Registers the slot with ``url`` on first use, and once more if the server answers that
    it does not know the region (it restarted since). Server errors propagate as
    ``InferenceServerException`` so the caller's failover and breaker logic applies.
    """
    rows = chunk.shape[0]
    shm.set_shared_memory_region(slot.handle, [chunk])
    infer_input = grpcclient.InferInput(input_name, list(chunk.shape), "FP32")
    infer_input.set_shared_memory(slot.name, chunk.nbytes)
    requested = []
    shapes: dict[str, tuple[int, ...]] = {}
    for name in output_names:
        tail, dtype = pool.out_layout[name][0][1:], pool.out_layout[name][1]
        shapes[name] = (rows, *tail)
        out = grpcclient.InferRequestedOutput(name)
        out.set_shared_memory(
            slot.name,
            int(np.prod(shapes[name])) * np.dtype(dtype).itemsize,
            offset=pool.out_offsets[name],
        )
        requested.append(out)
    result = None
    while result is None:
        fresh = url not in slot.registered
        if fresh:
            try:
                client.register_system_shared_memory(
                    slot.name, slot.key, slot.byte_size, client_timeout=timeout_s
                )
            except InferenceServerException as exc:
                if is_transient(exc):
                    raise
                raise TritonPermanentError(
                    f"model {model_name!r}: shared_memory=True but replica {url} could not "
                    f"register region {slot.key} ({slot.byte_size} bytes); is the server "
                    f"on this host, sharing its /dev/shm? Server said: {exc}"
                ) from exc
            slot.registered.add(url)
        try:
            result = client.infer(
                model_name,
                [infer_input],
                model_version=model_version,
                outputs=requested,
                client_timeout=timeout_s,
                headers=headers,
            )
        except InferenceServerException as exc:
            forgotten = SHM_FORGOTTEN_MARKER in server_message(exc).lower()
            if not forgotten or fresh:
                raise
            slot.registered.discard(url)  # the server restarted since we registered
    arrays: dict[str, np.ndarray | None] = {}
    for name in output_names:
        output = result.get_output(name)
        shape = None if output is None else tuple(int(d) for d in output.shape)
        if shape is None:
            arrays[name] = None
            continue
        if shape != shapes[name]:
            raise TritonPermanentError(
                f"model {model_name!r} at {url}: output {name!r} has shape {shape}, "
                f"expected {shapes[name]}"
            )
        view = shm.get_contents_as_numpy(
            slot.handle, pool.out_layout[name][1], list(shape), offset=pool.out_offsets[name]
        )
        arrays[name] = np.array(view, copy=True)  # the slot is reused after this returns
        del view
    return str(result.get_response().model_version), arrays
