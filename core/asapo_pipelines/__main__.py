"""`python -m asapo_pipelines` is the `pipeline` command."""

from asapo_pipelines.cli import main

main()
