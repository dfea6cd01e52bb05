"""`deploy.slurm.python: {install: {}}` installs every plugin distribution the pipeline uses on
the nodes: its units', and its transport's (the workers open it), as `pipeline plan` shows."""

from __future__ import annotations

import json
import os
import re
from importlib.metadata import version

import pytest
from slurm_support import EXAMPLES, run_pipeline


def test_install_takes_the_transports_plugin_distribution(workdir):
    # the P65 example on Redis: the slurm session alone has neither (the `all` session has both)
    for plugin in ("asapo_pipelines_redis", "asapo_pipelines_xas", "asapo_pipelines_nexus"):
        pytest.importorskip(plugin, reason="needs the reference plugins")
    example = (EXAMPLES / "p65-xas.pipeline.yaml").read_text()
    text = re.sub(
        r"(?m)^transport: .*$",
        'transport: {redis: {url: "redis://127.0.0.1:1/0", key_prefix: "p65"}}',
        example,
    )
    text = text[: text.index("deploy:")] + (
        "deploy:\n  slurm: {partition: debug, python: {install: {}}}\n"
    )
    file = workdir / "p65-xas.pipeline.yaml"
    file.write_text(text)

    planned = run_pipeline("plan", str(file), "--json", env=dict(os.environ), cwd=workdir)
    assert planned.returncode == 0, planned.stderr
    scripts = " ".join(job["script"] for job in json.loads(planned.stdout)["jobs"])
    pins = set(re.findall(r"asapo-pipelines[a-z-]*==[^\s'\"]+", scripts))
    assert f"asapo-pipelines-redis=={version('asapo-pipelines-redis')}" in pins
    assert {p.split("==")[0] for p in pins} == {
        "asapo-pipelines",
        "asapo-pipelines-nexus",
        "asapo-pipelines-redis",
        "asapo-pipelines-slurm",
        "asapo-pipelines-xas",
    }
