"""Render the dashboards as JSON. `make monitoring` writes them (with the rules, from one config);
`python -m grafana.generate` writes only the dashboards."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import dashboard as model

from grafana import health, overview
from monitoring.config import CONFIG, Config

OUTPUT_DIR = Path(__file__).parent / "dashboards"

DASHBOARDS: dict[str, Callable[[Config], model.Dashboard]] = {
    "emailqueue-overview.json": overview.build,
    "exporter-health.json": health.build,
}


def render(build: Callable[[Config], model.Dashboard], config: Config = CONFIG) -> str:
    """The dashboard as stable JSON text: sorted keys, fixed indent, trailing newline."""
    return json.dumps(build(config), cls=JSONEncoder, sort_keys=True, indent=2) + "\n"


def main(output_dir: Path = OUTPUT_DIR) -> None:
    """Write every dashboard into `output_dir`."""
    output_dir.mkdir(parents=True, exist_ok=True)
    for name, build in DASHBOARDS.items():
        (output_dir / name).write_text(render(build), encoding="utf-8")
        print(f"wrote {output_dir / name}")


if __name__ == "__main__":
    main()
