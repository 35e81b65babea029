"""What limits each job: gpu_compute, gpu_memory_bandwidth, cpu_input, storage_io, network, idle, cpu_compute.

BottleneckClassifier(method="rules") needs no training: transparent thresholds on the job table. With
labelled jobs (the simulator's truth.json, or jobs an engineer labelled) method="model" fits a random
forest in a scikit-learn Pipeline on the same features.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin

from analyzer.minimums import require

CLASSES = ("gpu_compute", "gpu_memory_bandwidth", "cpu_input", "storage_io", "network", "idle", "cpu_compute")
FEATURES = ("has_gpu", "gpu_util", "gpu_util_peak", "membw", "membw_per_util", "idle_fraction", "cpu_input_ratio",
            "log_io", "log_net", "log_ib", "log_ib_wait", "nodes", "gpus")

# Rule thresholds (method="rules"), each with the reason it sits where it does.
IDLE_UTIL = 0.05  # the same line job_table draws for an idle GPU
INPUT_CPU_RATIO = 0.9  # every allocated core busy while the GPUs wait: the input pipeline is the limit
INPUT_GPU_UTIL = 0.85
NETWORK_GPU_UTIL = 0.5  # a multi-node job whose GPUs wait half the time on the all-reduce
MEMBW_PER_UTIL = 0.7  # memory busy nearly as often as the SMs: bandwidth-bound (embeddings, LLM decode)
STORAGE_BYTES_PER_SECOND = 1e8  # a CPU job streaming >100 MB/s while its cores are mostly waiting
STORAGE_CPU_RATIO = 0.6


def features(jobs) -> np.ndarray:
    """The classifier's inputs from a job table (NaN where a job has no such measurement)."""
    import pandas as pd

    def col(name, default=np.nan):
        return pd.to_numeric(jobs[name], errors="coerce").to_numpy(float) if name in jobs else np.full(
            len(jobs), default)

    util = col("gpu_utilization_mean")
    has_gpu = (col("gpus", 0) > 0).astype(float)
    io = np.nansum([col("disk_bytes_per_second"), col("lustre_bytes_per_second")], axis=0)
    dur = col("duration_seconds")
    out = np.column_stack([
        has_gpu, np.nan_to_num(util), np.nan_to_num(col("gpu_utilization_peak")),
        np.nan_to_num(col("gpu_memory_bandwidth_mean")),
        np.nan_to_num(col("gpu_memory_bandwidth_mean") / np.maximum(util, 0.01)),
        np.nan_to_num(col("gpu_idle_seconds") / np.where(dur > 0, dur, np.nan)),
        np.nan_to_num(col("cpu_input_ratio")), np.log10(1 + io),
        np.log10(1 + np.nan_to_num(col("net_bytes_per_second"))),
        np.log10(1 + np.nan_to_num(col("ib_bytes_per_second"))),
        np.log10(1 + np.nan_to_num(col("ib_xmit_wait_per_second"))), col("nodes", 1), col("gpus", 0)])
    return np.nan_to_num(out)


def rules(x: np.ndarray) -> np.ndarray:
    """The thresholded baseline over features() rows."""
    f = {name: x[:, k] for k, name in enumerate(FEATURES)}
    io = 10 ** f["log_io"] - 1
    out = np.where(f["gpu_util"] < IDLE_UTIL, "idle", "gpu_compute").astype(object)
    out = np.where((f["has_gpu"] > 0) & (f["membw_per_util"] >= MEMBW_PER_UTIL), "gpu_memory_bandwidth", out)
    out = np.where((f["has_gpu"] > 0) & (f["nodes"] > 1) & (f["gpu_util"] < NETWORK_GPU_UTIL), "network", out)
    out = np.where((f["has_gpu"] > 0) & (f["gpu_util"] >= IDLE_UTIL) & (f["cpu_input_ratio"] >= INPUT_CPU_RATIO)
                   & (f["gpu_util"] < INPUT_GPU_UTIL), "cpu_input", out)
    out = np.where((f["has_gpu"] > 0) & (f["gpu_util"] < IDLE_UTIL), "idle", out)
    cpu = np.where((io > STORAGE_BYTES_PER_SECOND) & (f["cpu_input_ratio"] < STORAGE_CPU_RATIO), "storage_io",
                   "cpu_compute")
    return np.where(f["has_gpu"] > 0, out, cpu).astype(object)


