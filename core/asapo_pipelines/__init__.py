"""asapo-pipelines: near-real-time beamline pipelines from one YAML file.

The package root stays light (no pydantic, no pluggy) so that `import asapo_pipelines`
costs nothing. Plugin authors import everything from one door, `asapo_pipelines.sdk`.
"""

from __future__ import annotations

__version__ = "0.1.0"

#: Entry-point group and pluggy project name shared by every plugin.
PROJECT = "asapo_pipelines"

__all__ = ["PROJECT", "__version__"]
