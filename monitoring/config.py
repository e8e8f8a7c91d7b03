"""The one monitoring configuration: every choice the rules, alerts and dashboards share.

Like the `_config` block of a monitoring mixin (kubernetes-mixin, node-mixin, celery-mixin):
the recording rules, the alerts, the Prometheus Operator manifest and the Grafana dashboards are
all generated from `CONFIG` (`make monitoring`), so changing a value here changes every place
that uses it. Each knob says when to change it. To adapt the shipped files, edit the defaults
below and regenerate; to build your own copy from code, pass
`dataclasses.replace(CONFIG, ...)` to the generators.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from exporter.domain.names import DEFAULT_WAITING_STATES
from monitoring.durations import seconds


@dataclass(frozen=True)
class Override:
    """A value for the groups whose labels match every regex in `match` (fully anchored)."""

    value: float
    match: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Threshold:
    """A default, and overrides tried in order before it (the first that matches wins)."""

    default: float
    overrides: tuple[Override, ...] = ()


@dataclass(frozen=True)
class AlertSettings:
    """How long a condition must hold, how loud the alert is, and how long it outlives it."""

    for_: str
    severity: str
    keep_firing_for: str = ""


@dataclass(frozen=True)
class BurnWindow:
    """One multi-window burn-rate condition (SRE workbook, "Alerting on SLOs").

    Fires when the share of picked-up emails that missed their target, over both `long` and
    `short`, exceeds `factor` x the error budget (1 - objective). The short window makes the
    alert resolve soon after the burn stops. `factor` x budget must stay below 1, or the alert
    could never fire (the generator refuses such a window).
    """

    long: str
    short: str
    factor: float
    severity: str
    for_: str


@dataclass(frozen=True)
class Config:
    """Every knob of the shipped rules and dashboards. See the module docstring."""

    # Prometheus label matcher that selects this exporter's scrape targets. The default matches
    # the example job `alvaria-emailqueue` and Kubernetes' `<namespace>/alvaria-emailqueue-exporter`.
    # Change it if your scrape job is named otherwise.
    job_selector: str = 'job=~".*alvaria-emailqueue.*"'
    # The exporter's `waiting_states` (ALVARIA_WAITING_STATES). Change both together.
    waiting_states: tuple[str, ...] = DEFAULT_WAITING_STATES
    # Email types the queue and service-level alerts judge: customers wait for inbound emails;
    # outbound ones queue for other reasons. Add e.g. "ManualOutboundEmail" to alert on it too.
    alert_email_types: tuple[str, ...] = ("InboundEmail",)
    # Labels that tell HA replicas (and rollouts) of one exporter apart. Queue aggregates take
    # the max across them. Add e.g. "kubernetes_pod_name" if your relabelling keeps the pod there.
    replica_labels: tuple[str, ...] = ("instance", "pod")
    # Labels that identify one sharded deployment (all replicas of one StatefulSet). Add
    # "namespace" or "cluster" when one Prometheus scrapes several.
    fleet_labels: tuple[str, ...] = ("job",)
    # AlvariaEmailQueueOrganisationLost: an organisation exported by some replica within this
    # window and by none now. After removing an organisation on purpose the alert fires until
    # its last sample is this old (silence it); a loss older than this is forgotten.
    lost_window: str = "1h"

    # Used only when an older exporter does not export alvaria_emailqueue_poll_interval_seconds
    # / stale_after_seconds: the exporter's defaults. Newer exporters report their own values,
    # so any poll interval works without editing anything here.
    fallback_poll_interval_seconds: float = 30
    fallback_stale_after_seconds: float = 150
    # AlvariaEmailQueuePollsFailing: failing for longer than this many poll intervals (then `for`).
    polls_failing_intervals: int = 3
    # Window in which poll errors are counted to name the reason of a failure, and to judge
    # AlvariaEmailQueueAuthFailing. Keep it above 2 x the longest poll_interval you use.
    reason_window: str = "5m"
    # AlvariaEmailQueueCertificateExpiring: the certificate the API (or token) host presents
    # expires within this many days (blackbox_exporter's usual threshold).
    certificate_expiry_days: float = 14

    # Waiting emails per work type considered a high backlog (AlvariaEmailQueueBacklogHigh).
    # Overrides, e.g. Override(2000, (("work_type", "Campaigns"),)), are tried first.
    backlog_high: Threshold = Threshold(500)
    # AlvariaEmailQueueBacklogGrowing: growth over `backlog_growing_window` (a linear fit) of at
    # least `min` emails and at least `share` of what the backlog was. A series must be at least
    # one window old (`offset`) before the fit is trusted, so a new target never fires on a slope
    # fitted over a few samples.
    backlog_growing_window: str = "30m"
    backlog_growing_min: float = 50
    backlog_growing_share: float = 0.5
    # AlvariaEmailQueueNotDraining: no pickup (pickups_total) in `window` while at least `min`
    # emails wait, or while the oldest waiting email has used up `age_share` of its target.
    not_draining_window: str = "30m"
    not_draining_min: float = 10
    not_draining_age_share: float = 0.5
    # Service-level target used only for groups an older exporter reports no
    # alvaria_emailqueue_service_level_target_seconds for (the exporter's default, 24h).
    fallback_service_level_target_seconds: float = 86400

    # Share of picked-up emails that must meet their target (the service-level objective), per
    # work type; overrides per work type / email type like backlog_high.
    service_level_objective: Threshold = Threshold(0.8)
    # Burn-rate windows of AlvariaEmailQueueServiceLevelBelowObjective. With an 80% objective
    # the error budget is 20%, so a factor can be at most 5 (every pickup missed): the
    # workbook's 14.4 and 6 (made for 99.9% objectives) could never fire here. These read:
    # page when, over 1h (and the last 5m), at most 20% met; or over 6h (and 30m) at most 60%;
    # a ticket when over a day (and 2h) the objective itself is missed.
    burn_windows: tuple[BurnWindow, ...] = (
        BurnWindow("1h", "5m", 4, "critical", "2m"),
        BurnWindow("6h", "30m", 2, "critical", "15m"),
        BurnWindow("1d", "2h", 1, "warning", "1h"),
    )
    # A window with fewer pickups than this does not judge the objective (two pickups, one
    # missed, is not a 50% service level).
    burn_min_pickups: float = 10

    # `for`, severity and keep_firing_for of each alert. `critical` pages; `warning` goes to chat.
    alerts: dict[str, AlertSettings] = field(
        default_factory=lambda: {
            # Rides out a rolling restart or a single slow scrape.
            "ExporterDown": AlertSettings("5m", "critical"),
            # Credentials refused: they do not fix themselves; the cause of everything else.
            # Shorter than PollsFailing's, so the cause is notified first.
            "AuthFailing": AlertSettings("30s", "critical"),
            # After polls_failing_intervals failed polls; names the reason. A warning:
            # DataStale pages a minute later if it goes on.
            "PollsFailing": AlertSettings("1m", "warning"),
            # After stale_after (queue series gone): nobody sees the queue. keep_firing_for
            # bridges an exporter restart.
            "DataStale": AlertSettings("1m", "critical", "2m"),
            "ApiRateLimited": AlertSettings("10m", "warning"),
            # Token requests failing while the cached token still works: fix before it expires.
            "TokenRefreshFailing": AlertSettings("10m", "warning"),
            "LabelOverflow": AlertSettings("5m", "warning"),
            # Organisations exported by no replica any more (a shard died or left service
            # discovery): rides out a pod restart, and is shorter than ServiceLevelAtRisk's
            # keep_firing_for, so it inhibits the organisation's alerts before they resolve.
            "OrganisationLost": AlertSettings("1m30s", "critical"),
            # Replicas disagree during a rollout for a minute or two (kube-state-metrics waits
            # 15m; OrganisationLost pages for the organisations polled by nobody meanwhile).
            "ShardingMismatch": AlertSettings("5m", "warning"),
            "ShardMissing": AlertSettings("5m", "critical"),
            # Weeks of warning: `for` only rides out a certificate being swapped.
            "CertificateExpiring": AlertSettings("15m", "warning"),
            # The previous configuration keeps running; someone must read the error.
            "ConfigReloadFailed": AlertSettings("5m", "warning"),
            # Queue alerts keep firing 10m after their series vanish (stale_after), so the
            # exporter alerts can take over and inhibit them instead of a false "resolved".
            "BacklogHigh": AlertSettings("15m", "warning", "10m"),
            "BacklogGrowing": AlertSettings("15m", "warning", "10m"),
            "NotDraining": AlertSettings("10m", "warning", "10m"),
            # Pages before the breach: a short `for`, so the warning window is not used up
            # waiting (docs/alerts.md, "Effective warning"); keep_firing_for only bridges a scrape
            # gap until OrganisationLost or DataStale take over, so it ends soon after the
            # emails are picked up.
            "ServiceLevelAtRisk": AlertSettings("30s", "critical", "2m"),
            "ServiceLevelBreached": AlertSettings("2m", "critical", "10m"),
        }
    )

    # Where each alert's runbook_url points (a heading anchor per alert is appended): the Alerts
    # page of the documentation site (mkdocs.yml's site_url + "alerts/"; docs/alerts.md).
    runbook_url: str = (
        "https://alvaria-emailqueue-exporter.github.io/alvaria-emailqueue-exporter/alerts/"
    )
    # Your Grafana's base URL, for the dashboard_url annotation (the compose demo's by default).
    grafana_url: str = "http://localhost:3000"
    overview_uid: str = "alvaria-emailqueue-overview"
    health_uid: str = "alvaria-emailqueue-exporter-health"
    # The Prometheus scrape and evaluation intervals the timing tables in docs/alerts.md assume
    # (deploy/prometheus/prometheus.yml's values).
    scrape_interval: str = "30s"
    evaluation_interval: str = "30s"
    # Alertmanager timing of the generated example routing (deploy/alertmanager/alertmanager.yml):
    # every alert of this exporter...
    group_wait: str = "30s"
    group_interval: str = "5m"
    repeat_interval: str = "4h"
    # ... except the service-level alerts, which have their own route: a short group_wait for a
    # new group and a short group_interval for an alert joining a group already notified, so a
    # warning is not held back (docs/alerts.md, "Effective warning").
    service_level_group_wait: str = "10s"
    service_level_group_interval: str = "30s"
    # Group the service-level alerts per organisation (each notification lists the work types),
    # or fleet-wide (per alert and work type, listing the organisations): one notification for
    # a problem every organisation shares, instead of one per organisation.
    service_level_group_by: tuple[str, ...] = ("alertname", "org")

    def alert(self, name: str) -> AlertSettings:
        """The settings of alert `name` (without the AlvariaEmailQueue prefix)."""
        return self.alerts[name]

    def waiting_regex(self) -> str:
        """The waiting states as one anchored PromQL regex."""
        return "|".join(self.waiting_states)

    def max_burn_factor(self) -> float:
        """The factor no burn window may reach: 1 / the largest error budget in use."""
        objectives = [self.service_level_objective.default]
        objectives += [o.value for o in self.service_level_objective.overrides]
        return 1 / (1 - min(objectives))

    def check(self) -> list[str]:
        """Every inconsistency of this configuration, one message each (empty when sound)."""
        problems = []
        if not self.waiting_states:
            problems.append("waiting_states: at least one state is needed")
        for window in self.burn_windows:
            if window.factor >= self.max_burn_factor():
                problems.append(
                    f"burn_windows: factor {window.factor} over {window.long} can never fire "
                    f"with an error budget of {1 / self.max_burn_factor():.0%}"
                )
            if seconds(window.short) >= seconds(window.long):
                problems.append(f"burn_windows: short {window.short} >= long {window.long}")
        for name, settings in self.alerts.items():
            if settings.severity not in ("critical", "warning"):
                problems.append(f"alerts.{name}: severity {settings.severity!r}")
        return problems


CONFIG = Config()
