"""The aiohttp application: token endpoint, emails endpoint, auth checks and injected faults."""

# ruff: noqa: S311 - seeded pseudo-randomness drives the simulation; tokens use `secrets`

from __future__ import annotations

import asyncio
import base64
import binascii
import email.utils
import hmac
import random
import secrets
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any, Final
from urllib.parse import unquote_plus

from aiohttp import web

from .config import SimulatorConfig
from .model import QueueModel
from .query import BadParameter, parse_query, render
from .ratelimit import Gateway, RateLimit
from .scenarios import SCENARIOS, WORK_TYPES, Faults, build_model, faults_for
from .static import StaticQueue
from .truth import truth

TRUTH_PATH: Final = "/_sim/truth"
TOKEN_PATH: Final = "/tokenservice/oauth2/access_token"  # noqa: S105 - a URL path, not a secret
EMAILS_PATH: Final = "/via/v2/organizations/{orgId}/emailQueue/emails"
SCOPE: Final = "emailqueueapi"
MAX_ORGS: Final = 10_000

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


class Tokens:
    """Issued bearer tokens, the API key each was issued for, and when each really expires."""

    def __init__(self, lifetime: float, clock: Clock, cap: float | None = None) -> None:
        self.lifetime = lifetime
        self._real = lifetime if cap is None else min(lifetime, cap)
        self._clock = clock
        self._expiry: dict[str, tuple[float, str]] = {}
        self._swept = clock()

    def issue(self, api_key: str = "") -> str:
        """A new token; expired ones are forgotten here so the table stays small."""
        now = self._clock()
        if len(self._expiry) < 64 or now - self._swept > 1.0:  # a sweep per second at most
            self._expiry = {t: v for t, v in self._expiry.items() if v[0] > now}
            self._swept = now
        token = secrets.token_urlsafe(32)
        self._expiry[token] = (now + self._real, api_key)
        return token

    def valid(self, token: str, api_key: str | None = None) -> bool:
        """True while `token` was issued here (for `api_key`, if given) and has not expired."""
        entry = self._expiry.get(token)
        if entry is None or self._clock() >= entry[0]:
            return False
        return api_key is None or hmac.compare_digest(entry[1].encode(), api_key.encode())


class RequestLog:
    """Requests received per second (token and emails together), for tests and benchmarks."""

    def __init__(self, clock: Clock, keep_seconds: int = 3600) -> None:
        self._clock = clock
        self._keep = keep_seconds
        self.per_second: Counter[int] = Counter()
        self.by_org: Counter[str] = Counter()

    def add(self, org: str) -> None:
        second = int(self._clock())
        self.per_second[second] += 1
        if org:
            self.by_org[org] += 1
        if len(self.per_second) > self._keep:
            del self.per_second[min(self.per_second)]


class Simulator:
    """Everything one simulated API holds: queue, tokens, faults."""

    def __init__(self, config: SimulatorConfig, clock: Clock, sleep: Sleep, faults: Faults) -> None:
        if config.scenario not in SCENARIOS:
            raise ValueError(f"unknown scenario {config.scenario!r}; one of {', '.join(SCENARIOS)}")
        if config.speed <= 0 or config.page_cap < 1 or config.emails < 0:
            raise ValueError("speed must be > 0, page_cap >= 1 and emails >= 0")
        self.config = config
        self.clock = clock
        self.sleep = sleep
        self.faults = faults
        self.fault_rng = random.Random(None if config.seed is None else config.seed + 1)
        if config.orgs < 0 or config.orgs > MAX_ORGS or config.orgs_per_key < 1:
            raise ValueError(f"orgs must be from 0 to {MAX_ORGS}, orgs_per_key at least 1")
        self.tokens = Tokens(config.token_lifetime, clock, faults.token_expiry)
        self.requests = RequestLog(clock)
        self.gateway: Gateway | None = None
        if config.rate_limit is not None:
            requests, period = config.rate_limit
            limit = RateLimit(requests, period, config.rate_limit_headers)
            self.gateway = Gateway(limit, clock)
        self._keys = {org: config.api_key_for(org) for org in config.org_ids}
        self._index = {org: i for i, org in enumerate(config.org_ids)}
        self._queues: dict[str, QueueModel | StaticQueue] = {}
        self.queue = self.queue_for(config.org_ids[0])

    def queue_for(self, org: str) -> QueueModel | StaticQueue:
        """`org`'s queue, built on its first request, so 500 idle organisations cost nothing."""
        queue = self._queues.get(org)
        if queue is not None:
            return queue
        config = self.config
        if config.scenario == "large":
            # A static queue never moves: every organisation can serve the same one.
            shared = next(iter(self._queues.values()), None)
            if shared is None:
                rng = random.Random(0 if config.seed is None else config.seed)
                shared = StaticQueue(config.emails, WORK_TYPES, rng, self.clock())
            queue = shared
        else:
            index = self._index[org]
            # Distinct but repeatable per organisation; the first keeps the single-org seed.
            seed = None if config.seed is None else config.seed + 7919 * index
            queue = build_model(config.scenario, random.Random(seed), self.clock(), config.speed)
        self._queues[org] = queue
        return queue

    def serves(self, org: str) -> bool:
        """True for the organisations this simulator serves."""
        return org in self._keys

    def key_ok(self, key: str, org: str | None) -> bool:
        """`key` is the API key of `org` (or, for the token endpoint, of any organisation)."""
        if org is not None:
            return hmac.compare_digest(key.encode(), self._keys[org].encode())
        if not (self.config.orgs and self.config.api_key_per_org):
            return hmac.compare_digest(key.encode(), self.config.api_key.encode())
        org = key.removeprefix("key-")
        return key.startswith("key-") and self._keys.get(org) == key


