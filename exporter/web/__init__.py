"""The web side: the exporter's own HTTP server and what it applies to every request.

Modules:
- ``server``: the app: ``/metrics``, ``/healthz``, ``/readyz``, the landing page; owns the polls
- ``exposition``: ``/metrics``: content negotiation, one render at a time off the event loop
- ``connections``: bounds on the exporter's own HTTP connections
- ``landing``: the HTML landing page at ``/``
- ``access``: the web config applied: basic auth, headers, TLS
- ``basic_auth``: HTTP basic auth against bcrypt hashes, bounded under a flood
"""
