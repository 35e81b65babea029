"""The one schema: every measurement, field and tag that fleetwise writes or reads.

Agents, the simulator, trace loaders, stores and the analyzer all use it. Field names carry base
units (_bytes, _seconds, _watts, _joules, _ratio for 0-1 fractions); each field says whether it is a
gauge, a rate the agent computed, or a cumulative counter. Respecting InfluxDB 3: a measurement's
tag keys are fixed, and no name is both a tag and a field.
"""

from agents.schema import accelerators, agent, host, interconnect, jobs, spool, storage, traces
from agents.schema.types import Field, Kind, Measurement

MEASUREMENTS: dict[str, Measurement] = {
    m.name: m
    for module in (host, accelerators, interconnect, storage, jobs, agent, spool, traces)
    for m in module.MEASUREMENTS
}


def get(name: str) -> Measurement:
    try:
        return MEASUREMENTS[name]
    except KeyError:
        raise KeyError(f"unknown measurement {name!r}; known: {', '.join(sorted(MEASUREMENTS))}") from None


__all__ = ["MEASUREMENTS", "Field", "Kind", "Measurement", "get"]
