"""The Nomad executor behind the `Executor` interface: the core's `nomad` executor.

A thin wrapper: compiling is `nomad.compile`, talking to the cluster is `nomad.client`, both
unchanged. The client's settings come from NOMAD_ADDR and the other NOMAD_* variables; the
namespace the file's `deploy.nomad` section asks for wins over NOMAD_NAMESPACE.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import cached_property
from typing import TYPE_CHECKING, Any

from asapo_pipelines.executor import Executor, ExecutorStatus, InstanceStatus, text_lines

if TYPE_CHECKING:  # pragma: no cover
    from asapo_pipelines.nomad.client import NomadClient
    from asapo_pipelines.nomad.compile import CompiledJob


class NomadExecutor(Executor):
    name = "nomad"

    @cached_property
    def compiled(self) -> CompiledJob:
        from asapo_pipelines.nomad.compile import compile_pipeline

        return compile_pipeline(self.pipeline, self.catalog)

    @property
    def job_id(self) -> str:
        from asapo_pipelines.nomad.compile import job_identity

        return job_identity(self.pipeline)[0]

    @cached_property
    def client(self) -> NomadClient:
        from asapo_pipelines.nomad.client import NomadClient
        from asapo_pipelines.nomad.compile import job_identity
        from asapo_pipelines.nomad.settings import NomadSettings

        return NomadClient(NomadSettings.from_env(namespace=job_identity(self.pipeline)[1]))

    @property
    def warnings(self) -> list[str]:
        """The compiler's warnings about the cluster (shared paths, drivers)."""
        return list(self.compiled.warnings)

    def plan(self) -> dict[str, Any]:
        from asapo_pipelines.nomad.errors import NomadError
        from asapo_pipelines.nomad.jobspec import redacted

        try:
            diff: dict[str, Any] | None = self.client.plan(self.compiled.job).to_dict()
            note = None
        except NomadError as exc:
            diff, note = None, f"no comparison with the cluster: {exc}"
        return {"job": redacted(self.compiled.job), "plan": diff, "note": note}

    def deploy(self, *, wait: float) -> dict[str, Any]:
        return self.client.deploy(self.compiled.job, wait=wait).to_dict()

    def start(self, *, wait: float) -> dict[str, Any]:
        result = self.client.start(self.job_id, wait=wait)
        if result is None:
            return {"job": self.job_id, "already_running": True}
        return result.to_dict()

    def stop(self, *, purge: bool = False) -> dict[str, Any]:
        eval_id = self.client.stop(self.job_id, purge=purge)
        return {"job": self.job_id, "stopped": True, "purged": purge, "evaluation": eval_id}

    def status(self) -> ExecutorStatus:
        job = self.client.status(self.job_id)
        instances = []
        for alloc in job.allocations:
            # Nomad names an allocation `<job>.<group>[<index>]`
            index = alloc.name.rpartition("[")[2].rstrip("]")
            instances.append(
                InstanceStatus(
                    unit=alloc.group,
                    replica=int(index) if index.isdigit() else 0,
                    state=alloc.status,
                    task_id=alloc.id,
                    restarts=sum(t.restarts for t in alloc.tasks),
                    detail=f"on {alloc.node or '-'}, desired {alloc.desired}",
                )
            )
        return ExecutorStatus(
            executor=self.name,
            deployment=job.id,
            state="stopped" if job.stopped else job.status,
            instances=instances,
            extra=job.to_dict(),
        )

    def logs(
        self, unit: str, *, replica: int | None = None, follow: bool = False, stderr: bool = False
    ) -> Iterator[str]:
        alloc = self.client.pick_allocation(self.job_id, unit, replica)
        yield from text_lines(
            self.client.stream_logs(str(alloc["ID"]), unit, stderr=stderr, follow=follow)
        )
