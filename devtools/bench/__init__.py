"""Measurements: `make bench` (cold starts, AWS calls, latency, sizes) and `make load`.

May import: anything in devtools; it builds the bundle with the template's own Makefiles.
"""
