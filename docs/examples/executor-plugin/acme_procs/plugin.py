"""Registration module: the executor's descriptor and config model, no heavy imports."""

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from asapo_pipelines.sdk import ExecutorDescriptor, RegisterExecutor, hookimpl


class ProcsConfig(BaseModel):
    """The `deploy: {procs: {...}}` section of a pipeline file."""

    # unknown keys must be refused, or the plugin is reported broken
    model_config = ConfigDict(extra="forbid")

    state_dir: Annotated[
        str,
        Field(description="Folder for the workers' logs and state, relative to the pipeline file."),
    ] = ".procs"


@hookimpl
def register_executors(register: RegisterExecutor) -> None:
    register(
        ExecutorDescriptor(
            name="procs",  # the key under `deploy:`; the runtime reads it as `self.name`
            summary="Each unit replica a plain subprocess on this machine, one log file each.",
            config=ProcsConfig,
            runtime="acme_procs.executor:ProcsExecutor",
        )
    )
