"""Registration of the `redis` transport (the module the `asapo_pipelines` entry point names).

Light on purpose: pydantic and the core's descriptor types only, never the `redis` client.
"""

from __future__ import annotations

from asapo_pipelines.descriptor import TransportDescriptor
from asapo_pipelines.hookspecs import RegisterTransport, hookimpl
from asapo_pipelines_redis.config import RedisConfig

REDIS = TransportDescriptor(
    name="redis",
    summary="Redis Streams on one redis-server: a pipeline's streams across the nodes of a cluster.",
    description=(
        "Each stream is a Redis stream under a key prefix and the data source's name (the "
        "pipeline's namespace); consumer groups are Redis consumer groups, acknowledgement is "
        "XACK and messages of a crashed consumer come back after the lease through XAUTOCLAIM. "
        "Payloads up to inline_max bytes travel inside Redis, larger ones as files in "
        "payload_dir, a directory every node mounts."
    ),
    config=RedisConfig,
    runtime="asapo_pipelines_redis.transport:open_transport",
)


@hookimpl
def register_transports(register: RegisterTransport) -> None:
    register(REDIS)
