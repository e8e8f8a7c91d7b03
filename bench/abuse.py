"""Hostile clients for the soak test, in a process of their own so their CPU is not the scrapers'.

- slowloris: `--slowloris N` connections that send a request line and then one header byte every
  few seconds, never finishing; each one the server drops is reopened.
- wrong-password flood: `--flood N` connections sending requests with distinct wrong passwords
  as fast as they are answered.

Run with ``python -m bench.abuse --port P --duration S``; prints one JSON summary line at the end.
Loopback only, bounded in connections and time.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import sys
import time
from collections import Counter
from collections.abc import Sequence


async def slowloris(port: int, stop: asyncio.Event, counts: Counter[str], drip: float) -> None:
    """One slow client: reconnects whenever the server drops it."""
    while not stop.is_set():
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            counts["slowloris_connect_failed"] += 1
            await asyncio.sleep(0.5)
            continue
        counts["slowloris_opened"] += 1
        opened = time.monotonic()
        try:
            writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            while not stop.is_set():
                writer.write(b"a")
                await writer.drain()
                try:
                    if await asyncio.wait_for(reader.read(1024), drip) == b"":
                        break  # the server closed it
                except TimeoutError:
                    continue
        except OSError:
            pass
        finally:
            if not stop.is_set():
                counts["slowloris_dropped"] += 1
                counts["slowloris_held_ms"] += int((time.monotonic() - opened) * 1000)
            writer.close()


async def flood(port: int, stop: asyncio.Event, counts: Counter[str], index: int) -> None:
    """One connection's worth of wrong passwords, each one new (so no cache can help)."""
    n = 0
    while not stop.is_set():
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            counts["flood_connect_failed"] += 1
            await asyncio.sleep(0.5)
            continue
        try:
            while not stop.is_set():
                n += 1
                token = base64.b64encode(f"soak:wrong-{index}-{n}".encode()).decode()
                writer.write(
                    f"GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {token}\r\n\r\n".encode()
                )
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
                status = head.split(b" ", 2)[1].decode()
                length = next(
                    (int(line.split(b":")[1]) for line in head.split(b"\r\n")
                     if line.lower().startswith(b"content-length:")),
                    0,
                )  # fmt: skip
                await reader.readexactly(length)
                counts[f"flood_{status}"] += 1
                if b"connection: close" in head.lower():
                    break
        except (OSError, asyncio.IncompleteReadError, TimeoutError):
            counts["flood_errors"] += 1
        finally:
            writer.close()


async def main_async(args: argparse.Namespace) -> dict[str, int]:
    stop = asyncio.Event()
    counts: Counter[str] = Counter()
    tasks = [
        *(
            asyncio.create_task(slowloris(args.port, stop, counts, args.drip))
            for _ in range(args.slowloris)
        ),
        *(asyncio.create_task(flood(args.port, stop, counts, i)) for i in range(args.flood)),
    ]
    await asyncio.sleep(args.duration)
    stop.set()
    await asyncio.wait(tasks, timeout=10)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return dict(counts)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.abuse", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--port", type=int, required=True, help="the exporter's loopback port")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds (default 60)")
    parser.add_argument("--slowloris", type=int, default=200, help="slow connections (default 200)")
    parser.add_argument("--flood", type=int, default=300, help="flooding connections (default 300)")
    parser.add_argument("--drip", type=float, default=2.0, help="seconds between slow bytes")
    args = parser.parse_args(argv)
    print(json.dumps(asyncio.run(main_async(args)), sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
