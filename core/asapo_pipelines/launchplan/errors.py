"""The error of planning a pipeline's launch, neutral so that no executor needs another's."""

from __future__ import annotations

from asapo_pipelines.errors import PipelinesError


class LaunchPlanError(PipelinesError):
    """The workers cannot be planned as the file asks (an unpinned wheel, a conflicting
    package): a mistake in the file, hence the usage exit code."""

    exit_code = 2
