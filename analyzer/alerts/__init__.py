"""Alert rules (docs/alerts.md): the YAML rule format and its expression language (rules.py, expr.py), the
shipped default pack (rules/default.yaml), the Prometheus export (promql.py), the built-in evaluator over
the query API (evaluate.py, engine.py, state.py, notify.py), the alert history table (history.py) and
per-pool thresholds learned from the fleet (suggest.py). commands.py runs `fleetwise alerts ...`."""