class BottleneckClassifier(ClassifierMixin, BaseEstimator):
    """method="rules": thresholds, no fit needed (fit() only records the classes). method="model": a random
    forest over the same features, trained on labelled jobs. X is a job table (DataFrame)."""

    MIN_POINTS = 20  # labelled jobs before a forest is worth more than the rules

    def __init__(self, method: str = "model", n_estimators: int = 200, random_state: int = 0) -> None:
        self.method = method
        self.n_estimators = n_estimators
        self.random_state = random_state

    def fit(self, X, y=None):
        if self.method not in ("rules", "model"):
            raise ValueError(f"method must be 'rules' or 'model', got {self.method!r}")
        self.min_points = self.MIN_POINTS
        x = features(X)
        self.n_train_ = len(x)
        if self.method == "rules":
            self.classes_ = np.array(CLASSES, dtype=object)
            self.pipeline_ = None
            self.score_ = float(np.mean(rules(x) == np.asarray(y, dtype=object))) if y is not None else float("nan")
            return self
        if y is None:
            raise ValueError("method='model' needs labels y; use method='rules' without labelled jobs")
        require(len(x), self.MIN_POINTS, "labelled jobs", "for the bottleneck model")
        from sklearn.ensemble import RandomForestClassifier
        from sklearn.pipeline import Pipeline
        from sklearn.preprocessing import StandardScaler

        y = np.asarray(y, dtype=object)
        self.pipeline_ = Pipeline([("scale", StandardScaler()), ("forest", RandomForestClassifier(
            n_estimators=self.n_estimators, random_state=self.random_state, class_weight="balanced",
            min_samples_leaf=1))]).fit(x, y)
        self.classes_ = self.pipeline_.classes_
        self.score_ = float(self.pipeline_.score(x, y))
        return self

    def predict(self, X) -> np.ndarray:
        x = features(X)
        if self.method == "rules" or getattr(self, "pipeline_", None) is None:
            return rules(x)
        return self.pipeline_.predict(x)


def evaluate(y_true, y_pred) -> dict:
    """Accuracy, per-class precision/recall/support and the confusion matrix (rows: truth)."""
    from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

    labels = [c for c in CLASSES if c in set(y_true) | set(y_pred)]
    p, r, _, s = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    return {"accuracy": float(accuracy_score(y_true, y_pred)), "labels": labels,
            "precision": dict(zip(labels, map(float, p), strict=True)),
            "recall": dict(zip(labels, map(float, r), strict=True)),
            "support": dict(zip(labels, map(int, s), strict=True)),
            "confusion": confusion_matrix(y_true, y_pred, labels=labels).tolist()}


def labelled_table(store_path, start: str, end: str):
    """job_table of a simulator store with truth.json's bottleneck (and workload) per job."""
    import json
    from pathlib import Path

    from agents.query import open_reader
    from analyzer.features import job_table

    truth = {j["job"]: j for j in json.loads((Path(store_path) / "truth.json").read_text())["jobs"] if j["placed"]}
    with open_reader(f"embedded:{store_path}") as reader:
        jt = job_table(reader, start, end)
    jt = jt[jt["job"].isin(truth)].reset_index(drop=True)
    jt["true_bottleneck"] = [truth[j]["bottleneck"] for j in jt["job"]]
    jt["true_workload"] = [truth[j]["workload"] for j in jt["job"]]
    jt["true_kind"] = [truth[j]["kind"] for j in jt["job"]]
    return jt


def markdown_report(report: dict, title: str) -> str:
    labels = report["labels"]
    lines = [f"{title}: accuracy {report['accuracy']:.3f}", "",
             "| truth \\ predicted | " + " | ".join(labels) + " | recall | precision | support |",
             "|---" * (len(labels) + 4) + "|"]
    for k, lab in enumerate(labels):
        lines.append(f"| {lab} | " + " | ".join(str(v) for v in report["confusion"][k])
                     + f" | {report['recall'][lab]:.2f} | {report['precision'][lab]:.2f} | "
                       f"{report['support'][lab]} |")
    return "\n".join(lines)


def held_out_profile(name: str):
    """The simulator profile a held-out seed is drawn from: None (the default) or the shifted one."""
    if name == "default":
        return None
    from agents.simulate.profile import SHIFTED_PROFILE, parse_profile

    return parse_profile(SHIFTED_PROFILE, "<built-in shifted profile>")


def main() -> None:
    """Train on simulator seeds, evaluate on a held-out seed, print markdown (docs/validation.md)."""
    import argparse
    import tempfile

    import pandas as pd

    from agents.simulate import simulate

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("--train-seeds", default="1,2")
    ap.add_argument("--test-seed", type=int, default=7)
    ap.add_argument("--nodes", type=int, default=24)
    ap.add_argument("--days", type=float, default=2)
    ap.add_argument("--test-profile", choices=("default", "shifted"), default="default",
                    help="simulator profile of the held-out seed: shifted is agents.simulate.profile.SHIFTED_PROFILE"
                         " (other node classes, mix and noise; use seeds >= 1000)")
    args = ap.parse_args()
    end = pd.Timestamp("2026-11-20T00:00:00Z") + pd.Timedelta(days=args.days)
    with tempfile.TemporaryDirectory() as tmp:
        tables = {}
        for seed in [*map(int, args.train_seeds.split(",")), args.test_seed]:
            profile = held_out_profile(args.test_profile) if seed == args.test_seed else None
            simulate(nodes=args.nodes, days=args.days, interval=60, seed=seed, store=f"embedded:{tmp}/{seed}",
                     profile=profile)
            tables[seed] = labelled_table(f"{tmp}/{seed}", "2026-11-20", end)
    test = tables.pop(args.test_seed)
    train = pd.concat(tables.values(), ignore_index=True)
    for method in ("model", "rules"):
        clf = BottleneckClassifier(method=method).fit(train, train["true_bottleneck"])
        rep = evaluate(test["true_bottleneck"], clf.predict(test))
        print(markdown_report(rep, f"method={method}, held-out seed {args.test_seed} ({args.test_profile} profile)"),
              "\n")


if __name__ == "__main__":
    main()
