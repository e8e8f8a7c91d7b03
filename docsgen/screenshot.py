"""`python -m docsgen.screenshot`: docs/images/landing-page.png, the landing page of `--demo`.

Starts `alvaria-emailqueue-exporter --demo` on a free loopback port, waits until every
organisation has been polled (`/readyz`), and has headless Chromium photograph `/`.
Needs `chromium` (Debian: `apt-get install chromium`); every wait is bounded.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from docsgen.blocks import DOCS

OUT = DOCS / "images" / "landing-page.png"
WINDOW = "1280,500"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_ready(base: str, deadline: float) -> None:
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{base}/readyz", timeout=2) as response:  # noqa: S310
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{base}/readyz did not answer 200 in time")


def browser() -> str:
    """The Chromium executable, or an error saying how to install it."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if found := shutil.which(name):
            return found
    raise SystemExit("chromium is not installed: apt-get install -y chromium")


def take(out: Path = OUT, window: str = WINDOW, timeout: float = 60.0) -> Path:
    """Run the demo, photograph its landing page into `out`, stop the demo."""
    chromium = browser()
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    exporter = Path(sys.executable).with_name("alvaria-emailqueue-exporter")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALVARIA_")}
    demo = subprocess.Popen(  # noqa: S603
        [str(exporter), "--demo", "--listen-address", f"127.0.0.1:{port}", "--poll-interval", "5s"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_ready(base, time.monotonic() + timeout)
        time.sleep(6)  # a second poll: the flow counters and ages have moved once
        out.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(  # noqa: S603
            [
                chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                f"--screenshot={out}", f"--window-size={window}", f"{base}/",
            ],
            check=True, capture_output=True, timeout=timeout,
        )  # fmt: skip
    finally:
        demo.terminate()
        try:
            demo.wait(timeout=10)
        except subprocess.TimeoutExpired:
            demo.kill()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m docsgen.screenshot", description=__doc__)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--window-size", default=WINDOW, help="width,height in pixels")
    args = parser.parse_args(argv)
    print(f"wrote {take(args.out, args.window_size)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
