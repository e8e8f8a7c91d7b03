"""The example Alertmanager configuration, from the monitoring configuration and the exporter's.

`make monitoring` writes deploy/alertmanager/alertmanager.yml from `monitoring.config.CONFIG`
and the exporter configuration deploy/alertmanager/service-levels.example.yml. To route by your
own business calendars, generate it from your exporter's configuration file:

    python -m monitoring.alertmanager --exporter-config /etc/alvaria/config.yml > alertmanager.yml

Only `service_levels:` and `calendars:` are read from that file (see `monitoring.calendars`).
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from monitoring import calendars
from monitoring.config import CONFIG, Config
from monitoring.durations import duration, seconds

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_SERVICE_LEVELS = Path("deploy/alertmanager/service-levels.example.yml")
PATH = Path("deploy/alertmanager/alertmanager.yml")
PREFIX = "AlvariaEmailQueue"
EXPORTER_ALERTS = (
    "AuthFailing|PollsFailing|DataStale|ApiRateLimited|TokenRefreshFailing|LabelOverflow"
)
QUEUE_ALERTS = "BacklogHigh|BacklogGrowing|NotDraining|ServiceLevel.*"
# Group the service-level alerts across organisations (service_level_group_by).
FLEET_GROUP_BY = ("alertname", "work_type", "email_type")


class _Quoted(str):
    """A value written in single quotes (a time such as 08:00 must stay a string)."""

    __slots__ = ()


class _Dumper(yaml.SafeDumper):
    """No anchors or aliases (two routes may share a matcher list); short lists in flow style."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _represent_list(dumper: yaml.SafeDumper, value: list[Any]) -> yaml.Node:
    flow = all(isinstance(v, str) for v in value)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", value, flow_style=flow)


_Dumper.add_representer(_Quoted, lambda d, v: d.represent_scalar("tag:yaml.org,2002:str", v, "'"))
_Dumper.add_representer(list, _represent_list)


def _quoted(content: Any) -> Any:
    """`content` with every string value (not the keys) quoted."""
    if isinstance(content, dict):
        return {key: _quoted(value) for key, value in content.items()}
    if isinstance(content, list):
        return [_quoted(value) for value in content]
    return _Quoted(content) if isinstance(content, str) else content


def _yaml(content: Any, indent: int) -> str:
    text = yaml.dump(
        _quoted(content), Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=4096
    )
    return textwrap.indent(text, " " * indent).rstrip("\n")


def _flow(values: tuple[str, ...] | list[str]) -> str:
    return "[" + ", ".join(values) + "]"


def pipeline_delay(config: Config) -> float:
    """Seconds from an email entering its warning window to the page, at the latest.

    One scrape until Prometheus sees the count, one evaluation until the rule does, the alert's
    `for`, then Alertmanager: `group_wait` for a new group, or up to `group_interval` for an
    alert joining a group already notified.
    """
    return (
        seconds(config.scrape_interval)
        + seconds(config.evaluation_interval)
        + seconds(config.alert("ServiceLevelAtRisk").for_)
        + max(
            seconds(config.service_level_group_wait), seconds(config.service_level_group_interval)
        )
    )


