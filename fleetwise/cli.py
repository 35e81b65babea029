"""The `fleetwise` command. Every subcommand imports what it needs when it runs, so that
`fleetwise agent` never pulls in pandas, numpy, pyarrow, duckdb, scikit-learn or dash."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

EXIT_CONFIG = 2


def _store_arg(p: argparse.ArgumentParser) -> None:
    """--store for the commands that read telemetry (analyze, dashboard, alerts run)."""
    p.add_argument("--store", metavar="URL", help="embedded:DIR or influxdb://host:port/db "
                   "(default embedded:./var/demo-store when it exists)")


def _state_arg(p: argparse.ArgumentParser) -> None:
    """--state for the commands that write or read analyze runs."""
    p.add_argument("--state", metavar="DIR", default="var/state", help="state directory (default ./var/state)")


def _agent_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("agent", help="run the node agent",
                       description="Collect node, accelerator, interconnect, storage and job telemetry.")
    p.add_argument("--config", metavar="FILE", help="TOML configuration file")
    p.add_argument("--once", action="store_true", help="collect one sample (two reads, for rates), print it, exit")
    p.add_argument("--format", choices=("line", "json"), default="line", help="output format for printed points")
    p.add_argument("--listen", metavar="HOST:PORT", help="serve Prometheus /metrics here (':PORT' = 127.0.0.1)")
    p.add_argument("--interval", type=float, metavar="SECONDS", help="seconds between collections")
    p.add_argument("--proc-root", metavar="DIR", help="procfs root (default /proc)")
    p.add_argument("--sys-root", metavar="DIR", help="sysfs root (default /sys)")
    p.add_argument("--collectors", metavar="NAMES", help="comma-separated collectors to run")
    p.add_argument("--store", metavar="URL", help="write to this store through the durable spool: "
                   "influxdb://[user@]host:port/db, influxdb2://host:port/bucket?org=ORG or embedded:PATH")
    p.set_defaults(run=_run_agent)


def _run_agent(args: argparse.Namespace) -> int:
    from agents.agent_main import run_agent

    overrides = {
        "listen": args.listen,
        "interval_seconds": args.interval,
        "proc_root": args.proc_root,
        "sys_root": args.sys_root,
        "collectors": args.collectors.split(",") if args.collectors else None,
    }
    return run_agent(args.config, {k: v for k, v in overrides.items() if v is not None},
                     once=args.once, fmt=args.format, store_url=args.store)


def _config_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("config", help="configuration tools")
    csub = p.add_subparsers(dest="config_command", required=True)
    check = csub.add_parser("check", help="validate a configuration file (exit 2 when it is bad)")
    check.add_argument("file")
    check.set_defaults(run=_run_config_check)
    show = csub.add_parser("show", help="print the effective configuration (defaults, file, environment)")
    show.add_argument("file", nargs="?")
    show.set_defaults(run=_run_config_show)


def _run_config_check(args: argparse.Namespace) -> int:
    from agents.config import load_config

    load_config(args.file)
    print(f"{args.file}: ok")
    return 0


def _run_config_show(args: argparse.Namespace) -> int:
    from agents.config import load_config

    print(load_config(args.file).model_dump_json(indent=2))
    return 0


def _docs_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("docs", help="generate reference documentation")
    dsub = p.add_subparsers(dest="docs_command", required=True)
    metrics = dsub.add_parser("metrics", help="print docs/metrics.md from the schema")
    metrics.set_defaults(run=_run_docs_metrics)
    config = dsub.add_parser("config", help="print docs/configuration.md from the validation models")
    config.set_defaults(run=_run_docs_config)
    existing = dsub.add_parser("existing-telemetry", help="print docs/existing-telemetry.md from the mapping table")
    existing.set_defaults(run=_run_docs_existing)
    jobtable = dsub.add_parser("jobtable", help="print docs/jobtable.md from the job table's schema")
    jobtable.set_defaults(run=_run_docs_jobtable)


def _run_docs_metrics(args: argparse.Namespace) -> int:
    from agents.schema.reference import render_markdown

    sys.stdout.write(render_markdown())
    return 0


def _run_docs_existing(args: argparse.Namespace) -> int:
    from agents.schema.existing_reference import render_markdown

    sys.stdout.write(render_markdown())
    return 0


def _run_docs_config(args: argparse.Namespace) -> int:
    from agents.config_reference import render_markdown

    sys.stdout.write(render_markdown())
    return 0


def _run_docs_jobtable(args: argparse.Namespace) -> int:
    from analyzer.jobtable_schema import render_markdown

    sys.stdout.write(render_markdown())
    return 0


def _demo_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="the end-to-end demo on the embedded default")
    p.add_argument("--no-serve", action="store_true",
                   help="stop after the analysis instead of serving the dashboard (scripts, CI)")
    p.set_defaults(run=_run_demo)


def _run_demo(args: argparse.Namespace) -> int:
    from fleetwise.demo import run_demo

    return run_demo(serve=not args.no_serve)


def _ingest_parser(sub: argparse._SubParsersAction) -> None:
    from agents.traces import DEFAULT_EPOCH, LOADERS

    p = sub.add_parser("ingest", help="load a public cluster trace into a store",
                       description="Load a public trace into a store; malformed rows are skipped and counted "
                                   "(see docs/traces.md). Exit 2 when a file lacks a required column.")
    p.add_argument("kind", choices=tuple(LOADERS), help="trace format")
    p.add_argument("path", help="the trace's directory, or one of its files")
    p.add_argument("--store", metavar="URL", default="embedded:./var/store",
                   help="embedded:DIR or influxdb://host:port/db (default embedded:./var/store)")
    p.add_argument("--epoch", metavar="TIME",
                   help=f"ISO 8601 or Unix seconds that relative trace times count from (default {DEFAULT_EPOCH})")
    p.add_argument("--format", choices=("text", "json"), default="text", help="format of the printed report")
    p.set_defaults(run=_run_ingest)


def _store_settings():
    """[store] settings from FLEETWISE_STORE__* (ingest and simulate have no file): the same retries, batch
    size, CA and timeouts as the agent. A bad variable is a config error naming it."""
    from agents.config import load_config

    return load_config(None).store


def _run_ingest(args: argparse.Namespace) -> int:
    from pathlib import Path

    from agents.stores.secrets import SecretError
    from agents.stores.url import StoreURLError
    from agents.stores.writers import StoreWriteError, open_writer
    from agents.traces import TraceFormatError, ingest

    settings = _store_settings()
    try:
        if not Path(args.path).exists():
            raise TraceFormatError(f"{args.path}: no such file or directory")
        sink = open_writer(args.store, settings)
        try:
            report = ingest(args.kind, args.path, sink, epoch=args.epoch, store=args.store)
        finally:
            sink.close()
    except (TraceFormatError, StoreURLError, SecretError) as e:
        print(f"fleetwise: ingest: {e}", file=sys.stderr)
        return EXIT_CONFIG
    except (StoreWriteError, OSError) as e:
        print(f"fleetwise: ingest: {_os_error(e)}", file=sys.stderr)
        return 1
    sys.stdout.write(report.to_json() + "\n" if args.format == "json" else report.to_text())
    return 0


def _os_error(e: BaseException) -> str:
    """One line for an OSError: the file and the system's words, without the errno tuple."""
    if isinstance(e, OSError) and e.strerror:
        return f"{e.filename}: {e.strerror}" if e.filename else e.strerror
    return str(e)


