"""Everything that produces and stores telemetry: collectors, schema, sinks, stores.

This package is the bottom layer (dashboard -> analyzer -> agents). The agent process
imports nothing heavier than pydantic and prometheus-client.
"""