def _service_level_route(config: Config, levels: calendars.ServiceLevels) -> str:
    group_by = config.service_level_group_by
    fleet = "fleet-wide" if tuple(group_by) == FLEET_GROUP_BY else "per organisation"
    other = "per organisation" if fleet == "fleet-wide" else "fleet-wide"
    delay = duration(pipeline_delay(config))
    routes = [{"matchers": ['severity="warning"'], "receiver": "ticket"}]
    routes += calendars.service_level_routes(levels)
    return f"""\
        # Service-level alerts: their own groups and short waits, so a warning is not held
        # back: a new group waits group_wait, an alert joining a group already notified at most
        # group_interval. What is left of a warning when it reaches someone (runbooks.md,
        # "Effective warning") = warning - (scrape {config.scrape_interval} + evaluation {config.evaluation_interval}
        # + for {config.alert("ServiceLevelAtRisk").for_} + group_interval {config.service_level_group_interval}) = warning - {delay}.
        # Grouped {fleet} (the other choice: {other}; service_level_group_by in
        # monitoring/config.py). Per organisation (group_by: [alertname, org]), a notification
        # lists the organisation's work types. Fleet-wide (group_by: {_flow(FLEET_GROUP_BY)}),
        # one notification per alert and work type lists every organisation (each alert
        # carries its org): one page for a problem all organisations share, not one each.
        - matchers: ['alertname=~"{PREFIX}ServiceLevel.*"']
          receiver: ticket
          group_by: {_flow(group_by)}
          group_wait: {config.service_level_group_wait}
          group_interval: {config.service_level_group_interval}
          # First the burn-rate ticket (severity warning). Then one route per service-level
          # rule of the exporter configuration, in its order: the first match wins, as in the
          # exporter. A rule with a calendar pages while the calendar is open and not a
          # holiday, and opens a ticket while it is closed; an alert still firing at opening
          # pages then. A rule without one pages at any hour; so do the exporter's defaults.
          routes:
{_yaml(routes, 12)}"""


def _time_intervals(levels: calendars.ServiceLevels) -> str:
    intervals = calendars.time_intervals(levels)
    if not intervals:
        return f"# No calendars in {levels.source}: no time intervals, service-level alerts page at any hour.\n"
    return (
        f"# From the calendars of {levels.source}, in each calendar's time zone: the opening\n"
        "# hours, their complement, and the holidays (whole local dates).\n"
        f"time_intervals:\n{_yaml(intervals, 2)}\n"
    )


def _inhibit_rules(config: Config) -> str:
    lost = _flow((*config.fleet_labels, "org"))
    return f"""\
# Cause before symptom: while a cause fires, the alerts it explains stay quiet. No rule mutes a
# whole job: a dead or removed replica silences its own organisations only.
inhibit_rules:
  # While Prometheus cannot scrape an exporter instance, its own alerts are noise.
  - source_matchers: ['alertname="{PREFIX}ExporterDown"']
    target_matchers:
      - alertname=~"{PREFIX}({EXPORTER_ALERTS})"
    equal: [job, instance]
  # An organisation exported by no replica any more (its shard died or left service
  # discovery): its data is gone, so its queue, service-level and exporter alerts would
  # mislead, and their "resolved" would be a lie. Matched on the organisation: the other
  # replicas' organisations still page. OrganisationLost pages itself, naming them.
  - source_matchers: ['alertname="{PREFIX}OrganisationLost"']
    target_matchers:
      - alertname=~"{PREFIX}({QUEUE_ALERTS}|{EXPORTER_ALERTS})"
    equal: {lost}
  # Refused credentials are the cause of the failing polls and of the stale data: tell it once.
  # AuthFailing is critical itself, so no page is swallowed.
  - source_matchers: ['alertname="{PREFIX}AuthFailing"']
    target_matchers: ['alertname=~"{PREFIX}(PollsFailing|DataStale|TokenRefreshFailing)"']
    equal: [job, instance, org]
  # While an organisation's data is stale or its credentials are refused, its queue metrics are
  # gone: queue and service-level alerts for it would mislead, and their "resolved" (after
  # keep_firing_for) would be a lie. Both sources page themselves. Matched on job and org.
  - source_matchers: ['alertname=~"{PREFIX}(AuthFailing|DataStale)"']
    target_matchers: ['alertname=~"{PREFIX}({QUEUE_ALERTS})"']
    equal: [job, org]
  # While polls fail, the last snapshot is still served and frozen counts mislead the warning
  # queue alerts. The service-level pages stay: ages keep growing at scrape time, so an email
  # that is about to breach (or has) is still true news, and a warning must not mute a page.
  - source_matchers: ['alertname="{PREFIX}PollsFailing"']
    target_matchers: ['alertname=~"{PREFIX}(BacklogHigh|BacklogGrowing|NotDraining)"']
    equal: [job, org]
  # Once emails have breached, the page for those about to breach is said.
  - source_matchers: ['alertname="{PREFIX}ServiceLevelBreached"']
    target_matchers: ['alertname="{PREFIX}ServiceLevelAtRisk"']
    equal: [job, org, work_type, email_type]
"""


