"""Connection settings from the standard NOMAD_* environment variables, as Nomad's CLI reads them.

TLS is verified by default; NOMAD_SKIP_VERIFY must be set explicitly to turn that off. The token
is kept out of every rendering of the settings.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from asapo_pipelines.nomad.errors import NomadConfigError

DEFAULT_ADDRESS = "http://127.0.0.1:4646"
TRUE = {"1", "true", "yes", "on", "t", "y"}
FALSE = {"0", "false", "no", "off", "f", "n", ""}


@dataclass(frozen=True)
class NomadSettings:
    address: str = DEFAULT_ADDRESS
    token: str | None = None
    namespace: str | None = None
    region: str | None = None
    ca_cert: str | None = None
    client_cert: str | None = None
    client_key: str | None = None
    skip_verify: bool = False
    #: Seconds for connecting and for each answer (a log stream being followed waits longer).
    timeout: float = 15.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> NomadSettings:
        env = os.environ if env is None else env
        raw_skip = env.get("NOMAD_SKIP_VERIFY", "").strip().lower()
        if raw_skip not in TRUE | FALSE:
            raise NomadConfigError(
                f"NOMAD_SKIP_VERIFY={env['NOMAD_SKIP_VERIFY']!r} is not a boolean; use true or "
                "false"
            )
        values: dict[str, object] = {
            "address": (env.get("NOMAD_ADDR") or DEFAULT_ADDRESS).rstrip("/"),
            "token": env.get("NOMAD_TOKEN") or None,
            "namespace": env.get("NOMAD_NAMESPACE") or None,
            "region": env.get("NOMAD_REGION") or None,
            "ca_cert": env.get("NOMAD_CACERT") or None,
            "client_cert": env.get("NOMAD_CLIENT_CERT") or None,
            "client_key": env.get("NOMAD_CLIENT_KEY") or None,
            "skip_verify": raw_skip in TRUE,
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        settings = cls(**values)  # type: ignore[arg-type]
        settings.check()
        return settings

    def check(self) -> None:
        if not self.address.startswith(("http://", "https://")):
            raise NomadConfigError(
                f"NOMAD_ADDR={self.address!r} must start with http:// or https://"
            )
        if bool(self.client_cert) != bool(self.client_key):
            raise NomadConfigError(
                "NOMAD_CLIENT_CERT and NOMAD_CLIENT_KEY must be set together for mutual TLS"
            )
        for name, path in (
            ("NOMAD_CACERT", self.ca_cert),
            ("NOMAD_CLIENT_CERT", self.client_cert),
            ("NOMAD_CLIENT_KEY", self.client_key),
        ):
            if path and not Path(path).is_file():
                raise NomadConfigError(f"{name} names {path}, which is not a readable file")

    @property
    def verify(self) -> bool | str:
        """What `requests` needs: the CA file, or True (system CAs), or False when skipped."""
        if self.skip_verify:
            return False
        return self.ca_cert or True

    @property
    def cert(self) -> tuple[str, str] | tuple[()]:
        if self.client_cert and self.client_key:
            return (self.client_cert, self.client_key)
        return ()

    def describe(self) -> dict[str, object]:
        """For `--json` and messages: everything but the token's value."""
        return {
            "address": self.address,
            "namespace": self.namespace or "default",
            "region": self.region,
            "token": "set" if self.token else "not set",
            "tls_verify": not self.skip_verify,
            "ca_cert": self.ca_cert,
            "client_cert": self.client_cert,
        }