def _simulate_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("simulate", help="generate a heterogeneous fleet's telemetry with known ground truth",
                       description="Simulate a fleet (GPU and CPU nodes, training, inference, batch, ETL, idle "
                                   "jobs) and write exactly what the agent would, plus truth.json beside it.")
    p.add_argument("--nodes", type=int, default=32, help="nodes in the fleet (default 32)")
    p.add_argument("--days", type=float, default=3, help="days to simulate (default 3)")
    p.add_argument("--interval", type=float, default=60, metavar="SECONDS", help="sampling interval (default 60)")
    p.add_argument("--seed", type=int, default=1, help="random seed: the same seed gives the same data")
    p.add_argument("--store", metavar="URL", default="embedded:./var/sim-store",
                   help="embedded:PATH or influxdb://host:port/db (default embedded:./var/sim-store)")
    p.add_argument("--profile", metavar="FILE", help="fleet profile TOML (default: the built-in profile)")
    p.add_argument("--start", metavar="ISO", default="2026-11-20T00:00:00Z", help="time of the first sample (UTC)")
    p.add_argument("--truth", metavar="PATH", help="where to write the ground truth (default STORE/truth.json)")
    p.set_defaults(run=_run_simulate)


def _run_simulate(args: argparse.Namespace) -> int:
    from pathlib import Path

    from agents.simulate import simulate
    from agents.simulate.profile import ProfileError
    from agents.stores.writers import StoreWriteError

    settings = _store_settings()
    if args.truth and Path(args.truth).is_dir():
        print(f"fleetwise simulate: --truth {args.truth} is a directory; name the file to write", file=sys.stderr)
        return EXIT_CONFIG
    try:
        r = simulate(nodes=args.nodes, days=args.days, interval=args.interval, seed=args.seed, store=args.store,
                     profile=args.profile, start=args.start, truth_path=args.truth, settings=settings)
    except (ProfileError, ValueError) as e:  # StoreURLError and SecretError are ValueErrors
        print(f"fleetwise simulate: {e}", file=sys.stderr)
        return EXIT_CONFIG
    except (StoreWriteError, OSError) as e:
        print(f"fleetwise simulate: {_os_error(e)}", file=sys.stderr)
        return 1
    print(f"simulated {r.nodes} nodes x {r.rounds} rounds: {r.rows} rows in {r.seconds:.1f} s"
          + (f" (rolled up in {r.rollup_seconds:.1f} s)" if r.rollup_seconds else ""))
    if r.truth_path:
        print(f"ground truth: {r.truth_path}")
    return 0


