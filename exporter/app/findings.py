"""What the answers `--check-connection` gets mean, in words a user can act on.

Pure functions of statuses, counts and the decoded token; `exporter.app.check_connection` does the talking.
Only statuses, counts, field presence and short OAuth2 codes go into the text: never the token,
a credential or an item's personal fields. What an upstream wrote (`scope`, `token_type`) only
ever goes through `exporter.domain.scrub.scrub`: bounded, no control characters, secrets masked.
"""

from __future__ import annotations

import math

from exporter.domain.errors import PollError
from exporter.domain.scrub import scrub
from exporter.upstream.auth import TokenResponse
from exporter.upstream.client import Page

REQUIRED_SCOPE = "emailqueueapi"


def cut(text: str, limit: int = 80) -> str:
    """`text` made safe to print and shortened to `limit` characters, ending in `~` when cut."""
    return scrub(text, limit)


def token_problems(decoded: TokenResponse) -> list[str]:
    """Why a token that was issued is still no use for the EmailQueue API."""
    problems = []
    if not decoded.bearer:
        problems.append(f"token_type {cut(str(decoded.token_type), 20)!r} is not Bearer")
    if decoded.scopes is not None and REQUIRED_SCOPE not in decoded.scopes:
        problems.append(f"scope {REQUIRED_SCOPE} not granted: ask Alvaria to grant it")
    return problems


def token_warnings(decoded: TokenResponse) -> list[str]:
    """What about an issued, usable token the user should know (its lifetime is a guess)."""
    _, problem = decoded.lifetime()
    return [problem] if problem else []


def connect_hint(problem: str) -> str:
    """What to check when a connection failed: `problem` is the OS reason or the TLS reason."""
    text = problem.lower()
    if "wrong_version_number" in text or "record layer failure" in text:
        return "the port answered plain HTTP, not TLS: check the URL's scheme (https://) and port"
    if "refused" in text:
        return (
            "nothing accepts connections there: check the URL's port and the firewall, or set "
            "HTTPS_PROXY when the way out is through a proxy"
        )
    if "unreachable" in text or "no route" in text:
        return "no network route to the host: check the firewall, or set HTTPS_PROXY (NO_PROXY)"
    if "reset" in text:
        return "the connection was cut: a firewall or proxy in between; set HTTPS_PROXY if needed"
    return "check the URL's scheme and port, the firewall and any proxy (HTTPS_PROXY, NO_PROXY)"


def token_hint(exc: PollError, realm: str, scope: str) -> str:
    """What to check when the token request failed."""
    if exc.reason == "auth" and "token_type" in str(exc):
        return "the exporter sends tokens as Bearer only: ask Alvaria for a Bearer token"
    if exc.reason == "auth" and "invalid_scope" in str(exc):
        return f"the client may not request scope {cut(scope)}: ask Alvaria to grant it"
    if exc.reason == "auth" and exc.status == 403:
        return "check api_key (sent as x-api-key) and the scope the client may request"
    if exc.reason == "auth":
        return f"check client_id, client_secret, token_auth_method and token_realm (sent: {realm})"
    if exc.status == 404:
        return "no token service at this path: check region or token_url"
    if exc.reason == "http_other":
        return "redirects are not followed: check token_url (https, host and path)"
    if exc.reason in ("connection", "timeout"):
        return "check the host name, proxy (HTTPS_PROXY, NO_PROXY) and firewall"
    if exc.reason == "http_5xx":
        return "the token service failed: try again later"
    return "is token_url the token endpoint?"


def page_hint(exc: PollError) -> str:
    """What to check when the first page failed."""
    if exc.status == 404:
        return "organisation not found: check org_id (also in the API host), region or api_url"
    if exc.reason == "auth":
        return "the API refused the token: check api_key and scope"
    if exc.reason in ("connection", "timeout"):
        return "check the host name, proxy (HTTPS_PROXY, NO_PROXY) and firewall"
    if exc.status == 400:
        return "check the filters email_type, work_type_ids and states"
    if exc.reason == "http_other":
        return "redirects are not followed: check api_url (https, host, no path)"
    if exc.reason == "decode":
        return "the answer was not an email list: is api_url the API (not a portal or proxy page)?"
    return "is api_url the API base (without the /via/v2 path)?"


def page_notes(page: Page, asked: int, extended: bool) -> tuple[list[str], bool]:
    """What the first page says, and whether any of it needs the user's attention."""
    total, returned = page.total_items, page.returned
    warn = False
    notes = [f"totalItems {'missing' if total is None else total}"]
    notes.append(f"{returned} items for maxResults={asked}")
    if returned >= asked:
        notes.append("no page cap below page_size")
    elif total is not None and returned < total:
        pages = math.ceil(total / returned) if returned else 0
        notes.append(f"page cap {returned} < page_size {asked}: {pages} requests per poll")
        warn = True
    else:
        notes.append("whole list in one page")
    named = sum(1 for email in page.emails if email.work_type_name)
    if not extended:
        notes.append("workTypeName not asked for (extended_info false)")
    elif not page.emails:
        notes.append("no items to look for workTypeName")
    elif named == 0:
        notes.append("workTypeName missing: work_type falls back to workTypeId")
        warn = True
    else:
        notes.append(f"workTypeName on {named}/{len(page.emails)} items")
    invalid = sum(page.invalid.values())
    if invalid:
        notes.append(f"{invalid} unusable items")
        warn = True
    return notes, warn