def render(config: Config = CONFIG, levels: calendars.ServiceLevels | None = None) -> str:
    """The example alertmanager.yml."""
    if levels is None:
        levels = calendars.load(ROOT / EXAMPLE_SERVICE_LEVELS)
        levels = calendars.ServiceLevels(
            levels.rules, levels.calendars, EXAMPLE_SERVICE_LEVELS.name
        )
    business = next(iter(levels.calendars), "<calendar>")
    return f"""\
# Example Alertmanager configuration for the Alvaria EmailQueue alerts.
# Generated by `make monitoring` from monitoring/config.py and the exporter configuration
# {levels.source}; do not edit: regenerate (see monitoring/alertmanager.py), or generate your
# own from your exporter's configuration file with
#   python -m monitoring.alertmanager --exporter-config <file> > alertmanager.yml
# Replace the webhook URLs with your pager, ticket and chat integrations. To merge this into an
# existing configuration, copy the sub-route under `routes:`, the time intervals and the inhibit
# rules; the root route here only stands in for yours and claims nothing.
#
# Exporter and queue alerts page (critical) or go to the chat (warning) at any hour: an exporter
# outage on a Sunday is still an outage. Service-level alerts follow the exporter's business
# calendars: a page while the calendar is open, a ticket while it is closed.
route:
  receiver: "null"
  routes:
    # Everything of this exporter, and nothing else: grouping and timing apply to these alerts
    # only, not to whatever else your root route receives.
    - matchers: ['alertname=~"{PREFIX}.*"']
      receiver: "null"
      # One notification per organisation and alert, listing the affected work types.
      group_by: [alertname, org]
      group_wait: {config.group_wait}
      group_interval: {config.group_interval}
      repeat_interval: {config.repeat_interval}
      routes:
{_service_level_route(config, levels)}
        # A replica that died or left service discovery: one page per job, listing every
        # organisation lost (each alert carries its org).
        - matchers: ['alertname="{PREFIX}OrganisationLost"']
          receiver: pager
          group_by: {_flow(("alertname", *config.fleet_labels))}
          repeat_interval: 1h
        - matchers: ['severity="critical"']
          receiver: pager
          repeat_interval: 1h
        # Optional: warnings that are normal outside opening hours (night work types nobody
        # staffs) to the chat during opening hours only; they wait for the opening otherwise.
        # Put this route above the next one. Critical alerts still page at night.
        # - matchers:
        #     - severity="warning"
        #     - alertname=~"{PREFIX}(NotDraining|BacklogGrowing)"
        #   receiver: chat
        #   active_time_intervals: [{calendars.interval_name(business, "open")}]
        - matchers: ['severity="warning"']
          receiver: chat

{_time_intervals(levels)}
{_inhibit_rules(config)}
receivers:
  # Receives what no route claims (nothing of this exporter's); kept as a safe default.
  - name: "null"
  - name: pager
    webhook_configs:
      - url: http://pager.example.invalid/alvaria-emailqueue
        send_resolved: true
  # Service-level alerts while their calendar is closed, and the daily burn-rate warning.
  - name: ticket
    webhook_configs:
      - url: http://ticket.example.invalid/alvaria-emailqueue
        send_resolved: true
  - name: chat
    webhook_configs:
      - url: http://chat.example.invalid/alvaria-emailqueue
        send_resolved: true
"""


def main(argv: list[str] | None = None, write: Callable[[str], object] = sys.stdout.write) -> int:
    """Print the Alertmanager configuration for an exporter configuration file."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--exporter-config",
        type=Path,
        default=ROOT / EXAMPLE_SERVICE_LEVELS,
        help="exporter configuration file whose service_levels and calendars to route by",
    )
    args = parser.parse_args(argv)
    try:
        levels = calendars.load(args.exporter_config)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        print(f"monitoring.alertmanager: {exc}", file=sys.stderr)
        return 2
    write(render(CONFIG, levels))
    return 0


if __name__ == "__main__":
    sys.exit(main())
