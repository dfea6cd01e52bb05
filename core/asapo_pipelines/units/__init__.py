"""Runtime classes of the core's built-in units (descriptors in `asapo_pipelines.builtin`)."""
