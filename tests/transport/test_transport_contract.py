"""The transport contract (`asapo_pipelines.testing.transport_contract`, shipped so that a
plugin's transport runs the same cases), against each backend of conftest.py: the embedded store
always; ASAP::O's loopback service with the real wheels; a real ASAP::O when ASAPO_ENDPOINT and
credentials are set; Redis when its plugin and redis-server are installed. Otherwise those cases
are skipped with the reason shown.
"""

from __future__ import annotations

from asapo_pipelines.testing.transport_contract import *  # noqa: F403 (the cases)