SIMULATOR: Final = web.AppKey("simulator", Simulator)


def error(
    status: int, message: str, reason: str, scope: str = "emailQueue", **headers: str
) -> web.Response:
    """A response with the documented ErrorResponse body."""
    body = {
        "code": status,
        "message": message,
        "errors": [{"scope": scope, "reason": reason, "message": message}],
    }
    return web.json_response(body, status=status, headers=headers)


def _oauth_error(status: int, code: str, description: str, **headers: str) -> web.Response:
    body = {"error": code, "error_description": description}
    return web.json_response(body, status=status, headers={"Cache-Control": "no-store", **headers})


def _api_key_ok(sim: Simulator, request: web.Request, org: str | None = None) -> bool:
    return sim.key_ok(request.headers.get("x-api-key", ""), org)


def _basic_credentials(header: str) -> tuple[str, str] | None:
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, sep, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    # RFC 6749 §2.3.1: the client id and secret are form-encoded before Basic encoding.
    return (unquote_plus(user), unquote_plus(password)) if sep else None


def _realm_ok(sim: Simulator, realms: list[Any], api_key: str) -> bool:
    """Any realm given must be an organisation of the key; strict mode also wants one given.

    The real token service answers a request without the organisation's realm like one with
    wrong credentials: 401 with the OAuth2 error body `invalid_client`.
    """
    if not realms:
        return not sim.config.strict_realm
    return all(isinstance(r, str) and sim.serves(r) and sim.key_ok(api_key, r) for r in realms)


async def token(request: web.Request) -> web.Response:
    """POST /tokenservice/oauth2/access_token: the OAuth2 client-credentials grant."""
    sim = request.app[SIMULATOR]
    sim.requests.add("")
    if request.method != "POST":
        return error(405, "Method Not Allowed", "methodNotAllowed", "token", Allow="POST")
    if not _api_key_ok(sim, request):
        return error(403, "Forbidden", "invalidApiKey", "token")
    form = await request.post()
    header = request.headers.get("Authorization")
    creds = _basic_credentials(header) if header else None
    if creds is None and header is None:
        creds = (str(form.get("client_id", "")), str(form.get("client_secret", "")))
    if (
        creds is None
        or not (
            hmac.compare_digest(creds[0].encode(), sim.config.client_id.encode())
            & hmac.compare_digest(creds[1].encode(), sim.config.client_secret.encode())
        )
        or not _realm_ok(
            sim,
            request.query.getall("realm", []) + form.getall("realm", []),
            request.headers.get("x-api-key", ""),
        )
    ):
        challenge = 'Basic realm="tokenservice"'
        return _oauth_error(
            401, "invalid_client", "Client authentication failed", **{"WWW-Authenticate": challenge}
        )
    grant = form.get("grant_type")
    if grant is None:
        return _oauth_error(400, "invalid_request", "grant_type is required")
    if grant != "client_credentials":
        return _oauth_error(400, "unsupported_grant_type", f"unsupported grant_type {grant!s}")
    scopes = str(form.get("scope") or SCOPE).split()
    if any(s != SCOPE for s in scopes):
        return _oauth_error(400, "invalid_scope", f"scope must be {SCOPE}")
    body = {
        "access_token": sim.tokens.issue(request.headers.get("x-api-key", "")),
        "token_type": "Bearer",
        "expires_in": int(sim.config.token_lifetime),
        "scope": SCOPE,
    }
    return web.json_response(body, headers={"Cache-Control": "no-store"})


