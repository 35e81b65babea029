"""Capacity forecast: demand per pool (demand.py) and the forecaster (model.py) whose structure each pool
earns by cross-validation (select.py) among the candidates in structures.py."""

from analyzer.forecast.demand import demand_series
from analyzer.forecast.model import CapacityForecaster

__all__ = ["CapacityForecaster", "demand_series"]
