"""The simulator's settings."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SimulatorConfig:
    """What to simulate and the credentials it accepts."""

    scenario: str = "steady"
    seed: int | None = None
    speed: float = 1.0
    page_cap: int = 1000
    emails: int = 100_000
    org_id: str = "demo"
    client_id: str = "demo"
    client_secret: str = "demo"  # noqa: S105 - the simulator's documented demo credential
    api_key: str = "demo"
    token_lifetime: float = 3600.0
    # Like Alvaria Cloud: a token request must name the organisation as `realm` (query or form).
    strict_realm: bool = False
    # Several organisations org-0001 ... in one process (0 = just `org_id`), each its own queue.
    orgs: int = 0
    api_key_per_org: bool = False  # keys key-org-0001 ... instead of the one `api_key`
    # With api_key_per_org: this many consecutive organisations share the key of the first.
    orgs_per_key: int = 1
    # The gateway's rate limit per API key: (requests, period in seconds), or None for no limit;
    # and the spelling of its headers (see simulator.ratelimit).
    rate_limit: tuple[int, float] | None = None
    rate_limit_headers: str = "ietf"

    @property
    def org_ids(self) -> tuple[str, ...]:
        """The organisations served, in order."""
        if not self.orgs:
            return (self.org_id,)
        return tuple(f"org-{i:04d}" for i in range(1, self.orgs + 1))

    def api_key_for(self, org: str) -> str:
        """The x-api-key the simulator accepts for `org`."""
        if not (self.orgs and self.api_key_per_org):
            return self.api_key
        first = (int(org.removeprefix("org-")) - 1) // self.orgs_per_key * self.orgs_per_key + 1
        return f"key-org-{first:04d}"
