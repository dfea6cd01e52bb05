"""The plugin as the catalog sees it: a light registration module, the `redis` transport
descriptor with its config model, and a missing or broken `redis` client shown as a broken
plugin by `pipeline plugins` while the rest of the catalog lists."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from asapo_pipelines.descriptor import TransportDescriptor
from asapo_pipelines_redis.config import RedisConfig


def _registered() -> list[Any]:
    from asapo_pipelines_redis import plugin

    got: list[Any] = []
    plugin.register_transports(got.append)
    return got


def test_the_plugin_registers_the_redis_transport_with_its_config_and_runtime() -> None:
    (descriptor,) = _registered()
    assert isinstance(descriptor, TransportDescriptor)
    assert (descriptor.name, descriptor.config) == ("redis", RedisConfig)
    from asapo_pipelines_redis.transport import open_transport

    assert descriptor.load_runtime() is open_transport


def test_registration_imports_no_redis_client() -> None:
    code = (
        "import sys, asapo_pipelines_redis.plugin as p; "
        "print(sorted(m for m in sys.modules if m == 'redis' or m.startswith('redis.')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


def test_open_options_make_paths_absolute_and_hold_no_secret(tmp_path: Path) -> None:
    config = RedisConfig(
        url="rediss://redis.example.org:6380/2",
        password_file="secrets/redis",
        payload_dir="shared/payloads",
        ca_file="/etc/ssl/ca.pem",
        retention={"max_messages": 1000},
    )
    options = config.open_options(tmp_path)
    assert options["password_file"] == str(tmp_path / "secrets" / "redis")
    assert options["payload_dir"] == str(tmp_path / "shared" / "payloads")
    assert options["ca_file"] == "/etc/ssl/ca.pem"
    assert options["retention"] == {"max_messages": 1000}
    assert config.use_tls
    # what workers receive validates again as the same settings
    assert RedisConfig.model_validate(options).open_options(tmp_path) == options


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        ({"url": "redis://:pw@h:6379/0"}, "must not hold a password"),
        ({"url": "http://h:6379"}, "must start with redis://"),
        ({"password_file": "a", "password_env": "B"}, "not both"),
        ({"urls": "redis://h"}, "Extra inputs are not permitted"),
        ({"inline_max": -1}, "greater than or equal to 0"),
        ({"retention": {"max_messages": 0}}, "greater than or equal to 1"),
    ],
)
def test_bad_sections_are_refused_by_the_config_model(section: dict, expected: str) -> None:
    with pytest.raises(ValidationError) as info:
        RedisConfig.model_validate(section)
    assert expected in str(info.value)
    assert "pw@" not in str(info.value).split("input_value")[0]


def _plugins(tmp_path: Path, **env: str) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-m", "asapo_pipelines", "plugins", "--json"],
        capture_output=True,
        text=True,
        env={
            **os.environ,
            "ASAPO_PIPELINES_NO_CACHE": "1",
            "ASAPO_PIPELINES_CACHE_DIR": str(tmp_path / "cache"),
            **env,
        },
        timeout=120,
    )
    assert "Traceback" not in result.stderr
    data = json.loads(result.stdout)
    plugins = data["plugins"] if isinstance(data, dict) else data
    return {p["distribution"]: p for p in plugins}


def test_a_broken_redis_package_shows_the_plugin_broken_and_the_rest_lists(
    tmp_path: Path,
) -> None:
    fake = tmp_path / "shadow" / "redis"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('half-installed')\n")
    plugins = _plugins(tmp_path, PYTHONPATH=str(fake.parent))
    mine = plugins["asapo-pipelines-redis"]
    assert mine["status"] == "broken"
    assert "another file or directory named redis shadows it" in " ".join(mine["errors"])
    assert all(p["status"] == "ok" for name, p in plugins.items() if name != mine["distribution"])
    assert plugins["asapo-pipelines"]["units"]
    assert plugins["asapo-pipelines"]["units"]  # the core's units still list


def test_a_missing_redis_package_shows_the_plugin_broken_and_the_rest_lists(
    tmp_path: Path,
) -> None:
    # the interpreter starts with the redis distribution hidden from importlib.metadata and
    # the import system, as in an environment where it was never installed
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(
        "import importlib.metadata as md, sys\n"
        "class _Hide:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'redis' or name.startswith('redis.'):\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}')\n"
        "    def find_distributions(self, context=md.DistributionFinder.Context()):\n"
        "        return iter(())\n"
        "_real = md.distribution\n"
        "def _distribution(name):\n"
        "    if name.lower() == 'redis':\n"
        "        raise md.PackageNotFoundError(name)\n"
        "    return _real(name)\n"
        "md.distribution = _distribution\n"
        "sys.meta_path.insert(0, _Hide())\n"
    )
    plugins = _plugins(tmp_path, PYTHONPATH=str(site))
    mine = plugins["asapo-pipelines-redis"]
    assert mine["status"] == "broken"
    assert "needs the Python package redis (redis>=8.1,<9); it is not installed" in " ".join(
        mine["errors"]
    )
    assert all(p["status"] == "ok" for name, p in plugins.items() if name != mine["distribution"])
