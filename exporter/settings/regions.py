"""Alvaria Cloud regions: each one's token host and API domain (SPEC §9, from Alvaria's docs)."""

from __future__ import annotations

from typing import Final, Literal, NamedTuple

# Keep in step with REGIONS below (tests/settings/test_sources.py checks that they agree).
Region = Literal["us", "eu", "uk", "ca", "azure-us", "us-east-tri", "gcp"]
TOKEN_PATH: Final = "/tokenservice/oauth2/access_token"  # noqa: S105 - a URL path, not a secret


class Hosts(NamedTuple):
    """Where a region's token service and API live."""

    token_host: str
    api_domain: str


REGIONS: Final[dict[str, Hosts]] = {
    "us": Hosts("myaspect.id.aspect-cloud.net", "via.aspect-cloud.net"),
    "eu": Hosts("myaspect.eu.id.aspect-cloud.net", "via.aspect-cloud.net"),
    "uk": Hosts("myaspect.uk.id.aspect-cloud.net", "via.aspect-cloud.net"),
    "ca": Hosts("myaspect.ca.id.aspect-cloud.net", "via.aspect-cloud.net"),
    "azure-us": Hosts("myaspect.us-a.id.aspect-cloud.net", "via.aspect-cloud.net"),
    "us-east-tri": Hosts("myaccount.tri1.wss.alvaria.cloud", "wos.alvaria.cloud"),
    "gcp": Hosts("myaccount.dsm.sre.alvaria.cloud", "apc.alvaria.cloud"),
}


def token_url(region: str) -> str:
    """The default token endpoint of `region` ("" for an unknown region: validation reports it)."""
    hosts = REGIONS.get(region)
    return f"https://{hosts.token_host}{TOKEN_PATH}" if hosts else ""


TOKEN_URLS: Final[dict[str, str]] = {region: token_url(region) for region in REGIONS}


def api_url(region: str, org_id: str) -> str:
    """The default API base of `org_id` in `region`."""
    hosts = REGIONS.get(region)
    return f"https://{org_id}.{hosts.api_domain}" if hosts else ""
