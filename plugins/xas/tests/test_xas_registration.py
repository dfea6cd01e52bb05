"""The plugin as the catalog sees it: four units, registered without heavy imports."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from asapo_pipelines.catalog import Catalog

UNITS = {
    "xas.scan-files": ("source", (), ("xas/scan",)),
    "xas.normalize": ("processor", ("xas/scan",), ("xas/spectrum",)),
    "xas.merge": ("processor", ("xas/spectrum",), ("xas/merged",)),
    # `queue` (plan/status) is optional: the agent runs without a queue client
    "xas.convergence-agent": ("agent", ("xas/merged", "plan/status"), ("plan/suggestion",)),
}


def test_catalog_lists_the_xas_units_from_the_installed_distribution():
    catalog = Catalog.load(strict=True)
    for name, (role, inputs, outputs) in UNITS.items():
        unit = catalog.get(name)
        assert unit.distribution == "asapo-pipelines-xas"
        assert unit.version == "0.1.0"
        assert unit.role == role
        assert tuple(p.content_type for p in unit.inputs) == inputs
        assert tuple(p.content_type for p in unit.outputs) == outputs
        assert [p.name for p in unit.inputs if not p.required] == (
            ["queue"] if name == "xas.convergence-agent" else []
        )
        assert unit.runtime.startswith("asapo_pipelines_xas.units:")
        schema = unit.params_schema()
        assert schema["type"] == "object"


def test_registration_imports_neither_numpy_nor_xraylarch():
    code = (
        "import sys, json\n"
        "from asapo_pipelines.catalog import Catalog\n"
        "c = Catalog.load(strict=True)\n"
        "assert 'xas.normalize' in c\n"
        "print(json.dumps(sorted(m for m in ('numpy', 'larch', 'h5py', 'scipy') "
        "if m in sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


def test_params_expose_xraylarch_defaults():
    """Each exposed keyword has xraylarch's own default, read from the installed functions."""
    import inspect

    from larch.xafs import autobk, estimate_noise, pre_edge

    from asapo_pipelines_xas.params import AutobkParams, NoiseParams, PreEdgeParams

    def real(func):
        # xraylarch's Make_CallArgs decorator wraps without functools.wraps: the decorated
        # function is in the wrapper's closure
        for cell in func.__closure__ or ():
            inner = cell.cell_contents
            if inspect.isfunction(inner) and inner.__name__ == func.__name__:
                return inspect.signature(inner).parameters
        return inspect.signature(func).parameters

    # deliberate differences, documented on the model: the noise window ends inside the data
    differ = {("estimate_noise", "kmax"): None}
    pairs = ((PreEdgeParams, pre_edge), (AutobkParams, autobk), (NoiseParams, estimate_noise))
    for model, func in pairs:
        params = real(func)
        for name, field in model.model_fields.items():
            if name == "enabled":
                continue
            assert name in params, f"{func.__name__} has no keyword {name}"
            expected = differ.get((func.__name__, name), params[name].default)
            assert field.default == expected, (func.__name__, name)


def test_params_reject_typos_and_bad_values():
    from asapo_pipelines_xas.params import ConvergenceParams, ScanFilesParams

    with pytest.raises(ValueError, match="extra"):
        ScanFilesParams.model_validate({"directory": "d", "patern": "*.xdi"})
    with pytest.raises(ValueError, match="columns"):
        ScanFilesParams.model_validate({"directory": "d", "columns": {"i1": "VFC02"}})
    with pytest.raises(ValueError, match="target_noise"):
        ConvergenceParams.model_validate({"target_noise": 0})
