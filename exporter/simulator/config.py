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
