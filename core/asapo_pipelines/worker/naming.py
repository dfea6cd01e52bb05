"""Where a pipeline's streams, errors, status and run records live on the transport.

The namespace scheme (the same on every transport; ASAP::O adds the transport's own
`data_source_prefix` in front of every name):

    <pipeline>.<run>.<stream>     a stream the pipeline's units write (one data source each)
    <stream>                      a stream declared `external: true` under `streams:`: made
                                  outside the pipeline, read as named, never written
    <pipeline>.<run>._processed   the inputs a unit that keeps state (`restores_state`)
                                  processed without an output, one stream per unit instance:
                                  what its restart hands `restore` besides the inputs its
                                  outputs name (a leading '_' is no name a pipeline file can
                                  give a stream, so it meets none of them)
    <pipeline>.errors             error records, one stream per unit instance
    <pipeline>.status             worker counters, one stream per unit replica
    <pipeline>.runs               run records: `owner` (the file that owns the namespace),
                                  `index` (one message per run, its id numbers the run) and one
                                  stream per run (`r1`, `r2`, ...) holding its events

Pipeline names hold no dot and run ids start with `r` and a digit, so no two pipelines and no two
runs of one pipeline share a data source; validation refuses stream names inside the pipeline's
own namespace (`<pipeline>.` in front), so no stream collides with the errors, status or runs.

Inside a data source, ASAP::O streams are scans: the first is `default`, and a source moves on to
the next scan by finishing its stream with a `next_stream`. Processors write each output into the
stream of the same name as the input it came from, so the scan structure carries through.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

#: the first stream of every data source (ASAP::O's name for it): where sources start writing,
#: the worker starts reading, and the SDK's runner and test harness put messages by default
FIRST_STREAM = "default"
#: Set by the compiled job for its workers: `batch` or `service` (`launchplan.job.job_type`). A
#: worker of a service does not end when its inputs are done, since every executor restarts a
#: service's task that exits (and fails it after its restart attempts); without it (a worker
#: started by hand) a worker ends when its inputs are done.
JOB_TYPE_ENV = "ASAPO_PIPELINES_JOB_TYPE"
#: the longest run id the validator makes room for (`r` and up to 7 digits)
RUN_ID_ROOM = 8
RUN_ID = re.compile(r"^r[0-9]{1,7}$")


def data_source_for(stream_name: str, pipeline: str | None = None, run: str | None = None) -> str:
    """The data source of a pipeline's own stream in one run; with no pipeline and run (a worker
    built by hand, an external stream), the stream's own name."""
    if pipeline is None or run is None:
        return stream_name
    return f"{pipeline}.{run}.{stream_name}"


def run_sources(
    pipeline: str, run: str, streams: Iterable[str], external: Iterable[str] = ()
) -> dict[str, str]:
    """stream -> data source for every stream a run's units use."""
    outside = set(external)
    return {s: s if s in outside else data_source_for(s, pipeline, run) for s in streams}


def namespace_prefix(pipeline: str) -> str:
    return f"{pipeline}."


def group_name(pipeline: str, instance: str) -> str:
    """The consumer group a unit's replicas share (letters, digits, '-' and '_' only)."""
    return re.sub(r"[^A-Za-z0-9_-]", "-", f"{pipeline}_{instance}")


#: the last part of `processed_source`
PROCESSED = "_processed"


def processed_source(pipeline: str, run: str | None) -> str:
    """Where a unit that keeps state records the inputs it processed without an output (a
    worker built by hand, with no run: in the pipeline's own namespace)."""
    return f"{pipeline}.{run}.{PROCESSED}" if run else f"{pipeline}.{PROCESSED}"


def errors_source(pipeline: str) -> str:
    return f"{pipeline}.errors"


def status_source(pipeline: str) -> str:
    return f"{pipeline}.status"


def runs_source(pipeline: str) -> str:
    return f"{pipeline}.runs"


def status_stream(instance: str, replica: int) -> str:
    return f"{instance}.{replica}"