def _validate_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("validate", help="check the performance models against real public measurements")
    vsub = p.add_subparsers(dest="validate_command", required=True)
    z = vsub.add_parser("zeus", help="leave-one-GPU-type-out on the Zeus (NSDI'23) time/power measurements",
                        description="Hold one GPU type out: the model sees K configurations per workload on it "
                                    "(its largest batch size at the type's highest power limit, plus K-1 drawn at "
                                    "random) and predicts time_per_epoch for all others; MAPE (a fraction, lower "
                                    "is better) vs. two ratio baselines, and the power-cap decision's energy saving.")
    z.add_argument("--data", metavar="DIR", required=True, help="directory of summary_power_<gpu>.csv files")
    z.add_argument("--holdout", metavar="GPU", required=True, help="the GPU type to hold out (e.g. v100)")
    z.add_argument("--profiled", metavar="K", type=int, default=1,
                   help="configurations profiled per workload on the held-out type (default 1)")
    z.add_argument("--seeds", metavar="N", type=int, default=20,
                   help="random draws of the K-1 extra configurations to average over (default 20; seeds 0..N-1)")
    z.add_argument("--detail", action="store_true",
                   help="JSON also gets per-workload MAPEs, interval coverage and what nested validation chose")
    z.add_argument("--format", choices=("text", "json"), default="text", help="output format")
    z.set_defaults(run=_run_validate_zeus)


def _progress_line(what: str):
    """Progress of a long step: an updating line on a terminal's stderr, else INFO log lines."""
    if sys.stderr.isatty():
        return lambda msg: print(f"\r{what}: {msg}\033[K", end="", file=sys.stderr, flush=True)
    return lambda msg: logging.getLogger("fleetwise").info("%s: %s", what, msg)


def _run_validate_zeus(args: argparse.Namespace) -> int:
    import json

    from analyzer.validate.zeus import ZeusDataError
    from analyzer.validate.zeus_validate import validate

    if args.profiled < 1 or args.seeds < 1:
        print("fleetwise validate zeus: --profiled and --seeds must be at least 1", file=sys.stderr)
        return EXIT_CONFIG
    try:
        r = validate(args.data, args.holdout, args.profiled, args.seeds,
                     detail=args.detail or args.format == "text", progress=_progress_line("validate zeus"))
    except (ZeusDataError, OSError) as e:
        print(f"fleetwise validate zeus: {e}", file=sys.stderr)
        return EXIT_CONFIG
    if sys.stderr.isatty():
        print(file=sys.stderr)  # end the progress line
    if args.format == "json":
        print(json.dumps(r))
        return 0
    m, pc = r["mape"], r["power_cap"]
    print(f"holdout {r['holdout']}: {r['n']} configurations predicted, {r['profiled']} profiled per workload, "
          f"{r['seeds']} draws")
    print(f"MAPE (lower is better)  model {m['model']:.3f}   global ratio {m['global_ratio']:.3f}   "
          f"per-workload ratio {m['per_workload_ratio']:.3f}   90% interval coverage {r['coverage_90']:.2f}")
    for wl, v in r["per_workload"].items():
        print(f"  {wl:34s} n={v['n']:4d}  model {v['model']:.3f}  global {v['global_ratio']:.3f}  "
              f"per-workload {v['per_workload_ratio']:.3f}  coverage {v['coverage_90']:.2f}")
    print(f"power cap within {pc['slowdown_budget']:.0%} slowdown: energy saving {pc['energy_saving']:.3f} "
          f"(oracle {pc['oracle_energy_saving']:.3f}), over budget {pc['over_budget_share']:.3f}")
    return 0


