"""Logging: JSON lines off a TTY, stdlib records routed through structlog with readable tracebacks."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from exporter.app import log


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.reset_defaults()


def lines(buf: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in buf.getvalue().splitlines()]


def test_auto_format_is_json_off_a_tty_and_levels_filter() -> None:
    buf = io.StringIO()
    log.configure("warning", "auto", buf)
    structlog.get_logger("exporter.polling.poller").info("poll", org="acme")
    structlog.get_logger("exporter.polling.poller").warning("poll", org="acme", outcome="failure")
    (event,) = lines(buf)
    assert event["event"] == "poll" and event["org"] == "acme" and event["level"] == "warning"


def test_stdlib_exceptions_are_rendered_as_text() -> None:
    buf = io.StringIO()
    log.configure("info", "json", buf)
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("aiohttp.server").exception("Error handling request")
    (event,) = lines(buf)
    assert event["logger"] == "aiohttp.server"
    assert isinstance(event["exception"], str) and "ValueError: boom" in event["exception"]


def test_every_logged_value_is_scrubbed(monkeypatch: pytest.MonkeyPatch) -> None:
    from exporter.domain import scrub

    monkeypatch.setattr(scrub, "_secrets", ("client-secret-0042",))
    monkeypatch.setattr(scrub, "_longest", len("client-secret-0042"))
    buf = io.StringIO()
    log.configure("info", "console", buf)
    forged = "refused\n2026-01-01 [info] poll outcome=success \x1b[32mok client-secret-0042"
    structlog.get_logger("exporter").warning("poll", error=forged, big="x" * 100_000)
    logging.getLogger("aiohttp.server").warning("peer said %s", "client-secret-0042\r\nforged")
    text = buf.getvalue()
    assert "client-secret-0042" not in text and "********" in text
    assert "\x1b[32m" not in text and len(text.splitlines()) == 2
    assert "x" * (log.VALUE_CHARS + 1) not in text
