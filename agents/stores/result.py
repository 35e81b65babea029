"""What a store answered to one batch; the shipper decides from it whether to ack, retry or dead-letter."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum


class Outcome(Enum):
    OK = "ok"  # acknowledged: delete from the spool
    RETRY = "retry"  # outage, timeout, 5xx, auth, missing database: keep the batch, back off
    REJECTED = "rejected"  # the data is bad (4xx): dead-letter what is bad, never block the queue


@dataclass(frozen=True)
class SendResult:
    outcome: Outcome
    message: str = ""  # safe to log: never contains a credential
    status: int = 0  # HTTP status, 0 without one
    rejected: dict[bytes, str] = field(default_factory=dict)  # bad line -> server's reason, when identifiable


OK = SendResult(Outcome.OK)