def _analyze_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("analyze", help="fit the workload and performance models and save them in the state directory",
                       description="Characterize jobs and workloads, fit the throughput, scaling, power-cap and "
                                   "forecast models on a window of the store, and save them as a new versioned run "
                                   "in the state directory (models that lack data are listed with the reason).")
    _store_arg(p)
    p.add_argument("--since", default="7d", metavar="DURATION|ISO",
                   help="window length before --until (7d, 36h) or its start time (default 7d)")
    p.add_argument("--until", metavar="ISO", help="end of the window (default: the end of the data, or now)")
    _state_arg(p)
    p.add_argument("--jobs", type=int, default=-1, metavar="N", help="parallel fits (default -1: all cores)")
    p.add_argument("--every", default="5m", metavar="DURATION",
                   help="bucket width of the job features (default 5m; coarser is faster on long windows)")
    p.add_argument("--config", metavar="FILE", help="TOML configuration; its [recommend] section sets the "
                   "recommender's budgets and price table")
    p.add_argument("--engine", choices=("local", "dask"), default="local",
                   help="where the heavy steps run: local (this process, default) or dask (the embedded store's "
                        "aggregates as one task per measurement and day, and the per-workload fits, on a Dask "
                        "cluster; needs fleetwise[dask] and --scheduler)")
    p.add_argument("--scheduler", metavar="tcp://HOST:8786", help="the Dask scheduler (--engine dask only)")
    p.set_defaults(run=_run_analyze)


DEMO_STORE = "embedded:./var/demo-store"


def _default_store(store: str | None) -> str | None:
    from pathlib import Path

    if store:
        return store
    return DEMO_STORE if Path(DEMO_STORE[len("embedded:"):]).is_dir() else None


def _store_to_read(command: str, store: str | None) -> str | None:
    """--store, else the demo store when it exists; None after saying on stderr why there is none."""
    from pathlib import Path

    store = _default_store(store)
    if store is None:
        print(f"fleetwise {command}: no store: give --store URL (embedded:DIR or influxdb://host:port/db), "
              "or run `fleetwise demo` to create ./var/demo-store", file=sys.stderr)
    elif store.startswith("embedded:") and not Path(store[len("embedded:"):]).expanduser().is_dir():
        print(f"fleetwise {command}: {store}: no such store directory", file=sys.stderr)
        return None
    return store


def _run_analyze(args: argparse.Namespace) -> int:

    from agents.query import QueryError
    from agents.stores.url import StoreURLError

    store = _store_to_read("analyze", args.store)
    if store is None:
        return EXIT_CONFIG
    if args.jobs == 0:
        print("fleetwise analyze: --jobs must be a positive count or negative (-1 = all cores)", file=sys.stderr)
        return EXIT_CONFIG
    from agents.config import load_config
    from analyzer.dask_engine import EngineError
    from analyzer.pipeline import NotEnoughData, analyze
    from analyzer.state import StateError

    config = load_config(args.config)  # a bad file: ConfigError, one line, exit 2 (main)
    try:
        engine = _analyze_engine(args, store)
    except EngineError as e:
        print(f"fleetwise analyze: {_one_line(e)}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        result = analyze(store, since=args.since, until=args.until, state_dir=args.state, n_jobs=args.jobs,
                         every=args.every, recommend=config.recommend, settings=config.store, engine=engine)
    except StateError as e:
        print(f"fleetwise analyze: --state: {e}", file=sys.stderr)
        return EXIT_CONFIG
    except (StoreURLError, ValueError) as e:
        print(f"fleetwise analyze: {_one_line(e)}", file=sys.stderr)
        return EXIT_CONFIG
    except NotEnoughData as e:
        print(f"fleetwise analyze: {_one_line(e)}", file=sys.stderr)
        return 1
    except (QueryError, OSError) as e:
        print(f"fleetwise analyze: cannot read {store}: {_one_line(_os_error(e))}", file=sys.stderr)
        return 1
    finally:
        if engine is not None:
            engine.close()
    print(result.summary())
    return 0 if result.ok else 1


def _analyze_engine(args: argparse.Namespace, store: str):
    """None for --engine local; a connected analyzer.dask_engine.DaskEngine for --engine dask (EngineError:
    --scheduler missing or given alone, dask not installed, the scheduler unreachable, a store it cannot split)."""
    from analyzer.dask_engine import DaskEngine, EngineError, check_store

    if args.engine == "local":
        if args.scheduler:
            raise EngineError(f"--scheduler {args.scheduler} is for --engine dask; add --engine dask or drop it")
        return None
    if not args.scheduler:
        raise EngineError("--engine dask needs --scheduler tcp://HOST:PORT (a running dask scheduler)")
    check_store(store)  # before connecting: a wrong store is said without waiting for a scheduler
    engine = DaskEngine.connect(args.scheduler)
    print(f"fleetwise analyze: dask engine: {args.scheduler}, {engine.workers()} workers", file=sys.stderr)
    return engine


