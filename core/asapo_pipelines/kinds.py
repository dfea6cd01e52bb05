"""The vocabulary of units: kinds and statuses. Kept free of pydantic so that listing, which
may be served from the cache, imports nothing heavy."""

from __future__ import annotations

from typing import Literal

Kind = Literal["connector", "processor", "agent"]
Status = Literal["stable", "beta", "experimental", "deprecated"]

KINDS: tuple[Kind, ...] = ("connector", "processor", "agent")
STATUSES: tuple[Status, ...] = ("stable", "beta", "experimental", "deprecated")
