"""NeXus (HDF5) output for asapo-pipelines: `nexus.writer` stores raw XAS scans as NXxas entries
and processed results as NXprocess/NXdata entries in a file readers may open while it grows.

The package root stays light; h5py and numpy are imported only by `asapo_pipelines_nexus.writer`.
"""

__version__ = "0.1.0"