def _one_line(e: BaseException | str) -> str:
    """Library messages (pyarrow's, duckdb's) can span lines; a command's error is one."""
    return " ".join(str(e).split())


def _models_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="inspect the fitted models")
    msub = p.add_subparsers(dest="models_command", required=True)
    show = msub.add_parser("show", help="what the latest analyze run fitted, with fit quality")
    _state_arg(show)
    show.add_argument("--format", choices=("text", "json"), default="text", help="output format")
    show.set_defaults(run=_run_models_show)


def _run_models_show(args: argparse.Namespace) -> int:
    from analyzer.show import render
    from analyzer.state import StateError, load_latest

    try:
        run = load_latest(args.state)
    except StateError as e:  # names the state directory or the file in it
        print(f"fleetwise models show: {e}", file=sys.stderr)
        return EXIT_CONFIG
    sys.stdout.write(render(run, args.format))
    return 0


def _backtest_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("backtest", help="score the recommender against baselines on real traces")
    bsub = p.add_subparsers(dest="backtest_command", required=True)
    r = bsub.add_parser("rightsize", help="right-sizing: fleetwise vs KRR vs VPA on usage series",
                        description="Per series, fit on the first part of its time span and score the size on the "
                                    "rest: slack (mean idle share of the size) and exceedance (share of series "
                                    "that later use more than the size). See docs/validation.md.")
    r.add_argument("--series", metavar="FILE", required=True, help="CSV (or .csv.gz), one row per sample")
    r.add_argument("--id-col", metavar="C", required=True, help="column naming the series (pod, job)")
    r.add_argument("--time-col", metavar="C", required=True, help="column of times in seconds")
    r.add_argument("--value-col", metavar="C", required=True, help="column of usage values")
    r.add_argument("--train-fraction", type=float, default=0.7, metavar="F",
                   help="share of each series' time span that is history (default 0.7)")
    r.add_argument("--resource", choices=("auto", "memory", "cpu", "gpu"), default="auto",
                   help="what the values measure, for the baselines' recipes (default auto: memory when the file "
                        "or value column names memory, gpu when it names gpu or duty, else cpu)")
    r.add_argument("--format", choices=("text", "json"), default="text", help="output format")
    r.set_defaults(run=_run_backtest_rightsize)
    k = bsub.add_parser("packing", help="packing: fleetwise vs first-fit, best-fit and FGD on the openb trace",
                        description="Place the pods on the nodes in arrival order, each method from empty nodes; "
                                    "pods placed, GPUs allocated, GPUs stranded. See docs/validation.md.")
    k.add_argument("--nodes", metavar="FILE", required=True, help="openb_node_list_*.csv")
    k.add_argument("--pods", metavar="FILE", required=True, help="openb_pod_list_*.csv")
    k.add_argument("--format", choices=("text", "json"), default="text", help="output format")
    k.set_defaults(run=_run_backtest_packing)


def _guess_resource(path: str, value_col: str) -> str:
    name = f"{path} {value_col}".lower()
    return "memory" if "mem" in name else "gpu" if ("gpu" in name or "duty" in name) else "cpu"


def _run_backtest_rightsize(args: argparse.Namespace) -> int:
    import json

    from agents.traces.report import TraceFormatError
    from analyzer.progress import Progress
    from analyzer.validate.rightsize import backtest
    from analyzer.validate.series import read_series

    if not 0.0 < args.train_fraction < 1.0:
        print(f"fleetwise backtest rightsize: --train-fraction {args.train_fraction} must be between 0 and 1",
              file=sys.stderr)
        return EXIT_CONFIG
    resource = _guess_resource(args.series, args.value_col) if args.resource == "auto" else args.resource
    try:
        table = read_series(args.series, args.id_col, args.time_col, args.value_col)
    except (TraceFormatError, OSError) as e:
        print(f"fleetwise backtest rightsize: {e}", file=sys.stderr)
        return EXIT_CONFIG
    r = backtest(table, args.train_fraction, resource, progress=Progress("nested validation"))
    if args.format == "json":
        print(json.dumps(r))
        return 0
    print(f"{args.series}: {r['series']} series ({resource}), history = first {args.train_fraction:.0%} of each")
    for m, v in r["methods"].items():
        if v["slack"] is None:
            print(f"  {m:10s} no series to score")
        else:
            print(f"  {m:10s} slack {v['slack']:.4f}   exceedance {v['exceedance']:.4f}")
    nv = r["nested_validation"]
    if "margin" in nv:
        print(f"  nested validation chose margin {nv['margin']}, spread_weight {nv['spread_weight']}")
    return 0


