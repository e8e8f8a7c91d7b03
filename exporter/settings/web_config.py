"""The exporter-toolkit web-config file (``--web.config.file``), read and validated once.

The file format is Prometheus exporter-toolkit's, so existing files work. Keys this exporter
cannot honour are configuration errors, never silently ignored, and no message ever quotes a hash
or a password. The HTTP server applies the result (`exporter.web.access`).
"""

from __future__ import annotations

import difflib
import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from exporter.domain.errors import ConfigError
from exporter.settings.files import PEM_FILE_LIMIT, check_regular, read_text, read_yaml

SETTING = "web_config_file"
TLS_VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}
# exporter-toolkit allows only these headers, some with a fixed set of values (web/handler.go).
ALLOWED_HEADERS: dict[str, tuple[str, ...]] = {
    "Strict-Transport-Security": (),
    "X-Content-Type-Options": ("nosniff",),
    "X-Frame-Options": ("deny", "sameorigin"),
    "X-XSS-Protection": (),
    "Content-Security-Policy": (),
}
_TOP = {"tls_server_config", "http_server_config", "basic_auth_users"}
_TLS = {
    "cert_file",
    "key_file",
    "client_ca_file",
    "client_auth_type",
    "min_version",
    "max_version",
    "prefer_server_cipher_suites",
}
_HTTP = {"headers", "http2"}
# Valid exporter-toolkit keys that Python's ssl module or this server cannot honour.
_UNSUPPORTED = {
    "rate_limit": "rate limiting is not supported; put a reverse proxy in front",
    "tls_server_config.cert": "inline certificates are not supported; use cert_file",
    "tls_server_config.key": "inline keys are not supported; use key_file",
    "tls_server_config.client_ca": "inline CAs are not supported; use client_ca_file",
    "tls_server_config.cipher_suites": "Go cipher suite names are not supported; remove it",
    "tls_server_config.curve_preferences": "curve preferences are not supported; remove it",
    "tls_server_config.client_allowed_sans": "SAN matching is not supported; remove it",
}
_BCRYPT = re.compile(r"\$2[aby]\$(\d\d)\$[./A-Za-z0-9]{53}")


def _fail(problem: str, path: Path) -> ConfigError:
    return ConfigError(SETTING, f"web config file {path}", problem)


