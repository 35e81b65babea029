"""The agent's own health."""

from agents.schema.types import counter, gauge, measurement

AGENT = measurement(
    "agent",
    "Health of each collector of the agent.",
    ("collector",),
    gauge("up", "1 when the collector's last run succeeded.", type=int, telegraf="internal_gather.errors",
          node_exporter="node_scrape_collector_success"),
    gauge("duration_seconds", "Time the collector's last run took.",
          node_exporter="node_scrape_collector_duration_seconds"),
    counter("errors", "Runs that failed.", type=int, telegraf="internal_gather.errors"),
    gauge("points", "Points the last run produced.", type=int),
    gauge("last_success_timestamp_seconds", "When the collector last succeeded (epoch seconds)."),
)

MEASUREMENTS = (AGENT,)
