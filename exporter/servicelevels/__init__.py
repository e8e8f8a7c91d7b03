"""Service levels: pure rules on time passed in.

Modules:
- ``calendar``: the clocks ages are measured on: continuous, or business hours in a time zone
- ``policy``: which target applies to a group, and when each waiting email breaches it
- ``patterns``: the rules' ``match`` patterns as RE2 full matches, linear in the label's length
"""
