"""Errors of the Nomad side: each one sentence a user can act on (see PipelinesError)."""

from __future__ import annotations

from asapo_pipelines.errors import ExecutorUnreachable, PipelinesError


class NomadError(PipelinesError):
    """Base of every error talking to Nomad (compiling the job raises the launch plan's
    `LaunchPlanError`: the local executor runs the same job)."""


class NomadConfigError(NomadError):
    """The NOMAD_* settings are unusable (missing CA file, certificate without key, ...)."""

    exit_code = 2


class NomadUnreachable(NomadError, ExecutorUnreachable):
    """No answer from the agent: connection refused, DNS, TLS handshake."""


class NomadTimeout(NomadError, ExecutorUnreachable):
    """The agent did not answer, or a wait did not finish, within the time allowed."""


class NomadPermissionDenied(NomadError):
    """HTTP 403: no token, or the token lacks a capability."""


class NomadNotFound(NomadError):
    """HTTP 404: no such job, allocation or endpoint."""


class NomadRejected(NomadError):
    """HTTP 400: the request (usually the job) failed Nomad's validation."""


class NomadServerError(NomadError):
    """HTTP 5xx or an answer that is not what Nomad's API documents."""


class PlacementFailed(NomadError):
    """The job is registered but the scheduler cannot place some of its groups."""
