"""bluesky-queueserver bridge for asapo-pipelines: `bluesky.queue` submits agents' plan
suggestions to a queue server over its 0MQ control API, in `auto` mode at once (within budgets)
or in `approve` mode after a person approved them in the suggestion inbox
(`pipeline suggestions FILE`, or the viewer).

The package root stays light: the queue-server client is imported only by
`asapo_pipelines_bluesky.queue` (inside a worker, or when a person approves).
"""

__version__ = "0.1.0"
