"""Client credentials: one type for the study, the HTTP session and the SDK drop-in.

The secret never appears in a repr, a log line or a traceback.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from harvester._exceptions import CredentialsError

__all__ = ["ENV_CLIENT_KEY", "ENV_CLIENT_SECRET", "Credentials", "require_env"]

ENV_CLIENT_KEY = "TIKTOK_CLIENT_KEY"
ENV_CLIENT_SECRET = "TIKTOK_CLIENT_SECRET"


@dataclass(frozen=True, slots=True)
class Credentials:
    client_key: str
    client_secret: str = field(repr=False)

    def __repr__(self) -> str:
        return f"Credentials(client_key={self.client_key!r}, client_secret='***')"

    __str__ = __repr__

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Credentials:
        """From TIKTOK_CLIENT_KEY and TIKTOK_CLIENT_SECRET (a study names its own variables:
        see `harvester.config.resolve_credentials`)."""
        env = os.environ if environ is None else environ
        return cls(require_env(env, ENV_CLIENT_KEY), require_env(env, ENV_CLIENT_SECRET))


def require_env(env: Mapping[str, str], name: str) -> str:
    value = env.get(name, "").strip()
    if not value:
        raise CredentialsError(f"environment variable {name} is not set")
    return value
