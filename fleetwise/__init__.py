"""fleetwise: the command line over agents, analyzer and dashboard."""

__version__ = "0.1.0"
