"""Settings from flags, environment, YAML config file and secret files; the only package reading them.

Sources, highest first: flags > ``ALVARIA_*`` env > YAML config file > ``*_FILE`` secret files >
defaults. Inside ``targets:`` a block's own values (and its own ``*_file`` keys) win over everything
they inherit. The layering is done here rather than by pydantic-settings because every
``ConfigError`` must name the exact source of the offending value.

Modules, each importing only those above it:
- ``values``: raw values (env, flags, files) and YAML scalars parsed
- ``regions``: each Alvaria Cloud region's token host and API domain
- ``files``: bounded reads of the files settings name, and YAML without aliases
- ``servicelevels``: the YAML-only ``service_levels`` rules and ``calendars``
- ``web_config``: the ``--web.config.file``, read and validated once
- ``models``: the frozen settings models, the `Invocation`, the listen-address syntax
- ``table``: every setting's flag and env var, and the argparse parser
- ``argv``: the command line parsed into raw values
- ``checks``: checks across sources (unknown ``ALVARIA_*`` variables, values that would hammer
  the API)
- ``sources``: the layering: ``load``
- ``dump``: masked YAML for ``--check-config``
- ``advice``: warnings about valid but suspicious settings
"""

from exporter.settings.advice import advice
from exporter.settings.dump import SECRET_MASK, masked_dump
from exporter.settings.models import (
    Invocation,
    Mode,
    Settings,
    TargetSettings,
    split_listen_address,
)
from exporter.settings.regions import REGIONS, TOKEN_URLS, Region
from exporter.settings.sources import load
from exporter.settings.values import parse_duration, parse_size

__all__ = [
    "REGIONS",
    "SECRET_MASK",
    "TOKEN_URLS",
    "Invocation",
    "Mode",
    "Region",
    "Settings",
    "TargetSettings",
    "advice",
    "load",
    "masked_dump",
    "parse_duration",
    "parse_size",
    "split_listen_address",
]
