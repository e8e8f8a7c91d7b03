"""The generated parts of the documentation site (docs/), made from the code, never by hand.

Each generated part sits in a page between ``<!-- generated:NAME:begin -->`` and
``<!-- generated:NAME:end -->``; `python -m docsgen` (`make docs`) rewrites every part, and
`python -m docsgen --check` (`make test`) fails when one is stale. The parts:

- ``metrics`` (docs/metrics.md): every metric family the exporter serves, from the family
  declarations and the collectors of a registry built as the daemon builds it (`metrics`);
- ``settings``, ``regions`` (docs/configuration.md): every setting's flag, environment variable,
  YAML key, default and meaning from the settings table; the regions' hosts (`settings`);
- ``poll-errors`` (docs/troubleshooting.md): the `reason` label values of failed polls (`settings`);
- ``alerts`` (docs/alerts.md): every alert of the generated rules file (`alerts`).
"""
