"""Where the bundled beamline data is, and the settings of its known values (SOURCES.md)."""

from __future__ import annotations

from pathlib import Path


def find_data_dir() -> Path:
    """The project's own copy (examples/data), else the shared data set beside the clone."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        candidate = parent / "examples" / "data"
        if (candidate / "SOURCES.md").is_file():
            return candidate
    for parent in here.parents:
        candidate = parent / "shared" / "data" / "xas"
        if (candidate / "SOURCES.md").is_file():
            return candidate
    raise RuntimeError("the XAS test data (examples/data/SOURCES.md) is not in this checkout")


DATA = find_data_dir()
P65_SCANS = ("20K_GOE_Fe_K_240.00000.xdi", "20K_GOE_Fe_K_240.00001.xdi")

#: The settings SOURCES.md gives for its known values (pre_edge defaults).
REFERENCE_SETTINGS = {
    "autobk": {"rbkg": 1, "kweight": 2},
    "noise": {"rmin": 15, "rmax": 25, "kweight": 2, "kmin": 2},
}


def larch_analyse(group):
    """xraylarch called directly, as the units do by default: pre_edge and autobk with their
    defaults, estimate_noise with the units' window kmax = max(k) - 0.5. Returns the group."""
    from larch.xafs import autobk, estimate_noise, pre_edge

    pre_edge(group)
    autobk(group)
    estimate_noise(group.k, group.chi, group=group, kmax=float(group.k.max()) - 0.5)
    return group


#: columns of a P65 file: energy, I0 (the incident beam), It (the transmitted beam) and Iref
#: (after the foil)
P65_ENERGY, P65_I0, P65_IT, P65_IREF = 0, 10, 11, 12


def larch_e0(energy, mu) -> float:
    """E0 of the arrays by xraylarch's pre_edge with its defaults."""
    import numpy as np
    from larch import Group
    from larch.xafs import pre_edge

    group = Group(energy=np.asarray(energy), mu=np.asarray(mu))
    pre_edge(group)
    return float(group.e0)


def p65_variant(
    source: str,
    path: Path,
    *,
    seed: int,
    noise: float,
    shift: float = 0.0,
    zero_iref: slice | list[int] | None = None,
) -> Path:
    """Another measurement of the P65 file `source`, written to `path` in its own format: It
    changed by `noise` relative noise (seeded), every energy (the foil's too) moved by `shift`
    eV; Iref written 0 in the rows `zero_iref` (a dead reference channel, or a few dropouts)."""
    import numpy as np

    header, rows = [], []
    for line in (DATA / source).read_text().splitlines():
        if line.startswith("#") or not line.strip():
            header.append(line)
        else:
            rows.append([float(x) for x in line.split()])
    data = np.array(rows)
    data[:, P65_ENERGY] += shift
    data[:, P65_IT] *= 1 + noise * np.random.default_rng(seed).standard_normal(len(data))
    if zero_iref is not None:
        data[zero_iref, P65_IREF] = 0.0
    body = [" ".join(repr(float(x)) for x in row) for row in data]
    path.write_text("\n".join([*header, *body]) + "\n")
    return path


def larch_merge_e0(paths: list[Path], normalize: dict) -> float:
    """E0 of xraylarch's merge (`merge_groups`, cubic) of the files' mu as `xas.normalize`
    with `normalize` reads them."""
    from larch import Group
    from larch.io import merge_groups
    from larch.xafs import pre_edge

    from asapo_pipelines_xas.normalize import normalize_scan
    from asapo_pipelines_xas.params import NormalizeParams
    from asapo_pipelines_xas.readers import read_scan

    params = NormalizeParams.model_validate(normalize)
    groups = []
    for path in paths:
        spectrum = normalize_scan(read_scan(path), params)
        groups.append(Group(energy=spectrum.arrays["energy"], mu=spectrum.arrays["mu"]))
    merged = merge_groups(groups, xarray="energy", yarray="mu", kind="cubic", trim=True)
    pre_edge(merged)
    return float(merged.e0)
