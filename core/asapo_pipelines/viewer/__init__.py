"""`pipeline view`: a live web page of a running pipeline.

The page reads only the transport (the pipeline's streams, its error streams and the status stream
every worker publishes), so it shows a pipeline on the embedded store and on ASAP::O alike. The
server (Starlette on uvicorn, the optional extra `viewer`) pushes changes to the page with
Server-Sent Events; plots use Plotly.js from the installed `plotly` package. Nothing here is
imported by the CLI until `pipeline view` runs.
"""

from __future__ import annotations

__all__ = ["PipelineView", "UnitView", "load_view"]

from asapo_pipelines.viewer.model import PipelineView, UnitView, load_view
