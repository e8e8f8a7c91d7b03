"""Upstream: the Alvaria EmailQueue API, from one bounded request to decoded pages of emails.

Modules:
- ``transport``: one HTTP request with bounded time and size, retried with backoff
- ``auth``: bearer tokens: a static token, or OAuth2 client credentials cached until expiry
- ``client``: paging, concurrency and 401 handling
- ``decode``: one ``EmailList`` page into `Email`s, memory bounded by the page asked for
- ``limit_headers``: the gateway's rate-limit headers (``RateLimit-*``, ``X-RateLimit-*``), parsed bounded
- ``ratelimit``: the request rate limiter per API key (``max_requests_per_second``) and the
  gateway's announced windows
- ``targets``: what one organisation's settings mean to the token provider and the client
- ``first_sight``: the fields read only when an email is new (threadId, sentTime, receivedTime)
"""
