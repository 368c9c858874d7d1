"""The gRPC clients of one ``infer`` call: one shared per replica, replaced after a failure."""

from __future__ import annotations

import threading

import tritonclient.grpc as grpcclient


class ChannelPool:
    """One ``tritonclient.grpc`` client per replica, shared by the call's threads.

    A channel that saw its server die sits in gRPC's reconnect backoff (up to minutes) and
    fails every request fast even after the server is back; those fast failures would also
    trip the breaker of a healthy replica. So after a transient failure the replica's client is
    retired (not closed: other threads may be mid-call on it) and the next request opens a
    fresh one. Everything is closed when the call ends.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._current: dict[str, grpcclient.InferenceServerClient] = {}
        self._all: list[grpcclient.InferenceServerClient] = []

    def get(self, url: str) -> grpcclient.InferenceServerClient:
        with self._lock:
            client = self._current.get(url)
            if client is None:
                client = self._current[url] = grpcclient.InferenceServerClient(url=url)
                self._all.append(client)
            return client

    def retire(self, url: str, client: grpcclient.InferenceServerClient) -> None:
        with self._lock:
            if self._current.get(url) is client:
                del self._current[url]

    def close(self) -> None:
        with self._lock:
            clients, self._all, self._current = self._all, [], {}
        for client in clients:
            client.close()
