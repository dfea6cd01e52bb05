"""XAS units for asapo-pipelines: the P65 pipeline (scan files, normalisation, merge of repeats,
convergence agent) built on xraylarch.

The package root stays light: the catalog imports `asapo_pipelines_xas.plugin` to list the units,
and that must not pull in numpy or xraylarch. The numerical modules (`readers`, `normalize`,
`merge`, `agent`) are imported only where they are used.
"""

__version__ = "0.1.0"
