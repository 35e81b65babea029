"""Capacity forecast: demand per pool (demand.py) and the seasonal-trend forecaster (model.py)."""

from analyzer.forecast.demand import accelerator_type, demand_series
from analyzer.forecast.model import CapacityForecaster

__all__ = ["CapacityForecaster", "accelerator_type", "demand_series"]
