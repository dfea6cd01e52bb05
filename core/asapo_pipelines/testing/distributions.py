"""Write and install real plugin distributions, for tests and benchmarks.

The projects are ordinary setuptools projects with an entry point in the `asapo_pipelines`
group; they are built and installed by pip (no network: `--no-build-isolation`), so what the
catalog sees is exactly what an installed third-party plugin looks like.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from asapo_pipelines import PROJECT


@dataclass
class PluginProject:
    """A plugin distribution: its name, version and the source of its modules."""

    distribution: str
    version: str = "1.0.0"
    #: import package name -> {module file name -> source}
    modules: Mapping[str, str] = field(default_factory=dict)
    #: entry point name -> "module" or "module:object"
    entry_points: Mapping[str, str] = field(default_factory=dict)
    dependencies: tuple[str, ...] = ()

    @property
    def package(self) -> str:
        return self.distribution.replace("-", "_")

    def write(self, root: Path) -> Path:
        """Write the project under ``root/<distribution>`` and return its directory."""
        project = root / self.distribution
        package = project / self.package
        package.mkdir(parents=True, exist_ok=True)
        (package / "__init__.py").touch()
        for filename, source in self.modules.items():
            (package / filename).write_text(textwrap.dedent(source))
        eps = "\n".join(f'"{name}" = "{value}"' for name, value in self.entry_points.items())
        deps = ", ".join(f'"{d}"' for d in self.dependencies)
        (project / "pyproject.toml").write_text(
            textwrap.dedent(
                f"""\
                [build-system]
                requires = ["setuptools>=69"]
                build-backend = "setuptools.build_meta"

                [project]
                name = "{self.distribution}"
                version = "{self.version}"
                dependencies = [{deps}]

                [project.entry-points.{PROJECT}]
                """
            )
            + eps
            + "\n\n[tool.setuptools]\npackages = ["
            + f'"{self.package}"]\n'
        )
        return project


def install(
    projects: Iterable[Path], target: Path | None = None, *, python: str = sys.executable
) -> None:
    """pip-install project directories into ``target`` (a directory to put on sys.path), or
    into ``python``'s own environment when no target is given. Needs setuptools there."""
    paths = [str(p) for p in projects]
    if not paths:
        return
    where = ["--target", str(target)] if target is not None else []
    subprocess.run(
        [
            python,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-build-isolation",
            "--no-deps",
            "--no-index",
            "--upgrade",  # replace what an earlier call put in the same target
            *where,
            *paths,
        ],
        check=True,
    )
