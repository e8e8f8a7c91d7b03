"""structlog configuration: console output on a TTY, JSON lines otherwise; stdlib logs routed through it.

Every string value of every event, ours or a library's, passes the one scrubber
(`exporter.domain.scrub`): bounded, control characters replaced, configured secrets masked.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog

from exporter.domain.scrub import scrub

LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


# Characters of one logged value; a traceback may be longer.
VALUE_CHARS = 2000
TRACEBACK_CHARS = 20_000


def scrub_values(
    logger: object, method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """The structlog processor applying `scrub` to every string value of an event."""
    for key, value in event.items():
        if isinstance(value, str):
            if key == "exception":
                event[key] = scrub(value, TRACEBACK_CHARS, keep_newlines=True)
            else:
                event[key] = scrub(value, VALUE_CHARS)
    return event


def configure(level: str = "info", fmt: str = "auto", stream: TextIO | None = None) -> None:
    """Configure structlog and the stdlib root logger (aiohttp's access log among others)."""
    stream = stream or sys.stderr
    if fmt == "auto":
        fmt = "console" if stream.isatty() else "json"
    renderer: structlog.typing.Processor = (
        structlog.dev.ConsoleRenderer(colors=stream.isatty())
        if fmt == "console"
        else structlog.processors.JSONRenderer()
    )
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.format_exc_info,
            scrub_values,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.make_filtering_bound_logger(LEVELS[level]),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            # Records from the stdlib (aiohttp, asyncio) may carry exc_info: render it as text.
            foreign_pre_chain=[*shared, structlog.processors.format_exc_info, scrub_values],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(LEVELS[level])
    # One line per scrape is noise for a daemon scraped every few seconds.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
