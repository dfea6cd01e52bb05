"""Redis Streams transport for asapo-pipelines: `transport: {redis: {url: ...}}` carries a
pipeline's streams across the nodes of a cluster through one redis-server.

The package root stays light; the `redis` client is imported only by
`asapo_pipelines_redis.transport`, when a pipeline opens the transport.
"""

__version__ = "0.1.0"
