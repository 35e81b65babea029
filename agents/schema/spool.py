"""The agent's durable spool: what waits to be stored, what was dropped, what the store refused."""

from agents.schema.types import counter, gauge, measurement

SPOOL = measurement(
    "spool",
    "The on-disk queue between the agent and its store (one series per store).",
    ("store",),
    gauge("queued_batches", "Batches committed to the spool and not yet acknowledged by the store.", type=int,
          telegraf="internal_write.buffer_size"),
    gauge("queued_bytes", "Payload bytes waiting in the spool.", type=int),
    counter("dropped_batches", "Oldest batches dropped because the spool reached spool_max_bytes.", type=int,
            telegraf="internal_write.metrics_dropped"),
    counter("dropped_points", "Points in the dropped batches.", type=int),
    counter("dead_letter_points", "Points the store refused as malformed, kept in the dead_letter table.", type=int),
    counter("sent_points", "Points the store acknowledged.", type=int, telegraf="internal_write.metrics_written"),
    gauge("last_success_timestamp_seconds", "When the store last acknowledged a batch (epoch seconds; 0: never)."),
)

MEASUREMENTS = (SPOOL,)