def _mapping(data: Any, where: str, allowed: set[str], path: Path) -> dict[str, Any]:
    """`data` as a mapping whose keys are all allowed; names the first bad key."""
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise _fail(f"{where or 'the file'} must be a mapping", path)
    for key in map(str, data):
        name = f"{where}.{key}" if where else key
        if name in _UNSUPPORTED:
            raise _fail(f"{name}: {_UNSUPPORTED[name]}", path)
        if key not in allowed:
            close = difflib.get_close_matches(key, sorted(allowed), n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            raise _fail(f"{name}: unknown key{hint}", path)
    return {str(k): v for k, v in data.items()}


def _string(value: Any, name: str, path: Path) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _fail(f"{name} must be a non-empty string", path)
    return value.strip()


def _file(value: Any, name: str, path: Path) -> Path:
    """A file named relative to the web config file, as exporter-toolkit resolves it.

    OpenSSL opens it by name, so it is checked to be a bounded regular file first (a FIFO
    would block the start-up forever).
    """
    file = path.parent / _string(value, name, path)
    try:
        check_regular(file, PEM_FILE_LIMIT)
    except ValueError as exc:
        raise _fail(f"{name}: {exc}", path) from None
    return file


def _pem(value: Any, name: str, path: Path, kind: str) -> Path:
    """A bounded regular file holding a PEM `kind`, checked here because OpenSSL's own error is a
    bare "PEM lib"; the content is never quoted."""
    file = _file(value, name, path)
    try:
        text = read_text(file, PEM_FILE_LIMIT)
    except ValueError as exc:
        raise _fail(f"{name}: {exc}", path) from None
    if "-----BEGIN " not in text or f"{kind.upper()}-----" not in text:
        raise _fail(f"{name}: {file} holds no PEM {kind} (-----BEGIN ...{kind.upper()}-----)", path)
    return file


def _tls_context(data: dict[str, Any], path: Path) -> ssl.SSLContext | None:
    """The server's SSLContext, or None when the section configures nothing."""
    where = "tls_server_config"
    if not any(value not in (None, "") for value in data.values()):
        return None
    if not data.get("cert_file"):
        raise _fail(f"{where}.cert_file: required when TLS is configured", path)
    if not data.get("key_file"):
        raise _fail(f"{where}.key_file: required when TLS is configured", path)
    cert = _pem(data["cert_file"], f"{where}.cert_file", path, "certificate")
    key = _pem(data["key_file"], f"{where}.key_file", path, "private key")
    versions = {}
    for bound, default in (("min_version", "TLS12"), ("max_version", "TLS13")):
        name = str(data.get(bound) or default)
        if name not in TLS_VERSIONS:
            choices = ", ".join(TLS_VERSIONS)
            raise _fail(f"{where}.{bound}: {name!r} is not one of {choices}", path)
        versions[bound] = TLS_VERSIONS[name]
    if versions["max_version"] < versions["min_version"]:
        raise _fail(f"{where}.max_version: lower than min_version", path)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = versions["min_version"]
    ctx.maximum_version = versions["max_version"]
    try:
        ctx.load_cert_chain(cert, key)
    except (ssl.SSLError, OSError) as exc:
        # The reason only: never the key material.
        problem = getattr(exc, "reason", None) or type(exc).__name__
        raise _fail(f"{where}: cannot load cert_file/key_file: {problem}", path) from None
    prefer = data.get("prefer_server_cipher_suites", True)
    if not isinstance(prefer, bool):
        raise _fail(f"{where}.prefer_server_cipher_suites must be true or false", path)
    if prefer:
        ctx.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    _client_auth(ctx, data, path)
    return ctx


def _client_auth(ctx: ssl.SSLContext, data: dict[str, Any], path: Path) -> None:
    where = "tls_server_config"
    kind = str(data.get("client_auth_type") or "NoClientCert")
    ca = data.get("client_ca_file")
    if kind in ("NoClientCert", "RequestClientCert"):
        # RequestClientCert asks for a certificate but never checks it; not asking is the same.
        if ca and kind == "NoClientCert":
            raise _fail(f"{where}.client_ca_file: set without a client_auth_type", path)
        ctx.verify_mode = ssl.CERT_NONE
        return
    if kind in ("RequireAnyClientCert", "RequireClientCert"):
        problem = "Python's TLS cannot require a certificate without verifying it; "
        problem += "use RequireAndVerifyClientCert with client_ca_file"
        raise _fail(f"{where}.client_auth_type: {kind}: {problem}", path)
    modes = {
        "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
        "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
    }
    if kind not in modes:
        raise _fail(f"{where}.client_auth_type: unknown value {kind!r}", path)
    if not ca:
        raise _fail(f"{where}.client_ca_file: required with client_auth_type {kind}", path)
    try:
        ctx.load_verify_locations(cafile=_file(ca, f"{where}.client_ca_file", path))
    except ssl.SSLError as exc:
        raise _fail(f"{where}.client_ca_file: not a PEM CA: {exc.reason}", path) from None
    ctx.verify_mode = modes[kind]


def _headers(data: Any, path: Path) -> dict[str, str]:
    http = _mapping(data, "http_server_config", _HTTP, path)
    if not isinstance(http.get("http2", True), bool):
        raise _fail("http_server_config.http2 must be true or false", path)
    raw = http.get("headers") or {}
    if not isinstance(raw, dict):
        raise _fail("http_server_config.headers must be a mapping", path)
    headers: dict[str, str] = {}
    for name, value in ((str(k), v) for k, v in raw.items()):
        where = f"http_server_config.headers.{name}"
        if name not in ALLOWED_HEADERS:
            raise _fail(f"{where}: this header cannot be configured", path)
        if value in (None, ""):
            continue  # exporter-toolkit: unset if blank
        if not isinstance(value, str):
            raise _fail(f"{where} must be a string", path)
        allowed = ALLOWED_HEADERS[name]
        if allowed and value not in allowed:
            raise _fail(f"{where}: must be one of {', '.join(allowed)}", path)
        headers[name] = value
    return headers


def _users(data: Any, path: Path) -> dict[str, bytes]:
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise _fail("basic_auth_users must be a mapping of user: bcrypt hash", path)
    users: dict[str, bytes] = {}
    for user, hashed in data.items():
        where = f"basic_auth_users.{user}"
        if not isinstance(user, str) or not user or ":" in user:
            raise _fail("basic_auth_users: user names must be non-empty and without ':'", path)
        match = _BCRYPT.fullmatch(hashed) if isinstance(hashed, str) else None
        if match is None or not 4 <= int(match[1]) <= 31:
            problem = "not a bcrypt hash (write one with htpasswd -nBC 10 '' | tr -d ':\\n')"
            raise _fail(f"{where}: {problem}", path)
        users[user] = hashed.encode()
    return users


@dataclass(frozen=True, slots=True)
class WebConfig:
    """What the HTTP server needs: an SSLContext (None = plain HTTP), basic-auth users (name to
    bcrypt hash; none = no auth) and extra response headers."""

    ssl_context: ssl.SSLContext | None = None
    users: Mapping[str, bytes] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)


def load(path: Path) -> WebConfig:
    """Read and validate the web-config file; raises ConfigError naming the offending key."""
    try:
        # Errors name the position only: the offending line may hold a password hash.
        data = read_yaml(path)
    except ValueError as exc:
        raise _fail(str(exc), path) from None
    top = _mapping(data, "", _TOP, path)
    tls = _mapping(top.get("tls_server_config"), "tls_server_config", _TLS, path)
    users = _users(top.get("basic_auth_users"), path)
    return WebConfig(
        ssl_context=_tls_context(tls, path),
        users=users,
        headers=_headers(top.get("http_server_config"), path),
    )
