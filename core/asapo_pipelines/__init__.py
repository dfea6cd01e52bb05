"""asapo-pipelines: near-real-time beamline pipelines from one YAML file.

The package root stays light (no pydantic, no pluggy) so that `import asapo_pipelines`
costs nothing. Plugin authors import everything from one door, `asapo_pipelines.sdk`.
"""

from __future__ import annotations

__version__ = "0.1.0"

#: Entry-point group and pluggy project name shared by every plugin.
PROJECT = "asapo_pipelines"
#: The core's distribution name: the catalog's built-in plugin, the pins of a compiled job, the
#: line `--version` prints first. Defined here, the lightest module, so every layer can import it.
CORE_DISTRIBUTION = "asapo-pipelines"

__all__ = ["CORE_DISTRIBUTION", "PROJECT", "__version__"]
