"""`alvaria-emailqueue-simulator`: serve the simulated API until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Mapping, Sequence

from . import start_simulator
from .app import MAX_ORGS
from .config import SimulatorConfig
from .ratelimit import HEADER_STYLES, parse_rate_limit
from .scenarios import SCENARIOS

log = logging.getLogger("exporter.simulator")


def _listen_address(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise argparse.ArgumentTypeError(f"expected host:port, got {value!r}")
    host = host.strip("[]") or "0.0.0.0"  # noqa: S104 - ":port" means every interface, as usual
    return host, int(port)


def _rate_limit(value: str | tuple[int, float] | None) -> tuple[int, float] | None:
    if value is None or isinstance(value, tuple):
        return value
    if not value.strip():
        return None
    try:
        return parse_rate_limit(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _bool(value: str | bool) -> bool:
    if isinstance(value, bool):
        return value
    if value.strip().lower() in ("true", "1", "yes", "on"):
        return True
    if value.strip().lower() in ("false", "0", "no", "off", ""):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


def _parser(environ: Mapping[str, str]) -> argparse.ArgumentParser:
    defaults = SimulatorConfig()
    parser = argparse.ArgumentParser(
        prog="alvaria-emailqueue-simulator",
        description="A simulated Alvaria EmailQueue API. Every flag is also ALVARIA_SIM_<NAME>.",
    )

    def flag(
        name: str,
        default: object,
        kind: type | object,
        help_: str,
        secret: bool = False,
        **kw: object,
    ) -> None:
        env = "ALVARIA_SIM_" + name.upper().replace("-", "_")
        # A secret taken from the environment must not show up in --help.
        shown = f"default {default}" if secret else "default %(default)s"
        parser.add_argument(
            f"--{name}",
            default=environ.get(env, default),
            type=kind,  # type: ignore[arg-type]  # argparse also accepts callables
            help=f"{help_} (env {env}; {shown})",
            **kw,  # type: ignore[arg-type]
        )

    flag("listen-address", "127.0.0.1:8080", _listen_address, "host:port to serve on")
    flag("scenario", defaults.scenario, str, "what to simulate", choices=SCENARIOS)
    flag("seed", defaults.seed, int, "random seed, for repeatable runs")
    flag("speed", defaults.speed, float, "time acceleration of arrivals and handling")
    flag("page-cap", defaults.page_cap, int, "server-side maximum of maxResults")
    flag("emails", defaults.emails, int, "queue size of the large scenario")
    flag("org-id", defaults.org_id, str, "organisation id served")
    flag("client-id", defaults.client_id, str, "OAuth2 client id accepted")
    flag("client-secret", defaults.client_secret, str, "OAuth2 client secret accepted", True)
    flag("api-key", defaults.api_key, str, "x-api-key accepted", True)
    flag("token-lifetime", defaults.token_lifetime, float, "access token lifetime, seconds")
    flag("strict-realm", defaults.strict_realm, _bool, "refuse tokens without realm=<org-id>",
         nargs="?", const=True)  # fmt: skip
    flag("orgs", defaults.orgs, int, "serve this many organisations org-0001 ... (0: --org-id)")
    flag(
        "api-key-per-org",
        defaults.api_key_per_org,
        _bool,
        "with --orgs: each organisation its own x-api-key, key-org-0001 ...",
        nargs="?",
        const=True,
    )
    flag("orgs-per-key", defaults.orgs_per_key, int, "with --api-key-per-org: orgs sharing a key")
    flag(
        "rate-limit",
        None,
        _rate_limit,
        "the gateway's rate limit per x-api-key, N/PERIOD such as 110/1m or 5/10s: its "
        "RateLimit-* headers on every answer, 429 with Retry-After past it",
    )
    flag(
        "rate-limit-headers",
        defaults.rate_limit_headers,
        str,
        "spelling of the rate-limit headers: RateLimit-*, X-RateLimit-*, or X-RateLimit-* "
        "with Reset as a Unix time",
        choices=HEADER_STYLES,
    )
    return parser


def parse_args(
    argv: Sequence[str] | None = None, environ: Mapping[str, str] = os.environ
) -> tuple[tuple[str, int], SimulatorConfig]:
    """The listen address and the config from flags, then environment, then defaults."""
    parser = _parser(environ)
    args = parser.parse_args(argv)
    # Defaults taken from the environment are strings that argparse has not converted.
    listen = args.listen_address
    if isinstance(listen, str):
        listen = _listen_address(listen)
    try:
        config = SimulatorConfig(
            scenario=str(args.scenario),
            seed=None if args.seed is None else int(args.seed),
            speed=float(args.speed),
            page_cap=int(args.page_cap),
            emails=int(args.emails),
            org_id=str(args.org_id),
            client_id=str(args.client_id),
            client_secret=str(args.client_secret),
            api_key=str(args.api_key),
            token_lifetime=float(args.token_lifetime),
            strict_realm=_bool(args.strict_realm),
            orgs=int(args.orgs),
            orgs_per_key=int(args.orgs_per_key),
            api_key_per_org=_bool(args.api_key_per_org),
            rate_limit=_rate_limit(args.rate_limit),
            rate_limit_headers=str(args.rate_limit_headers),
        )
    except (ValueError, argparse.ArgumentTypeError) as exc:
        parser.error(str(exc))
    if config.rate_limit_headers not in HEADER_STYLES:
        parser.error(f"--rate-limit-headers must be one of {', '.join(HEADER_STYLES)}")
    if config.scenario not in SCENARIOS:
        parser.error(f"--scenario must be one of {', '.join(SCENARIOS)}")
    if config.speed <= 0 or config.page_cap < 1 or config.emails < 0 or config.token_lifetime <= 0:
        parser.error("--speed and --token-lifetime must be > 0, --page-cap >= 1, --emails >= 0")
    if not 0 <= config.orgs <= MAX_ORGS or config.orgs_per_key < 1:
        parser.error(f"--orgs must be from 0 to {MAX_ORGS}, --orgs-per-key at least 1")
    return listen, config


async def serve(host: str, port: int, config: SimulatorConfig) -> None:
    """Serve until SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    simulator = await start_simulator(config, host, port)
    if config.rate_limit is not None:
        requests, period = config.rate_limit
        log.info("rate limit: %d requests per %g s per x-api-key", requests, period)
    orgs = config.org_ids
    log.info(
        "simulator listening on %s (scenario=%s, org_id=%s, emails at %s)",
        simulator.base_url,
        config.scenario,
        orgs[0] if len(orgs) == 1 else f"{orgs[0]} ... {orgs[-1]} ({len(orgs)} organisations)",
        simulator.emails_url,
    )
    try:
        await stop.wait()
    finally:
        await simulator.close()
    log.info("simulator stopped")


def main(argv: Sequence[str] | None = None) -> None:
    """Console entry point."""
    (host, port), config = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(message)s"
    )
    try:
        asyncio.run(serve(host, port, config))
    except OSError as exc:
        log.error("cannot listen on %s:%d: %s", host, port, exc)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
