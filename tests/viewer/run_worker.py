"""Runs one unit of the viewer tests' pipeline as a real worker process (until `pipeline run`
can start them): python run_worker.py STORE PIPELINE INSTANCE UNIT INPUTS OUTPUTS PARAMS."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import live_units

from asapo_pipelines.testing import catalog_from_plugins
from asapo_pipelines.transport.embedded import EmbeddedTransport
from asapo_pipelines.worker.runtime import Worker


def main() -> None:
    store, pipeline, instance, unit, inputs, outputs, params = sys.argv[1:8]
    logging.basicConfig(level=logging.WARNING)
    descriptor = catalog_from_plugins(live_units).get(unit)
    with EmbeddedTransport(store) as transport:
        worker = Worker(
            transport,
            descriptor,
            descriptor.params(**json.loads(params)),
            pipeline=pipeline,
            instance=instance,
            inputs=json.loads(inputs),
            outputs=json.loads(outputs),
            status_interval=0.3,
            lease_seconds=2.0,
        )
        worker.install_signal_handlers()
        print(worker.run(), flush=True)


if __name__ == "__main__":
    main()
