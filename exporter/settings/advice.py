"""Valid but probably unintended settings, reported as warnings at start-up."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from exporter.domain.names import EMAIL_TYPES, STATES
from exporter.settings.models import Settings, TargetSettings

# How late the shipped monitoring (deploy/prometheus, deploy/alertmanager) delivers
# AlvariaEmailQueueServiceLevelAtRisk after an email enters its warning window, at the latest:
# one scrape, one evaluation, the alert's `for`, and Alertmanager's group_interval for an alert
# joining a group already notified. tests/monitoring/test_alertmanager.py keeps these equal to the files.
ALERT_PIPELINE: tuple[tuple[str, float], ...] = (
    ("scrape", 30.0),
    ("evaluation", 30.0),
    ("for", 30.0),
    ("group_interval", 30.0),
)


def advice(settings: Settings) -> list[str]:
    """One sentence per setting that is allowed but likely a mistake."""
    notes = [
        f"waiting_states: {state!r} is not a state the API documents; check the spelling"
        for state in settings.waiting_states
        if state not in STATES
    ]
    for i, target in enumerate(settings.targets):
        notes += [
            f"targets[{i}].states: {state!r} is not a state the API documents"
            for state in target.states
            if state not in STATES
        ]
        if target.email_type and target.email_type not in EMAIL_TYPES:
            notes.append(
                f"targets[{i}].email_type: {target.email_type!r} is not an email type the API documents"
            )
    return notes + service_level_advice(settings) + cleartext_advice(settings)


def _loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _cleartext(url: str) -> bool:
    """Whether requests to `url` travel unencrypted beyond this host."""
    parts = urlsplit(url)
    return parts.scheme == "http" and not _loopback((parts.hostname or "").lower())


def _secrets_sent(target: TargetSettings, endpoint: str) -> str:
    if endpoint == "token_url":
        sent = ["api_key"]
        if target.client_secret is not None:
            sent.append("client_secret (in the Basic header or the form)")
        return ", ".join(sent)
    bearer = "the access_token" if target.access_token is not None else "the bearer token"
    return f"api_key and {bearer}"


def cleartext_advice(settings: Settings) -> list[str]:
    """Plain http:// to a host other than this one: the credentials would travel in clear."""
    notes = []
    for i, target in enumerate(settings.targets):
        where = f"targets[{i}]." if len(settings.targets) > 1 else ""
        for name, url in (("token_url", target.token_url), ("api_url", target.api_url)):
            if name == "token_url" and target.access_token is not None:
                continue  # no token requests are made
            if _cleartext(url):
                host = urlsplit(url).hostname
                notes.append(
                    f"{where}{name}: plain http:// to {host}: {_secrets_sent(target, name)} "
                    "would travel unencrypted; use https://"
                )
    return notes


def service_level_advice(settings: Settings) -> list[str]:
    """Service-level rules that can never apply, and warnings that are not shorter than targets."""
    notes = []
    catch_all: int | None = None
    for i, rule in enumerate(settings.service_levels):
        where = f"service_levels[{i}]"
        if catch_all is not None:
            notes.append(f"{where} never applies: service_levels[{catch_all}] matches every group")
        elif rule.match.work_type in (None, ".*") and rule.match.email_type in (None, ".*"):
            catch_all = i
        target = settings.service_level_target if rule.target is None else rule.target
        warning = settings.service_level_warning if rule.warning is None else rule.warning
        if warning >= target:
            notes.append(
                f"{where}: warning ({warning:g}s) is not shorter than the target ({target:g}s): "
                "every waiting email is at risk from the moment it is queued"
            )
        if rule.warning is not None:
            notes += _late_warning(f"{where}.warning", rule.warning)
    if settings.service_level_warning >= settings.service_level_target:
        notes.append(
            "service_level_warning is not shorter than service_level_target: every waiting email "
            "of the default groups is at risk from the moment it is queued"
        )
    return notes + _late_warning("service_level_warning", settings.service_level_warning)


def _late_warning(where: str, warning: float) -> list[str]:
    """A warning the shipped alerting pipeline cannot deliver before the breach (0: none asked)."""
    delay = sum(seconds for _, seconds in ALERT_PIPELINE)
    if not 0 < warning < delay:
        return []
    steps = " + ".join(f"{name} {seconds:g}s" for name, seconds in ALERT_PIPELINE)
    return [
        f"{where} ({warning:g}s) is shorter than the {delay:g}s the shipped alerting takes to "
        f"deliver AlvariaEmailQueueServiceLevelAtRisk ({steps}): the page would come after the "
        f"breach; what reaches people is warning - {delay:g}s"
    ]
