"""The opt-in shared-memory transport of ``TritonResource`` against the real server.

``shared_memory=True`` moves tensors through POSIX shared memory regions registered with the
server instead of inside gRPC messages (same host only). What must hold: identical outputs,
nothing left behind (no server registration, no ``/dev/shm`` file), and a server that forgot
a region (it restarted) gets it registered again instead of failing the call.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tritonclient.grpc as grpcclient

from aios_dagster.lib.serving.channels import ChannelPool
from aios_dagster.lib.serving.launcher import LocalTritonServer
from aios_dagster.lib.serving.shared_memory import ShmPool, infer_via_shm
from aios_dagster.lib.serving.triton import TritonResource
from tests.triton_fixtures import ATOL, PublishFn, random_features


def _leftovers() -> list[str]:
    return sorted(p.name for p in Path("/dev/shm").glob("aios_infer_*"))


def test_shared_memory_outputs_match_and_nothing_is_left_behind(
    triton_server: LocalTritonServer, publish_random_model: PublishFn
) -> None:
    published = publish_random_model(seed=8, heads={"queue": 6, "priority": 3, "sentiment": 2})
    before = _leftovers()
    resource = TritonResource(url=triton_server.grpc_url, shared_memory=True)
    resource.load_model(published.name)
    x = random_features(5000, published.model.n_features)  # 5 chunks, the last one partial

    result = resource.infer(published.name, x, published.output_names)
    expected = published.model.predict_proba(x)
    for head in published.model.heads:
        np.testing.assert_allclose(
            result.outputs[f"{head.name}_probs"], expected[head.name], atol=ATOL, rtol=0
        )
        assert result.outputs[f"{head.name}_probs"].flags.writeable
    assert result.requests == 5 and result.retries == 0

    pinned = resource.infer(published.name, x[:3000], published.output_names, model_version="1")
    assert pinned.model_version == "1"
    np.testing.assert_allclose(
        pinned.outputs["queue_probs"], expected["queue"][:3000], atol=ATOL, rtol=0
    )

    with grpcclient.InferenceServerClient(triton_server.grpc_url) as admin:
        status = admin.get_system_shared_memory_status(as_json=True)
    assert not [r for r in status.get("regions", {}) if r.startswith("aios_infer_")]
    assert _leftovers() == before


def test_a_region_the_server_forgot_is_registered_again(
    triton_server: LocalTritonServer, publish_random_model: PublishFn
) -> None:
    published = publish_random_model(seed=9)
    url = triton_server.grpc_url
    resource = TritonResource(url=url, shared_memory=True)
    resource.load_model(published.name)
    x = random_features(700, published.model.n_features)
    layout = {
        "queue_probs": ((1024, 6), np.dtype(np.float32)),
        "priority_probs": ((1024, 3), np.dtype(np.float32)),
    }
    pool = ShmPool(1, 1024 * x.shape[1] * 4, layout)
    channels = ChannelPool()
    try:
        slot = pool.lease()
        slot.registered.add(url)  # as if registered before the server restarted
        version, arrays = infer_via_shm(
            channels.get(url),
            url,
            slot,
            pool,
            published.name,
            "",
            "features",
            x,
            published.output_names,
            timeout_s=30.0,
        )
        pool.give_back(slot)
    finally:
        pool.close(channels)
        channels.close()
    assert version == "1"
    expected = published.model.predict_proba(x)
    for head in published.model.heads:
        got = arrays[f"{head.name}_probs"]
        assert got is not None
        np.testing.assert_allclose(got, expected[head.name], atol=ATOL, rtol=0)
