"""What one organisation's settings mean to the token provider and the client.

Shared by the daemon's wiring (`main`) and the first-run diagnosis (`diagnose`), so both talk
to Alvaria Cloud exactly the same way.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable
from urllib.parse import quote_plus

from exporter.domain.errors import ConfigError
from exporter.settings import Settings, TargetSettings
from exporter.settings.files import client_ssl_context
from exporter.upstream.auth import (
    ClientCredentials,
    ClientCredentialsConfig,
    StaticToken,
    TokenProvider,
    basic_auth,
)
from exporter.upstream.client import ClientOptions
from exporter.upstream.transport import HttpTransport


def upstream_ssl(cfg: Settings) -> ssl.SSLContext | bool:
    """TLS verification for upstream requests: the system store, or the `ca_file` bundle."""
    if cfg.ca_file is None:
        return True
    try:
        return client_ssl_context(cfg.ca_file)
    except ValueError as exc:
        raise ConfigError("ca_file", "settings", str(exc)) from None


def credentials_config(target: TargetSettings) -> ClientCredentialsConfig:
    """The OAuth2 client-credentials request of an organisation without a static token."""
    if target.client_id is None or target.client_secret is None:
        raise ConfigError("client_id", "settings", "needed unless access_token is set")
    return ClientCredentialsConfig(
        token_url=target.token_url,
        client_id=target.client_id,
        client_secret=target.client_secret.get_secret_value(),
        api_key=target.api_key.get_secret_value(),
        scope=target.scope,
        auth_method=target.token_auth_method,
        realm=target.token_realm or "",
    )


def configured_secrets(cfg: Settings) -> list[str]:
    """Every configured secret of every organisation, in each form it travels in, to be masked
    wherever upstream text is shown (`exporter.domain.scrub`)."""
    values: list[str] = []
    for target in cfg.targets:
        for secret in (target.api_key, target.client_secret, target.access_token):
            if secret is not None:
                plain = secret.get_secret_value()
                values += [plain, quote_plus(plain)]
        if target.client_id is not None and target.client_secret is not None:
            header = basic_auth(target.client_id, target.client_secret.get_secret_value())
            values.append(header.removeprefix("Basic "))
    return values


def token_provider(
    target: TargetSettings, transport: HttpTransport, clock: Callable[[], float] = time.time
) -> TokenProvider:
    """The configured static token, or client credentials fetched over `transport`."""
    if target.access_token is not None:
        return StaticToken(target.access_token.get_secret_value())
    return ClientCredentials(credentials_config(target), transport, clock=clock)


def client_options(cfg: Settings, target: TargetSettings) -> ClientOptions:
    """What to ask the emails endpoint for, and how hard to page."""
    return ClientOptions(
        page_size=cfg.page_size,
        max_concurrency=cfg.max_concurrency,
        max_pages=cfg.max_pages,
        extended_info=target.extended_info,
        email_type=target.email_type,
        work_type_ids=target.work_type_ids,
        states=target.states,
        agent_fields=cfg.agent_metrics,
    )
