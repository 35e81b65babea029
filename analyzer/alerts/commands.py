"""What `fleetwise alerts export|run|suggest` do once their arguments are parsed (fleetwise/cli.py holds
the parsers). Each returns the exit status: 2 for a bad rule file or argument, 1 for a runtime error."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from pathlib import Path

from analyzer.alerts.rules import RuleFileError, load_rules
from analyzer.state import atomic_write

EXIT_CONFIG = 2
WEBHOOK_ENV = "FLEETWISE_ALERTS_WEBHOOK"
log = logging.getLogger("fleetwise.alerts")


def _fail(cmd: str, message: str, status: int) -> int:
    print(f"fleetwise alerts {cmd}: {' '.join(str(message).split())}", file=sys.stderr)
    return status


def _write(text: str, out: str | None) -> None:
    if out in (None, "-"):
        sys.stdout.write(text)
        return
    atomic_write(Path(out), text)


def _missing_store(store: str) -> str | None:
    """An embedded store that is not a directory: nothing to evaluate, and no reason to create one."""
    if store.startswith("embedded:") and not Path(store[len("embedded:"):]).expanduser().is_dir():
        return f"{store}: no such store directory"
    return None


def export(rules_file: str | None, fmt: str, out: str | None, job_label: str) -> int:
    from analyzer.alerts.promql import export_prometheus

    try:
        rules = load_rules(rules_file)
    except RuleFileError as e:
        return _fail("export", str(e), EXIT_CONFIG)
    if fmt != "prometheus":
        return _fail("export", f"unknown format {fmt!r}: use prometheus", EXIT_CONFIG)
    try:
        _write(export_prometheus(rules, job_label), out)
    except OSError as e:
        return _fail("export", f"{out}: {e.strerror or e}", 1)
    return 0


def run(store: str, rules_file: str | None, webhook_url: str | None, state_dir: str, once: bool,
        interval: float, at: str | None, external_url: str, resend: float, settings=None) -> int:
    from agents.query import open_reader
    from agents.query.base import to_timestamp
    from agents.stores.url import StoreURLError
    from analyzer.alerts.engine import Evaluator
    from analyzer.alerts.notify import Webhook
    from analyzer.alerts.state import StateDir, StateDirError

    try:
        rules = load_rules(rules_file)
    except RuleFileError as e:
        return _fail("run", str(e), EXIT_CONFIG)
    if interval <= 0 or resend < 0:
        return _fail("run", "--interval must be positive and --resend not negative", EXIT_CONFIG)
    if at is not None and not once:
        return _fail("run", "--at needs --once", EXIT_CONFIG)
    try:
        when = to_timestamp(at) if at is not None else None
    except ValueError:
        return _fail("run", f"--at {at!r}: not a time (use ISO 8601, e.g. 2026-11-30T06:00:00Z)", EXIT_CONFIG)
    if _missing_store(store):
        return _fail("run", _missing_store(store), EXIT_CONFIG)
    if store.startswith(("prometheus:", "prometheuss:")):
        return _fail("run", "a Prometheus evaluates the rules itself: load the output of "
                     "`fleetwise alerts export --format prometheus` into it (rule_files)", EXIT_CONFIG)
    url = webhook_url or os.environ.get(WEBHOOK_ENV) or None
    try:
        hook = Webhook(url, ca_file=getattr(settings, "ca_file", None)) if url else None
        reader = open_reader(store, settings)
    except (StoreURLError, ValueError) as e:
        return _fail("run", str(e), EXIT_CONFIG)
    evaluator = Evaluator(rules, reader, StateDir(state_dir), hook, external_url, resend)
    stop = threading.Event()
    if not once and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
    log.info("evaluating %d rules from %s against %s every %ss", len(rules.rules), rules.path, store, interval)
    try:
        while True:
            import pandas as pd

            outcome = evaluator.step(when if when is not None else pd.Timestamp.now(tz="UTC"))
            if once:
                print(f"{len(outcome.fired)} fired, {len(outcome.resolved)} resolved, {outcome.sent} sent"
                      + (f", {len(outcome.failed_rules)} rules failed" if outcome.failed_rules else "")
                      + (f"; {outcome.send_error}" if outcome.send_error else ""))
                return 0 if outcome.ok else 1
            if stop.wait(interval):
                return 0
    except StateDirError as e:
        return _fail("run", str(e), 1)
    except KeyboardInterrupt:
        return 130
    finally:
        reader.close()


def suggest(store: str, out: str | None, since: str, until: str | None, settings=None) -> int:
    from agents.query import QueryError, open_reader
    from agents.stores.url import StoreURLError
    from analyzer.alerts.suggest import NoBaseline, suggest_rules

    if _missing_store(store):
        return _fail("suggest", _missing_store(store), EXIT_CONFIG)
    try:
        reader = open_reader(store, settings)
    except (StoreURLError, ValueError) as e:
        return _fail("suggest", str(e), EXIT_CONFIG)
    try:
        text = suggest_rules(reader, since=since, until=until, source=store)
    except ValueError as e:
        return _fail("suggest", str(e), EXIT_CONFIG)
    except NoBaseline as e:
        return _fail("suggest", str(e), 1)
    except (QueryError, OSError) as e:
        return _fail("suggest", f"cannot read {store}: {e}", 1)
    finally:
        reader.close()
    try:
        _write(text, out)
    except OSError as e:
        return _fail("suggest", f"{out}: {e.strerror or e}", 1)
    return 0
