"""Slurm executor for asapo-pipelines: each unit instance of a pipeline runs as one Slurm batch
job (`pipeline worker`), restarted by resubmission when it dies.

The package root stays light: the executor is imported only when a pipeline is deployed.
"""

__version__ = "0.1.0"
