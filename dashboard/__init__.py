"""The Dash dashboard: `fleetwise dashboard` (docs/dashboard.md).

Layout per page in `dashboard/pages/` (one module a page), data access in `dashboard/data/` (pure functions
from a Reader or a saved analyze run to frames, unit-tested on known values), figures in `dashboard/figures.py`.
Imports flow `dashboard -> analyzer -> agents`, never back.
"""
