"""The command line: load the settings, then check them, check the connection, poll once, run
the demo or run the daemon (`exporter.app.daemon`); a bad setting exits 2 naming it."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Mapping, Sequence

import structlog
from pydantic import SecretStr

from exporter import __version__, settings
from exporter.app import log
from exporter.app.check_connection import check_connection
from exporter.app.daemon import run
from exporter.app.signals import Interrupted, cancel_on_signals, ignore_until_handled
from exporter.app.wiring import config_loader
from exporter.domain.errors import ConfigError
from exporter.domain.scrub import remember_secrets
from exporter.fleet.shards import owned
from exporter.settings import Settings, TargetSettings
from exporter.settings.web_config import WebConfig
from exporter.upstream.targets import configured_secrets

PROG = "alvaria-emailqueue-exporter"


async def run_demo(
    cfg: Settings,
    web: WebConfig | None = None,
    argv: Sequence[str] = (),
    environ: Mapping[str, str] | None = None,
) -> int:
    """Start the built-in simulator on a free loopback port and poll it."""
    from exporter.simulator import SimulatorConfig, start_simulator

    logger = structlog.get_logger("exporter")
    demo = SimulatorConfig()
    sim = await start_simulator(demo)
    try:
        logger.info("demo simulator started", api_url=sim.base_url)
        target = TargetSettings(
            org_id=demo.org_id,
            api_key=SecretStr(demo.api_key),
            client_id=demo.client_id,
            client_secret=SecretStr(demo.client_secret),
            api_url=sim.base_url,
            token_url=sim.token_url,
        )
        load = config_loader(argv, environ, (target,)) if environ is not None else None
        demo_cfg = cfg.model_copy(update={"targets": (target,)})
        return await run(demo_cfg, web=web, load=load, demo_url=sim.base_url)
    finally:
        await sim.close()


async def _check_connection(cfg: Settings) -> int:
    """`--check-connection`; Ctrl-C or SIGTERM stop it with exit 130 / 143, not as a failed step."""
    with cancel_on_signals():
        return await check_connection(cfg, sys.stdout.write)


def shard_summary(cfg: Settings) -> str:
    """With several shards, the organisations this one polls, as YAML comments for --check-config."""
    if cfg.total_shards == 1:
        return ""
    mine = owned(cfg.targets, cfg.shard, cfg.total_shards, lambda t: t.api_key.get_secret_value())
    head = f"# shard {cfg.shard} of {cfg.total_shards} polls {len(mine)} of {len(cfg.targets)}"
    lines = [f"{head} organisation(s) (grouped by api_key):"]
    lines += [f"#   - {target.org_id}" for target in mine]
    return "\n".join(lines) + "\n"


def _config_error(exc: ConfigError) -> int:
    """Exit code 2, after one line per invalid setting."""
    for error in exc.all:
        print(f"{PROG}: {error}", file=sys.stderr)
    for warning in getattr(exc, "warnings", ()):
        print(f"{PROG}: warning: {warning}", file=sys.stderr)
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    """Console-script entry point; returns the process exit code."""
    ignore_until_handled()  # already done by exporter.__main__ for the console script
    argv = sys.argv[1:] if argv is None else argv
    try:
        invocation = settings.load(argv, os.environ)
    except ConfigError as exc:
        return _config_error(exc)
    cfg, web = invocation.settings, invocation.web
    remember_secrets(configured_secrets(cfg), keep_previous=False)
    if invocation.mode == "version":
        print(f"{PROG} {__version__}")
        return 0
    if invocation.mode == "check_config":
        print(settings.masked_dump(cfg, invocation.sources), end="")
        print(shard_summary(cfg), end="")
        for note in (*invocation.notes, *settings.advice(cfg)):
            print(f"{PROG}: warning: {note}", file=sys.stderr)
        return 0
    if invocation.mode == "check_connection":
        try:
            return asyncio.run(_check_connection(cfg))
        except ConfigError as exc:  # a file changed between validation and use
            return _config_error(exc)
        except Interrupted as exc:  # the lines printed so far stand; the step cut short is not one
            print(f"{PROG}: {exc}", file=sys.stderr)
            return exc.exit_code
        except KeyboardInterrupt:
            return 130
    log.configure(cfg.log_level, cfg.log_format)
    for note in (*invocation.notes, *settings.advice(cfg)):
        structlog.get_logger("exporter").warning("suspicious setting", advice=note)
    try:
        if invocation.mode == "demo":
            return asyncio.run(run_demo(cfg, web, argv, os.environ))
        load = config_loader(argv, os.environ)
        return asyncio.run(run(cfg, once=invocation.mode == "once", web=web, load=load))
    except ConfigError as exc:  # a file changed between validation and use
        return _config_error(exc)
    except Interrupted as exc:  # --once stopped by Ctrl-C or SIGTERM: a script must not see 0
        print(f"{PROG}: {exc}; nothing printed", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:  # before the event loop took the signal over
        return 130
    except OSError as exc:  # e.g. the listen address is taken: one line, not a traceback
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 1
