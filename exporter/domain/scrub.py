"""The one scrubber for text an upstream (or a peer) wrote, wherever it is shown.

Anything an upstream says can reach an output: an OAuth2 `error` code or `token_type` in a poll
error, the landing page, the log, `--check-connection`. An echoing or hostile endpoint can put
the client secret or API key it was sent into that text, forge lines with newlines and ANSI
escapes, or send a megabyte. `scrub` makes any such text safe to show:

- bounded: at most `limit` characters (plus a mask's), ending in ``~`` when cut (and only
  ``limit`` plus the longest secret's length is ever looked at, whatever the input's size);
- control and other non-printable characters (newlines, ESC, bidi overrides) become ``?``;
- every configured secret it contains (API key, client secret, static token, and the forms they
  travel in: form-encoded, the Basic credentials) is replaced by ``********``.

The secrets are the process's configured ones (`remember_secrets`, called at start and on each
reload), so the log processor, the landing page, the poller's error boundary and
`--check-connection` all mask the same set without being handed it.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable

MASK = "********"
# Shorter values are not masked: a real key or secret is longer, and masking a word as short as
# "demo" (the demo's credentials) would garble every log line that contains it.
MIN_MASKED_LENGTH = 6
# Characters of upstream text in an error reason or a log value, unless the caller says otherwise.
DEFAULT_LIMIT = 300

# A character the text cannot hold once control characters are gone: marks masked secrets.
_BLANK = "\x00"
_BLANKS = re.compile("\x00+")
_lock = threading.Lock()
_configured: frozenset[str] = frozenset()  # the configuration in force
_secrets: tuple[str, ...] = ()  # longest first, so a secret containing another is masked whole
_longest = 0


def remember_secrets(current: Iterable[str], *, keep_previous: bool = True) -> None:
    """Mask these values from now on, and (`keep_previous`) those of the configuration before:
    a reload's rotated secret may still be in an answer to a request sent before it."""
    global _secrets, _longest, _configured
    with _lock:
        values = frozenset(s for s in current if len(s) >= MIN_MASKED_LENGTH)
        masked = values | _configured if keep_previous else values
        _configured = values
        _secrets = tuple(sorted(masked, key=len, reverse=True))
        _longest = len(_secrets[0]) if _secrets else 0


def scrub(text: object, limit: int = DEFAULT_LIMIT, *, keep_newlines: bool = False) -> str:
    """`text` bounded to `limit` characters, control characters as ``?``, secrets masked."""
    value = text if isinstance(text, str) else str(text)
    secrets, longest = _secrets, _longest
    # A secret that starts before the cut is inside the window, so it is masked, not half shown.
    window = value[: limit + longest + 1]
    if not window.isprintable():
        window = "".join(
            c if c.isprintable() or (keep_newlines and c == "\n") else "?" for c in window
        )
    masked = False
    for secret in secrets:
        if secret in window:
            # Blanked in place first, so the cut below is where it would be without masking.
            window = window.replace(secret, _BLANK * len(secret))
            masked = True
    if len(window) > limit or len(value) > len(window):
        window = window[: max(limit - 1, 0)] + "~"
    return _BLANKS.sub(MASK, window) if masked else window
