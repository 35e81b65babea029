"""Everything that produces and stores telemetry: collectors, schema, sinks, stores.

This package is the bottom layer (dashboard -> analyzer -> agents). The agent process
imports nothing heavier than pydantic and prometheus-client.
"""

# The distribution's version lives in the bottom layer so that the analyzer (which records it in every run)
# need not import the command line; fleetwise.__version__ is this value. Keep it equal to pyproject's.
__version__ = "0.1.0"
