"""fleetwise: the command line over agents, analyzer and dashboard."""

from agents import __version__

__all__ = ["__version__"]