def _run_backtest_packing(args: argparse.Namespace) -> int:
    import json

    from agents.traces.report import TraceFormatError
    from analyzer.progress import Progress
    from analyzer.validate.packing import backtest, read_nodes, read_pods

    try:
        nodes, pods = read_nodes(args.nodes), read_pods(args.pods)
    except (TraceFormatError, OSError) as e:
        print(f"fleetwise backtest packing: {e}", file=sys.stderr)
        return EXIT_CONFIG
    bars: dict[str, Progress] = {}
    r = backtest(nodes, pods, progress=lambda m, i, n: bars.setdefault(m, Progress(f"packing {m}"))(i, n))
    if args.format == "json":
        print(json.dumps(r))
        return 0
    print(f"{r['pods']} pods ({r['gpus_requested']:g} GPUs asked) on {r['nodes']} nodes ({r['gpus']} GPUs)")
    for m, v in r["methods"].items():
        print(f"  {m:10s} placed {v['pods_placed']:5d}   GPUs allocated {v['gpus_allocated']:8.1f}   "
              f"stranded {v['gpus_stranded']:7.1f}   ({v['seconds']:.1f} s)")
    return 0


def _recommend_parser(sub: argparse._SubParsersAction) -> None:
    from analyzer.recommend.rows import KINDS

    p = sub.add_parser("recommend", help="print the latest analyze run's recommendations, largest gain first",
                       description="Ranked actions from the latest analyze run (its recommend step): right-sizing, "
                                   "GPUs, power caps, rebalancing, consolidation, fragmentation; each with its "
                                   "gain per week, risk and evidence. Targets without enough history are listed "
                                   "with the reason in --format json.")
    _state_arg(p)
    p.add_argument("--kind", choices=KINDS, help="only this kind")
    p.add_argument("--min-gain", type=float, default=None, metavar="X",
                   help="only recommendations saving at least X money per week (the price table's currency)")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="only the N largest")
    p.add_argument("--format", default="table", choices=("table", "json", "csv", "markdown"), help="output format")
    p.set_defaults(run=_run_recommend)


def _run_recommend(args: argparse.Namespace) -> int:
    from analyzer.recommend.formats import render
    from analyzer.state import StateError, load_latest

    try:
        run = load_latest(args.state)
        recs = run.table("recommendations")
        skipped = run.table("recommendations_skipped")
    except StateError as e:
        print(f"fleetwise recommend: {e}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyError:
        step = run.manifest.get("steps", {}).get("recommend", {})
        why = step.get("reason") or "the run has no recommend step (made by an older fleetwise?)"
        print(f"fleetwise recommend: run {run.run_id} has no recommendations: {why}", file=sys.stderr)
        return 1
    if args.kind:
        recs = recs[recs["kind"] == args.kind]
        skipped = skipped[skipped["kind"] == args.kind]
    if args.min_gain is not None:
        recs = recs[recs["money_week"] >= args.min_gain]
    if args.limit is not None:
        recs = recs.head(max(args.limit, 0))
    sys.stdout.write(render(args.format, recs.reset_index(drop=True), skipped.reset_index(drop=True)))
    return 0


def _dashboard_parser(sub: argparse._SubParsersAction) -> None:
    from dashboard.serve import DEFAULT_LISTEN

    p = sub.add_parser("dashboard", help="serve the Dash dashboard (on 127.0.0.1:8050 by default)",
                       description="Serve the dashboard over a store and the state directory's latest analyze run "
                                   "(docs/dashboard.md). Basic auth: FLEETWISE_DASHBOARD_USER and "
                                   "FLEETWISE_DASHBOARD_PASSWORD (or FLEETWISE_DASHBOARD_PASSWORD_FILE).")
    _store_arg(p)
    _state_arg(p)
    p.add_argument("--listen", metavar="HOST:PORT", default=DEFAULT_LISTEN,
                   help=f"address to serve on (default {DEFAULT_LISTEN}; keep 127.0.0.1 behind a reverse proxy)")
    p.add_argument("--alerts", metavar="DIR", help="alert history directory (default: the alerts component's own)")
    p.set_defaults(run=_run_dashboard)


def _run_dashboard(args: argparse.Namespace) -> int:

    from agents.query import QueryError
    from agents.stores.secrets import SecretError
    from agents.stores.url import StoreURLError
    from dashboard.serve import parse_listen, run

    store = _store_to_read("dashboard", args.store)
    if store is None:
        return EXIT_CONFIG
    try:
        parse_listen(args.listen)
        return run(store, args.state, args.listen, settings=_store_settings(), alerts_dir=args.alerts)
    except (ValueError, SecretError, StoreURLError) as e:
        print(f"fleetwise dashboard: {_one_line(e)}", file=sys.stderr)
        return EXIT_CONFIG
    except (QueryError, OSError) as e:
        print(f"fleetwise dashboard: {_one_line(_os_error(e))}", file=sys.stderr)
        return 1


def _report_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="the weekly capacity report: HTML, a CSV per table, optionally PDF",
                       description="Utilization per pool and resource with its trend, allocated vs used GPU-hours, "
                                   "the most under-used workloads and users, the demand forecast with the date "
                                   "each pool saturates, the recommendations and their savings, and the week's "
                                   "alerts, for one ISO week (docs/report.md).")
    p.add_argument("--week", metavar="YYYY-Www", help="ISO week, e.g. 2026-W47 (default: the last complete week "
                   "before now or the end of the latest analyze run)")
    p.add_argument("--store", metavar="URL", help="telemetry store (default: the one the analyze run read, else "
                   "embedded:./var/demo-store when it exists)")
    p.add_argument("--state", metavar="DIR", default="var/state", help="analyze state directory (default ./var/state)")
    p.add_argument("--alerts-state", metavar="DIR", default="var/alerts",
                   help="the alert evaluator's state directory (default ./var/alerts)")
    p.add_argument("--out", metavar="DIR", required=True, help="output directory")
    p.add_argument("--pdf", action="store_true", help="also write a PDF (WeasyPrint; charts through Chromium)")
    p.add_argument("--fleet-name", metavar="NAME", default="fleet", help="the fleet's name on the first page")
    p.add_argument("--trend-weeks", type=int, default=4, metavar="N", help="weeks before it in the trend (default 4)")
    p.set_defaults(run=_run_report)


