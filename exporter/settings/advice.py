"""Valid but probably unintended settings, reported as warnings at start-up."""

from __future__ import annotations

from exporter.names import EMAIL_TYPES, STATES
from exporter.settings.models import Settings


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
    return notes
