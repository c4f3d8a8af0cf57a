"""Measurement side of cutover.

One probe = one module with one entry point and a typed result. Probes never
print and never import ``harness``: they report progress through the callback
protocol in :mod:`probes.events` and return dataclasses with ``to_dict()``.
"""
