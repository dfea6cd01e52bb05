"""Repeats measured with far less noise than the copy tolerance are repeats, not copies (an
outside tester: two independent scans with 3e-6 noise in mu, a strong sample counted long,
agree within the fixed 1e-5 at 98 % of their points, and the merge rejected the second as a
duplicate of the first, so the agent saw one scan). Whether values are "the same" is now judged
against the scans' own noise; copies of such scans are still copies.

The scans are the P65 goethite scan 0 with its noise taken away (its mu smoothed) and seeded
white noise of a chosen size put back, written as P65 files (It from I0 and mu)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter1d
from test_xas_merge_copies import COPIES, IT, PARAMS, load, save
from xas_testdata import P65_I0, P65_SCANS

from asapo_pipelines_xas.merge import Merger, _Entry, sameness
from asapo_pipelines_xas.normalize import normalize_scan
from asapo_pipelines_xas.params import MergeParams
from asapo_pipelines_xas.readers import read_scan

STEM = P65_SCANS[0].rsplit(".", 2)[0]


def low_noise_scan(path: Path, sigma: float, seed: int) -> Path:
    """Scan 0 measured with `sigma` white noise in mu: its mu smoothed, the noise added."""
    header, data = load(P65_SCANS[0])
    mu = np.log(data[:, P65_I0] / data[:, IT])
    curve = gaussian_filter1d(gaussian_filter1d(mu, 4.0), 4.0)
    noisy = curve + sigma * np.random.default_rng(seed).standard_normal(len(mu))
    data = data.copy()
    data[:, IT] = data[:, P65_I0] * np.exp(-noisy)
    return save(path, header, data)


def entry(path: Path) -> _Entry:
    return _Entry(path.name, normalize_scan(read_scan(path), PARAMS))


@pytest.mark.parametrize("sigma", [1e-6, 3e-6])
def test_low_noise_repeats_are_merged_and_their_copy_is_not(tmp_path, sigma):
    first = low_noise_scan(tmp_path / f"{STEM}.00000.xdi", sigma, seed=1)
    second = low_noise_scan(tmp_path / f"{STEM}.00001.xdi", sigma, seed=2)
    header, data = load(first)  # an absolute path: DATA / path is the path
    copy = save(tmp_path / f"{STEM}.00002.xdi", header, COPIES["cut short"](data))
    merger = Merger(MergeParams())
    for path in (first, second, copy):
        result = merger.add(normalize_scan(read_scan(path), PARAMS)).to_json()
    assert sorted(result["accepted"]) == [first.name, second.name]
    assert result["n_merged"] == 2
    (rejected,) = result["rejected"]
    assert rejected["scan"] == copy.name
    assert rejected["duplicate"] is True
    (reason,) = rejected["reasons"]
    assert reason.startswith(f"duplicate of scan {first.name}: the same mu values point by point")
    # the tolerance said is the one used: below the fixed 1e-5, at most half the difference's noise
    within = float(reason.split("(within ", 1)[1].split(")", 1)[0])
    assert within < 1e-5
    assert within <= 0.5 * math.sqrt(2) * sigma * 1.2


@pytest.mark.parametrize("kind", list(COPIES))
def test_copies_of_a_low_noise_scan_are_copies(tmp_path, kind):
    scan = low_noise_scan(tmp_path / f"{STEM}.00000.xdi", 3e-6, seed=1)
    header, data = load(scan)
    copy = save(tmp_path / f"{STEM}.00001.xdi", header, COPIES[kind](data))
    assert sameness(entry(scan), entry(copy)) is not None