def _run_report(args: argparse.Namespace) -> int:
    import datetime as dt
    from pathlib import Path

    from agents.query import QueryError
    from agents.stores.url import StoreURLError
    from analyzer.report.pdf import PdfError
    from analyzer.report.week import WeekError, last_complete_week, parse_week
    from analyzer.state import StateError, load_latest

    try:
        week = parse_week(args.week) if args.week is not None else None
    except WeekError as e:
        print(f"fleetwise report: {e}", file=sys.stderr)
        return EXIT_CONFIG
    if args.trend_weeks < 0:
        print("fleetwise report: --trend-weeks must be 0 or more", file=sys.stderr)
        return EXIT_CONFIG
    try:
        latest = load_latest(args.state)
    except StateError:
        latest = None  # the report says there is no run; the telemetry sections still stand
    if week is None:
        now = dt.datetime.now(dt.UTC)
        end = (latest.manifest.get("window") or {}).get("end") if latest else None
        week = last_complete_week(min(now, dt.datetime.fromisoformat(end)) if end else now)
    store = args.store or (latest.manifest.get("store") if latest else None) or _default_store(None)
    if store and store.startswith("embedded:") and not Path(store[len("embedded:"):]).expanduser().is_dir():
        print(f"fleetwise report: {store}: no such store directory", file=sys.stderr)
        return EXIT_CONFIG
    from agents.config import load_config
    from analyzer.report.build import build_report

    try:
        result = build_report(week, args.out, store=store, settings=load_config(None).store, state_dir=args.state,
                              alerts_state=args.alerts_state, fleet_name=args.fleet_name, pdf=args.pdf,
                              trend_weeks=args.trend_weeks)
    except StoreURLError as e:
        print(f"fleetwise report: {_one_line(e)}", file=sys.stderr)
        return EXIT_CONFIG
    except (QueryError, PdfError, OSError) as e:
        print(f"fleetwise report: {_one_line(_os_error(e))}", file=sys.stderr)
        return 1
    print(result.summary())
    return 0


def _store_parser(sub: argparse._SubParsersAction) -> None:
    from agents.stores.embedded_maintain import add_arguments

    p = sub.add_parser("store", help="embedded store maintenance")
    ssub = p.add_subparsers(dest="store_command", required=True)
    compact = ssub.add_parser("compact", help="fold the agent's pending batches into Parquet, merge small files, "
                              "apply retention, roll up changed days (exit 3 when another writer holds the store)")
    add_arguments(compact)
    compact.set_defaults(run=_run_store_compact)


def _run_store_compact(args: argparse.Namespace) -> int:
    from agents.stores.embedded_maintain import run

    return run(args)