async def emails(request: web.Request) -> web.StreamResponse:
    """GET /via/v2/organizations/{orgId}/emailQueue/emails: the EmailList."""
    sim = request.app[SIMULATOR]
    org = request.match_info["orgId"]
    sim.requests.add(org if sim.serves(org) else "")
    if request.method != "GET":
        return error(405, "Method Not Allowed", "methodNotAllowed", Allow="GET")
    if not _api_key_ok(sim, request):
        return error(403, "Forbidden", "invalidApiKey")
    scheme, _, bearer = request.headers.get("Authorization", "").partition(" ")
    api_key = request.headers.get("x-api-key", "")
    if scheme.lower() != "bearer" or not sim.tokens.valid(bearer.strip(), api_key):
        return error(401, "Unauthorized", "authError", **{"WWW-Authenticate": 'Bearer realm="via"'})
    if not sim.serves(org) or not _api_key_ok(sim, request, org):
        # Another organisation's key: the API does not say whether the organisation exists.
        return error(404, f"Organization {org} not found", "notFound")
    fault = await _fault(sim)
    if fault is not None:
        return fault
    try:
        query = parse_query(request.rel_url.query)
    except BadParameter as exc:
        return error(400, str(exc), "invalidParameter", exc.name)
    offset = 0
    if query.start > 0 and sim.fault_rng.random() < sim.faults.p_shift:
        offset = sim.fault_rng.randint(1, 5)  # emails arrived ahead of this page since the last one
    model = sim.queue_for(org)
    model.advance_to(sim.clock())
    if isinstance(model, StaticQueue):
        body = model.render(query, sim.config.page_cap, offset=offset)
    else:
        queue = list(model.emails.values())
        body = render(queue, query, sim.config.page_cap, model.work_type_names, offset=offset)
    return web.Response(body=body, content_type="application/json")


async def ground_truth(request: web.Request) -> web.Response:
    """GET /_sim/truth: what really happened in the queue (the simulator's own, not the API's)."""
    sim = request.app[SIMULATOR]
    if not isinstance(sim.queue, QueueModel):
        return error(404, "no ground truth for a static queue", "notFound", "sim")
    try:
        since = float(request.query.get("since", "-inf"))
        warning = float(request.query.get("warning", "3600"))
    except ValueError:
        return error(400, "since and warning must be numbers", "invalidParameter", "sim")
    return web.json_response(truth(sim.queue, sim.clock(), since, warning))


async def _fault(sim: Simulator) -> web.Response | None:
    """Maybe a rate limit, a server error or a delay, as the scenario's faults say."""
    faults, rng = sim.faults, sim.fault_rng
    roll = rng.random()
    if roll < faults.p_429:
        seconds = rng.randint(1, 5)
        retry_after = str(seconds)
        if rng.random() < 0.3:
            retry_after = email.utils.formatdate(sim.clock() + seconds, usegmt=True)
        return error(429, "Too Many Requests", "rateLimitExceeded", **{"Retry-After": retry_after})
    if roll < faults.p_429 + faults.p_5xx:
        status = rng.choice((500, 502, 503))
        return error(
            status,
            "Internal Server Error" if status == 500 else "Service Unavailable",
            "backendError",
        )
    if roll < faults.p_429 + faults.p_5xx + faults.p_slow:
        await sim.sleep(rng.uniform(*faults.slow_seconds))
    return None


@web.middleware
async def _rate_limit(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """The gateway's budget per x-api-key: its headers on every answer, 429 past it."""
    gateway = request.app[SIMULATOR].gateway
    if gateway is None or request.path == TRUTH_PATH:
        return await handler(request)
    allowed, headers = gateway.admit(request.headers.get("x-api-key", ""))
    if not allowed:
        return error(429, "Too Many Requests", "rateLimitExceeded", "gateway", **headers)
    response = await handler(request)
    response.headers.update(headers)
    return response


@web.middleware
async def _json_errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Unknown paths and other aiohttp errors also answer with an ErrorResponse body."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return error(exc.status, exc.reason, "notFound" if exc.status == 404 else "error", "api")


def create_app(
    config: SimulatorConfig,
    *,
    clock: Clock = time.time,
    sleep: Sleep = asyncio.sleep,
    faults: Faults | None = None,
) -> web.Application:
    """The simulator app with every moving part injectable (tests pass fakes)."""
    app = web.Application(middlewares=[_rate_limit, _json_errors])
    app[SIMULATOR] = Simulator(config, clock, sleep, faults or faults_for(config.scenario))
    app.router.add_route("*", TOKEN_PATH, token)
    app.router.add_route("*", EMAILS_PATH, emails)
    app.router.add_get(TRUTH_PATH, ground_truth)
    return app


def build_app(config: SimulatorConfig, *, clock: Clock = time.time) -> web.Application:
    """The simulator app for `config`."""
    return create_app(config, clock=clock)
