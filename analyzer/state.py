"""The versioned state directory: what `fleetwise analyze` fitted, read by the recommender, dashboard and report.

    STATE/
      runs/20261127T074512.082311Z-3f9a1c/     one directory per analyze run
        manifest.json                   what was fitted (or not, and why), from which data, how well
        models/<name>.joblib            one pickle per fitted model (joblib.dump)
        tables/<name>.parquet           tables the readers need (job table, efficiency)
      latest                            the run id of the newest (by start) COMPLETED run

A run writes into its own directory and only then replaces `latest` (write a temporary file, os.replace),
so a reader never sees a half-written run and a crashed run leaves `latest` where it was. Runs beyond
`keep` are pruned, oldest first, never the one `latest` names.

Pickles execute code when loaded: the state directory is created private to its owner (0700) and each
model file's SHA-256 is checked against the manifest before it is loaded, so a truncated or swapped file
is refused instead of unpickled.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import math
import os
import re
import secrets
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
DEFAULT_STATE_DIR = Path("var/state")
DEFAULT_KEEP = 10
LATEST = "latest"
MANIFEST = "manifest.json"
OWNER = ".owner"  # pid of the process writing a run, so prune() can tell a crashed run from one in flight
_RUN_ID = re.compile(r"^\d{8}T\d{6}\.\d{6}Z-[0-9a-f]{6}$")
_SAFE = re.compile(r"[^A-Za-z0-9_.=-]+")


class StateError(RuntimeError):
    """The state directory has no usable run, or a run is damaged."""


def new_run_id(now: dt.datetime | None = None) -> str:
    """UTC timestamp to the microsecond (ids sort chronologically, so pruning and `latest` agree even for runs
    in the same second) plus a short random hash (two processes in the same microsecond still differ)."""
    now = now or dt.datetime.now(dt.UTC)
    return now.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%S.%fZ") + "-" + secrets.token_hex(3)


def safe_store_url(url: str | None) -> str | None:
    """The store URL as it may be written down: no user name, never a secret."""
    if url is None:
        return None
    try:
        from agents.stores.url import parse_store_url

        return str(parse_store_url(url))
    except ValueError:
        return "<unparsable store URL>"


def _file_name(name: str) -> str:
    """A file name for a model or table name; names with odd characters get a hash so two never collide."""
    slug = _SAFE.sub("_", name).strip("._") or "model"
    if slug != name:
        slug = f"{slug[:80]}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"
    return slug


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def jsonable(value: Any) -> Any:
    """Manifest values: JSON types as they are, numpy scalars unwrapped, NaN/inf as null, the rest as repr."""
    if value is None or isinstance(value, (bool, str, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    item = getattr(value, "item", None)  # numpy scalar
    if callable(item) and getattr(value, "shape", None) == ():
        return jsonable(item())
    isoformat = getattr(value, "isoformat", None)  # pandas Timestamp
    if callable(isoformat):
        return isoformat()
    return repr(value)


def describe_model(estimator: Any) -> dict[str, Any]:
    """What the manifest says about a fitted estimator, from the conventions every model follows."""
    cls = type(estimator)
    get_params = getattr(estimator, "get_params", None)
    try:
        params = get_params(deep=False) if callable(get_params) else {}
    except Exception:  # a get_params that fails must not lose the fitted model
        params = {}
    minimum = getattr(estimator, "min_points", None)
    if minimum is None:
        minimum = getattr(cls, "MIN_POINTS", None)
    scores = getattr(estimator, "scores_", None)
    return {
        "class": f"{cls.__module__}.{cls.__qualname__}",
        "parameters": jsonable(params),
        "score": jsonable(getattr(estimator, "score_", None)),
        "scores": jsonable(scores) if scores is not None else None,
        "n_train": jsonable(getattr(estimator, "n_train_", None)),
        "minimum": jsonable(minimum),
    }


@dataclass
class RunWriter:
    """One analyze run being written; nothing is visible to readers until commit()."""

    state: StateDir
    run_id: str
    path: Path
    manifest: dict[str, Any] = field(default_factory=dict)

    def save_model(self, name: str, estimator: Any, *, window: tuple[Any, Any] | None = None,
                   **extra: Any) -> dict[str, Any]:
        """Pickle a fitted estimator and record it (class, parameters, score, n_train, minimum, window)."""
        import joblib

        file = Path("models") / f"{_file_name(name)}.joblib"
        target = self.path / file
        target.parent.mkdir(parents=True, exist_ok=True)
        joblib.dump(estimator, target)
        entry = {"status": "fitted", **describe_model(estimator),
                 "window": self._window(window), "fitted_at": _now_iso(),
                 "file": file.as_posix(), "sha256": _sha256(target), **jsonable(extra)}
        self.manifest["models"][name] = entry
        return entry

    def skip_model(self, name: str, reason: str, *, model_class: str | None = None, **extra: Any) -> dict[str, Any]:
        """Record a model that was not fitted and why (usually an InsufficientData message)."""
        entry = {"status": "skipped", "class": model_class, "reason": reason, **jsonable(extra)}
        self.manifest["models"][name] = entry
        return entry

    def save_table(self, name: str, frame: Any) -> dict[str, Any]:
        """Write a pandas DataFrame as Parquet in the run (the dashboard and report read these)."""
        file = Path("tables") / f"{_file_name(name)}.parquet"
        target = self.path / file
        target.parent.mkdir(parents=True, exist_ok=True)
        frame.to_parquet(target, index=False)
        entry = {"file": file.as_posix(), "rows": len(frame), "columns": [str(c) for c in frame.columns]}
        self.manifest["tables"][name] = entry
        return entry

    def record_step(self, name: str, status: str, seconds: float, reason: str | None = None,
                    **extra: Any) -> None:
        self.manifest["steps"][name] = {"status": status, "seconds": round(seconds, 3),
                                        **({"reason": reason} if reason else {}), **jsonable(extra)}

    def _window(self, window: tuple[Any, Any] | None) -> dict[str, Any] | None:
        if window is None:
            return self.manifest.get("window")
        return {"start": jsonable(window[0]), "end": jsonable(window[1])}

    def commit(self) -> SavedRun:
        """Write the manifest, then point `latest` at this run (atomically) unless a newer run already completed,
        then prune old runs."""
        self.manifest["completed_at"] = _now_iso()
        atomic_write(self.path / MANIFEST, json.dumps(self.manifest, indent=2, sort_keys=True) + "\n")
        (self.path / OWNER).unlink(missing_ok=True)
        current = self.state.latest_id()
        # A run that started before the current latest but finished after it must not move `latest` back.
        if current is None or current < self.run_id:
            atomic_write(self.state.root / LATEST, self.run_id + "\n")
        self.state.prune()
        return SavedRun(self.run_id, self.path, self.manifest)

    def abandon(self) -> None:
        """Remove a run that failed before commit; `latest` never pointed at it."""
        shutil.rmtree(self.path, ignore_errors=True)


@dataclass
class SavedRun:
    """A completed run as readers see it: `.manifest` and `.model(name)`."""

    run_id: str
    path: Path
    manifest: dict[str, Any]

    def model_names(self, status: str | None = "fitted") -> list[str]:
        return sorted(n for n, m in self.manifest.get("models", {}).items() if status is None or m["status"] == status)

    def model(self, name: str) -> Any:
        """The fitted estimator saved under `name` (KeyError naming the reason when it was not fitted)."""
        import joblib

        entry = self.manifest.get("models", {}).get(name)
        if entry is None:
            raise KeyError(f"run {self.run_id} has no model {name!r}; it has {', '.join(self.model_names(None))}")
        if entry["status"] != "fitted":
            raise KeyError(f"model {name!r} was not fitted in run {self.run_id}: {entry.get('reason')}")
        target = self.path / entry["file"]
        if _sha256(target) != entry["sha256"]:
            raise StateError(f"{target}: contents do not match the manifest's checksum; refusing to unpickle it")
        return joblib.load(target)

    def table(self, name: str):
        """A table saved with the run, as a pandas DataFrame."""
        import pandas as pd

        entry = self.manifest.get("tables", {}).get(name)
        if entry is None:
            raise KeyError(f"run {self.run_id} has no table {name!r}; it has "
                           f"{', '.join(sorted(self.manifest.get('tables', {})))}")
        return pd.read_parquet(self.path / entry["file"])


class StateDir:
    """The state directory: start runs, find the latest completed one, prune old ones."""

    def __init__(self, root: str | os.PathLike[str] = DEFAULT_STATE_DIR, keep: int = DEFAULT_KEEP) -> None:
        if keep < 1:
            raise ValueError(f"keep={keep}: keep at least the latest run")
        self.root = Path(root)
        self.keep = keep

    @property
    def runs_dir(self) -> Path:
        return self.root / "runs"

    def new_run(self, *, store: str | None = None, window: tuple[Any, Any] | None = None,
                **meta: Any) -> RunWriter:
        from agents import __version__

        self.prepare()
        while True:
            run_id = new_run_id()
            path = self.runs_dir / run_id
            try:
                path.mkdir(mode=0o700)
                break
            except FileExistsError:  # same microsecond and same 24-bit hash: draw again
                continue
        (path / OWNER).write_text(f"{os.getpid()}\n")
        manifest = {
            "format_version": FORMAT_VERSION, "run_id": run_id, "fleetwise_version": __version__,
            "started_at": _now_iso(), "store": safe_store_url(store),
            "window": None if window is None else {"start": jsonable(window[0]), "end": jsonable(window[1])},
            "steps": {}, "models": {}, "tables": {}, **jsonable(meta),
        }
        return RunWriter(self, run_id, path, manifest)

    def prepare(self) -> None:
        """Create the directory (owner-only). StateError names the state directory when that cannot be done,
        so a bad --state is never blamed on the store."""
        try:
            self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
            self.runs_dir.mkdir(exist_ok=True, mode=0o700)
        except OSError as e:
            raise StateError(f"state directory {self.root}: {_os_reason(e)}") from None
        if not os.access(self.runs_dir, os.W_OK | os.X_OK):
            raise StateError(f"state directory {self.root}: not writable")

    def latest_id(self) -> str | None:
        if self.root.exists() and not self.root.is_dir():
            raise StateError(f"state directory {self.root}: not a directory")
        try:
            run_id = (self.root / LATEST).read_text().strip()
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as e:
            raise StateError(f"{self.root / LATEST}: {_os_reason(e)}") from None
        if not _RUN_ID.match(run_id):
            raise StateError(f"{self.root / LATEST}: {run_id[:40]!r} is not a run id")
        return run_id

    def run_ids(self) -> list[str]:
        """Completed runs (with a manifest), oldest first."""
        if not self.runs_dir.is_dir():
            return []
        return sorted(p.name for p in self.runs_dir.iterdir()
                      if _RUN_ID.match(p.name) and (p / MANIFEST).is_file())

    def load(self, run_id: str) -> SavedRun:
        if not _RUN_ID.match(run_id):
            raise StateError(f"{run_id!r} is not a run id")
        path = self.runs_dir / run_id
        try:
            manifest = json.loads((path / MANIFEST).read_text())
        except FileNotFoundError:
            raise StateError(f"run {run_id} in {self.root} is missing or incomplete") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise StateError(f"{path / MANIFEST}: not valid JSON ({e})") from None
        except OSError as e:
            raise StateError(f"{path / MANIFEST}: {_os_reason(e)}") from None
        if manifest.get("format_version") != FORMAT_VERSION:
            raise StateError(f"{path / MANIFEST}: format version {manifest.get('format_version')!r}, "
                             f"this fleetwise reads {FORMAT_VERSION}")
        return SavedRun(run_id, path, manifest)

    def latest(self) -> SavedRun:
        run_id = self.latest_id()
        if run_id is None:
            raise StateError(f"no completed analyze run in {self.root}: run `fleetwise analyze` first")
        return self.load(run_id)

    def prune(self) -> list[str]:
        """Delete completed runs beyond `keep` (oldest first) and abandoned partial runs older than the latest."""
        latest = self.latest_id()
        done = self.run_ids()
        doomed = [r for r in done[:-self.keep] if r != latest] if len(done) > self.keep else []
        if latest is not None and self.runs_dir.is_dir():
            doomed += [p.name for p in self.runs_dir.iterdir()
                       if _RUN_ID.match(p.name) and p.name < latest and _abandoned(p)]
        for run_id in doomed:
            shutil.rmtree(self.runs_dir / run_id, ignore_errors=True)
        if doomed:
            log.info("pruned %d old run(s) from %s", len(doomed), self.root)
        return sorted(doomed)


def _os_reason(e: Exception) -> str:
    return (e.strerror if isinstance(e, OSError) and e.strerror else None) or str(e)


def _abandoned(run: Path) -> bool:
    """A run directory without a manifest whose writer is gone (its process has exited), or, when the owner is
    unknown, that has not been touched for a day. A run still being written by another process is left alone."""
    if (run / MANIFEST).is_file():
        return False
    try:
        pid = int((run / OWNER).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        try:
            return time.time() - run.stat().st_mtime > 86400
        except FileNotFoundError:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


def load_latest(state_dir: str | os.PathLike[str] = DEFAULT_STATE_DIR) -> SavedRun:
    """The newest completed analyze run: `.manifest` (dict) and `.model(name)`, `.table(name)`."""
    return StateDir(state_dir).latest()


def atomic_write(path: Path, text: str) -> None:
    """Replace path with text: a temporary file in the same directory, fsynced, renamed over it, so a reader
    or a crash sees the old file or the new one, never half of one. A path that is a device or a pipe
    (/dev/null, /dev/stdout, a FIFO) is written through: renaming over it would replace the device itself."""
    if path.exists() and not path.is_file():
        path.write_text(text)
        return
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
