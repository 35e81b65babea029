"""Workload characterization, performance models, forecasts and the state they are saved in."""
