"""`python -m docsgen`: rewrite the generated parts of docs/; `--check`: fail when one is stale."""

from __future__ import annotations

import argparse
import sys

from docsgen import alerts, metrics, settings
from docsgen.blocks import Part, stale, write

PARTS = (
    Part("metrics", "metrics.md", metrics.render),
    Part("settings", "configuration.md", settings.render_settings),
    Part("regions", "configuration.md", settings.render_regions),
    Part("poll-errors", "troubleshooting.md", settings.render_poll_errors),
    Part("alerts", "alerts.md", alerts.render),
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m docsgen", description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail when a part is out of date")
    args = parser.parse_args(argv)
    if args.check:
        pages = stale(PARTS)
        for page in pages:
            print(f"docs/{page} is out of date: run `make docs`", file=sys.stderr)
        return 1 if pages else 0
    for page in write(PARTS):
        print(f"wrote docs/{page}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