def _alerts_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("alerts", help="alert rules: export to Prometheus, evaluate, suggest per-pool thresholds",
                       description="Alert rules (docs/alerts.md). Without --rules the shipped default pack is used.")
    asub = p.add_subparsers(dest="alerts_command", required=True)
    e = asub.add_parser("export", help="print the rules as Prometheus alerting rules over the agent's /metrics")
    e.add_argument("--format", default="prometheus", choices=("prometheus",))
    e.add_argument("--rules", metavar="FILE", help="rule file (default: the shipped pack)")
    e.add_argument("--out", metavar="FILE", help="write here instead of stdout")
    e.add_argument("--job-label", default="exported_job", metavar="LABEL",
                   help="label holding the agent's job tag in Prometheus (default exported_job; job with honor_labels)")
    e.set_defaults(run=_run_alerts)
    r = asub.add_parser("run", help="evaluate the rules over a store and notify (sites without Prometheus)")
    _store_arg(r)
    r.add_argument("--rules", metavar="FILE", help="rule file (default: the shipped pack)")
    r.add_argument("--webhook", metavar="URL", help="Alertmanager-compatible receiver (POST /api/v2/alerts JSON); "
                   "with credentials prefer the FLEETWISE_ALERTS_WEBHOOK variable")
    r.add_argument("--state-dir", default="var/alerts", metavar="DIR", help="state and history (default var/alerts)")
    r.add_argument("--once", action="store_true", help="evaluate once and exit (1 if a rule or a notice failed)")
    r.add_argument("--at", metavar="ISO", help="with --once: evaluate as of this time instead of now")
    r.add_argument("--interval", type=float, default=60.0, metavar="S", help="seconds between evaluations (60)")
    r.add_argument("--resend", type=float, default=0.0, metavar="S",
                   help="re-send firing alerts every S seconds (for Alertmanager's resolve_timeout; default never)")
    r.add_argument("--external-url", default="http://127.0.0.1:8050", metavar="URL",
                   help="base of each alert's generatorURL (the dashboard)")
    r.set_defaults(run=_run_alerts)
    s = asub.add_parser("suggest", help="per-pool GPU thresholds learned from the fleet's baseline, as a rule file")
    s.add_argument("--store", metavar="URL", help="as for run")
    s.add_argument("--since", default="14d", metavar="DURATION", help="window length before --until (14d)")
    s.add_argument("--until", metavar="ISO", help="end of the window (default: the end of the data)")
    s.add_argument("--out", metavar="FILE", help="write here instead of stdout")
    s.set_defaults(run=_run_alerts)


def _run_alerts(args: argparse.Namespace) -> int:
    from analyzer.alerts import commands

    if args.alerts_command == "export":
        return commands.export(args.rules, args.format, args.out, args.job_label)
    store = _default_store(args.store)
    if store is None:
        print(f"fleetwise alerts {args.alerts_command}: no store: give --store URL", file=sys.stderr)
        return EXIT_CONFIG
    settings = _store_settings()
    if args.alerts_command == "run":
        return commands.run(store, args.rules, args.webhook, args.state_dir, args.once, args.interval, args.at,
                            args.external_url, args.resend, settings)
    return commands.suggest(store, args.out, args.since, args.until, settings)


PARSERS: Sequence[Callable[[argparse._SubParsersAction], None]] = (
    _agent_parser, _config_parser, _docs_parser, _demo_parser, _simulate_parser, _ingest_parser,
    _validate_parser, _analyze_parser, _models_parser, _recommend_parser, _backtest_parser, _store_parser,
    _report_parser, _alerts_parser, _dashboard_parser,
)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole command line, or for `agent` only the agent's parser: other subcommands' parsers import
    their modules (trace loaders, the recommender's kinds), which a node agent must not carry (RSS budget)."""
    parser = argparse.ArgumentParser(
        prog="fleetwise",
        description="Cluster telemetry and utilization optimizer for heterogeneous HPC and AI fleets.")
    parser.add_argument("--log-level", default="WARNING", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    sub = parser.add_subparsers(dest="command", required=True)
    for add in [_agent_parser] if command == "agent" else PARSERS:
        add(sub)
    return parser


def _command(argv: Sequence[str]) -> str | None:
    """The subcommand named in argv (the first word that is neither an option nor --log-level's value)."""
    words = iter(argv)
    for word in words:
        if word == "--log-level":
            next(words, None)
        elif not word.startswith("-"):
            return word
    return None


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(_command(argv)).parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from agents.config import ConfigError

    try:
        return args.run(args)
    except ConfigError as e:
        print(f"fleetwise: config error: {e}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return 130
