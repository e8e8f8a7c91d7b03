"""The domain: the types, names and errors every stage shares; imports nothing of ours.

Modules:
- ``models``: frozen types shared by the client, the aggregation and the collectors
- ``names``: metric names, label names and the API's documented enumerations (the contract)
- ``errors``: the exception tree, each error with the ``reason`` label it is counted under
- ``scrub``: the one scrubber of upstream text shown anywhere (bounded, no control characters,
  configured secrets masked)
- ``collector``: the garbage collector paused while a worker thread builds something large
"""
