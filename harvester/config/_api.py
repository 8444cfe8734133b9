"""How to reach the API: its address, whom to trust for TLS, and the names of the environment
variables that hold the credentials (never the credentials themselves)."""

from __future__ import annotations

import ipaddress
import re
import ssl
from pathlib import Path
from urllib.parse import urlsplit

from harvester.config._places import path
from harvester.config._schema import DEFAULT_BASE_URL, ApiTable, Problem, shown
from harvester.config._study import ApiSettings

_ENV_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

#: Why `rqs` has no default endpoint: TikTok serves the Research Query Service only inside its
#: Virtual Compute Environment, through the pyrqs SDK; the HTTP binding is this project's own.
RQS_ENDPOINT_HINT = (
    "the RQS HTTP binding is served by `harvester simulate` or by a gateway in front of the "
    'pyrqs SDK, not by TikTok (inside TikTok\'s VCE use source = "pyrqs")'
)


def api_settings(api: ApiTable, source: str, base: Path) -> ApiSettings:
    return ApiSettings(
        base_url=_base_url(api, source),
        client_key_env=_env_name("api.client_key_env", api.client_key_env),
        client_secret_env=_env_name("api.client_secret_env", api.client_secret_env),
        max_concurrency=api.max_concurrency,
        requests_per_second=api.requests_per_second,
        timeout_s=api.timeout_s,
        max_attempts=api.max_attempts,
        end_date_inclusive=api.end_date_inclusive,
        verify_tls=api.verify_tls,
        ca_bundle=_ca_bundle(base, api.ca_bundle),
        retry_wait_s=api.retry_wait_s,
        retry_wait_max_s=max(api.retry_wait_s, api.retry_wait_max_s),
        search_id_wait_s=api.search_id_wait_s,
    )


def _base_url(api: ApiTable, source: str) -> str:
    if api.base_url is None and source == "rqs":
        raise Problem(
            "api.base_url",
            'is required for source "rqs"',
            f'give the binding\'s address, like base_url = "http://127.0.0.1:8765": '
            f"{RQS_ENDPOINT_HINT}",
        )
    url = api.base_url if api.base_url is not None else DEFAULT_BASE_URL
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query:
        raise Problem("api.base_url", f"{shown(url)} is not a base URL", f"use {DEFAULT_BASE_URL}")
    loopback = _is_loopback(parts.hostname)
    if parts.scheme == "http" and not loopback:
        raise Problem("api.base_url", "plain http sends credentials in clear", "use https://")
    if not api.verify_tls and not loopback:
        raise Problem(
            "api.verify_tls",
            f"may be false only for a loopback host, not {parts.hostname}",
            "remove verify_tls = false",
        )
    return url.rstrip("/")


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _ca_bundle(base: Path, value: str | None) -> Path | None:
    if value is None:
        return None
    bundle = path(base, "api.ca_bundle", value)
    fix = "give a PEM file of CA certificates"
    if not bundle.is_file():
        raise Problem("api.ca_bundle", f"{bundle} is not a file", fix)
    try:
        ssl.create_default_context().load_verify_locations(cafile=bundle)
    except (OSError, ssl.SSLError):
        raise Problem("api.ca_bundle", f"{bundle} holds no CA certificate", fix) from None
    return bundle


def _env_name(key: str, value: str) -> str:
    if not _ENV_RE.fullmatch(value):
        raise Problem(
            key,
            f"{shown(value)} is not an environment variable name",
            "give the variable's NAME (not the secret itself), like TIKTOK_CLIENT_KEY",
        )
    return value
