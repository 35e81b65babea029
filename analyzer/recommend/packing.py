"""Placing pods on a heterogeneous GPU cluster: first-fit, best-fit, FGD and fleetwise.

A node has CPU (milli-cores), memory (MiB), and GPUs of one model, each with 1000 milli-GPU. A pod asks
for CPU, memory, ``num_gpu`` GPUs with ``gpu_milli`` of each (below 1000 it shares one GPU with other
pods), and optionally a set of allowed GPU models (``gpu_spec``). A pod fits a node when the node has the
CPU and memory left, an allowed model, and ``num_gpu`` GPUs each with ``gpu_milli`` left.

- ``first_fit``: the first node (in the node list's order) that fits; the first GPU(s) that fit.
- ``best_fit``: the node that leaves the least free CPU and GPU, each normalised by the largest node's
  (Σ 0.5 · (free - request) / max spec, as in the FGD paper's simulator); the GPU with least left that fits.
- ``fgd``: Fragmentation Gradient Descent (Weng et al., "Beware of Fragmentation", USENIX ATC 2023),
  after its simulator (hkust-adsl/kubernetes-scheduler-simulator, pkg/utils/frag.go and
  plugin/fgd_score.go): the workload's *typical pods* are the most frequent pod shapes (CPU, milli-GPU,
  GPU count, GPU models) that together cover 95% of pods, CPU-only pods included, weighted by frequency.
  A node's fragmentation F_n = Σ_m p_m · F_n(m): for a typical pod m that the node could host (model
  allowed, enough CPU, enough GPUs with m's milli-GPU left), the free milli-GPU on GPUs with less than
  m's milli-GPU left; otherwise (CPU-only m, a model it does not allow, too little CPU or GPU) all the
  node's free milli-GPU. Each pod goes to the node, and for a shared GPU the GPU, whose fragmentation
  grows least. Memory is checked for fit but, as in the paper, not in the measure. Two departures from
  the simulator, both to make the result deterministic: the fragmentation change is compared exactly,
  not through the scheduler's integer 0-100 sigmoid score, and ties go to the first node in list order
  rather than to a random one.
- ``fleetwise``: FGD's descent with a measure that also sees CPU and memory (`stranded_capacity`): for
  each typical pod m, the free milli-GPU a stream of m pods could not take if the node were filled with
  as many of them as its GPUs, CPU and memory allow (k_m = min(m-sized GPU slots / GPUs per pod,
  CPU left / m's CPU, memory left / m's memory); stranded = free - k_m x m's GPU ask), weighted by m's
  frequency. FGD asks only whether one m pod still fits, so a node with four free GPUs and CPU for one
  more pod counts as unfragmented; here three of the four count as stranded. Among equal changes the
  best-fit node wins. These choices (against memory-blind, first-node, demand-weighted, tight-GPU
  variants) were made on a training subset (the first half of the pods, in arrival order, on every
  second node), not on the full trace the backtest reports (docs/validation.md).

Nodes whose states are identical give identical scores, so each decision scores one node per distinct
state (numpy over states, typical pods and GPUs), which keeps 8,000 pods on 1,500 nodes to seconds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

MILLI = 1000
_NEVER = np.iinfo(np.int64).max
METHODS = ("fleetwise", "first_fit", "best_fit", "fgd")
# FGD exactly as its Kubernetes plugin scores (integer 0-100 sigmoid, random ties): for comparison only.
FGD_SCHEDULER = "fgd_scheduler"
TYPICAL_COVERAGE = 0.95   # the simulator's podPopularityThreshold (95%, step 1, CPU pods included)


@dataclass(frozen=True)
class Nodes:
    names: np.ndarray
    cpu: np.ndarray       # milli-cores
    memory: np.ndarray    # MiB
    gpus: np.ndarray      # count
    model: np.ndarray     # GPU model per node ("" for CPU-only nodes)


@dataclass(frozen=True)
class Pods:
    names: np.ndarray
    cpu: np.ndarray
    memory: np.ndarray
    num_gpu: np.ndarray
    gpu_milli: np.ndarray  # per GPU; below 1000 the pod shares one GPU
    gpu_spec: np.ndarray   # "" (any model) or models joined by "|"

    def __len__(self) -> int:
        return len(self.names)


@dataclass(frozen=True)
class Typical:
    """Typical pod shapes and their frequencies (sum 1)."""

    cpu: np.ndarray
    milli: np.ndarray
    num: np.ndarray
    access: np.ndarray    # [shape, model code] may the shape use that model
    memory: np.ndarray    # smallest memory request among the shape's pods
    p: np.ndarray


def typical_pods(pods: Pods, models: list[str], coverage: float = TYPICAL_COVERAGE) -> Typical:
    """The most frequent (cpu, milli-GPU, GPU count, spec) shapes covering `coverage` of pods, frequencies
    renormalised over them (utils.GetTypicalPods, CPU-only pods included)."""
    keys: dict[tuple, list] = {}
    for i in range(len(pods)):
        k = (int(pods.cpu[i]), int(pods.gpu_milli[i]) if pods.num_gpu[i] else 0, int(pods.num_gpu[i]),
             str(pods.gpu_spec[i]))
        keys.setdefault(k, [0, pods.memory[i]])
        keys[k][0] += 1
        keys[k][1] = min(keys[k][1], pods.memory[i])
    # Most frequent first; equal counts in the simulator's order (larger CPU, then milli, count, spec).
    ranked = sorted(keys.items(), key=lambda kv: (-kv[1][0], tuple(-x if isinstance(x, int) else x
                                                                   for x in kv[0])))
    total = len(pods)
    chosen, cum = [], 0
    for k, (n, mem) in ranked:
        if cum >= coverage * total:
            break
        chosen.append((k, n, mem))
        cum += n
    access = np.array([[_allowed(k[3], m) for m in models] for k, _, _ in chosen], dtype=bool).reshape(
        len(chosen), len(models))
    counts = np.array([n for _, n, _ in chosen], dtype=float)
    return Typical(np.array([k[0] for k, _, _ in chosen], dtype=np.int64),
                   np.array([k[1] for k, _, _ in chosen], dtype=np.int64),
                   np.array([k[2] for k, _, _ in chosen], dtype=np.int64), access,
                   np.array([mem for _, _, mem in chosen], dtype=np.int64), counts / counts.sum())


def _allowed(spec: str, model: str) -> bool:
    """utils.IsNodeAccessibleToPodByType: no spec allows any model; a CPU node has no model."""
    allowed = [s for s in spec.split("|") if s]
    if not allowed:
        return True
    return bool(model) and model in allowed


@dataclass
class State:
    """What is left on every node; GPU slots a node does not have hold -1 so that nothing fits them."""

    cpu: np.ndarray
    memory: np.ndarray
    gpu: np.ndarray       # [node, slot] milli-GPU left
    model: np.ndarray     # model code per node (index into models; "" is a model too, for CPU nodes)
    models: list[str] = field(default_factory=list)

    @classmethod
    def empty(cls, nodes: Nodes) -> State:
        models = sorted(set(nodes.model.tolist()))
        slots = max(int(nodes.gpus.max()) if len(nodes.gpus) else 0, 1)
        gpu = np.where(np.arange(slots)[None, :] < nodes.gpus[:, None], MILLI, -1).astype(np.int64)
        code = np.searchsorted(np.array(models), nodes.model)
        return cls(nodes.cpu.astype(np.int64).copy(), nodes.memory.astype(np.int64).copy(), gpu,
                   code.astype(np.int64), models)

    def free_gpu(self) -> np.ndarray:
        return np.clip(self.gpu, 0, None).sum(axis=1)


def fits(state: State, cpu: int, memory: int, num: int, milli: int, access: np.ndarray) -> np.ndarray:
    """Mask of nodes the pod fits (access: per model code, may the pod use it)."""
    ok = (state.cpu >= cpu) & (state.memory >= memory)
    if num > 0:
        ok &= access[state.model] & ((state.gpu >= milli).sum(axis=1) >= num)
    return ok


def fragmentation(cpu: np.ndarray, memory: np.ndarray | None, gpu: np.ndarray, model: np.ndarray,
                  typ: Typical) -> np.ndarray:
    """FGD's F_n per node state (rows of cpu/gpu/model); with `memory` given, a typical pod also needs its
    memory to count as hostable (fleetwise's addition)."""
    left = np.clip(gpu, 0, None)                         # [K, G]
    total = left.sum(axis=1).astype(float)               # [K]
    milli = typ.milli[None, :, None]                     # [1, M, 1]
    fit_gpu = (gpu[:, None, :] >= milli).sum(axis=2)     # [K, M] GPUs with the shape's milli left
    small = (left[:, None, :] * (left[:, None, :] < milli)).sum(axis=2).astype(float)
    host = typ.access.T[model] & (fit_gpu >= typ.num[None, :]) & (cpu[:, None] >= typ.cpu[None, :])
    if memory is not None:
        host &= memory[:, None] >= typ.memory[None, :]
    host &= typ.milli[None, :] > 0                       # a CPU-only shape counts all free GPU
    per_shape = np.where(host, small, total[:, None])
    return per_shape @ typ.p


def stranded_capacity(cpu: np.ndarray, memory: np.ndarray, gpu: np.ndarray, model: np.ndarray,
                      typ: Typical) -> np.ndarray:
    """fleetwise's measure: per node state, Σ_m p_m (free milli-GPU that a stream of shape-m pods could not
    take: the node filled with as many m pods as its GPUs, CPU and memory allow)."""
    # Floating-point floor division: several times faster than int64 // on these [K, M, G] arrays, and
    # exact here (milli-GPU, milli-core and MiB counts are far below 2^53).
    left = np.clip(gpu, 0, None).astype(float)
    total = left.sum(axis=1)
    milli = np.maximum(typ.milli, 1).astype(float)
    per_gpu = np.floor(left[:, None, :] / milli[None, :, None]).sum(axis=2)   # [K, M] slots of the shape
    by_gpu = np.floor(per_gpu / np.maximum(typ.num, 1)[None, :])
    by_cpu = np.where(typ.cpu > 0, np.floor(cpu[:, None] / np.maximum(typ.cpu, 1)[None, :]), np.inf)
    by_mem = np.where(typ.memory > 0, np.floor(memory[:, None] / np.maximum(typ.memory, 1)[None, :]), np.inf)
    k = np.minimum(np.minimum(by_gpu, by_cpu), by_mem)
    k = np.where(typ.access.T[model] & (typ.milli[None, :] > 0), k, 0.0)
    usable = k * (typ.num * typ.milli)[None, :]
    return np.maximum(total[:, None] - usable, 0.0) @ typ.p


@dataclass(frozen=True)
class PackingSettings:
    """fleetwise's additions to FGD (each can be switched off; all off is FGD)."""

    memory_aware: bool = True      # a typical pod needs its memory to count as hostable
    measure: str = "capacity"      # "capacity" (stranded_capacity) or "fgd" (FGD's fragmentation)
    tight_gpu: bool = False        # among equal changes, the shared GPU with least left after
    tie_break: str = "best_fit"    # among equal fragmentation changes: "best_fit" or "first" node
    demand_weighted: bool = False  # typical pods weighted by count x GPUs asked (not by count alone)


@dataclass(frozen=True)
class Choice:
    node: int
    gpus: tuple[int, ...]


def _take_gpus(row: np.ndarray, num: int, milli: int, pick: str) -> tuple[int, ...]:
    """GPU slots for a pod on one node: `pick` "first" (lowest index) or "tight" (least left that fits)."""
    if num == 0:
        return ()
    ok = np.flatnonzero(row >= milli)
    if pick == "tight":
        ok = ok[np.argsort(row[ok], kind="stable")]
    return tuple(int(g) for g in ok[:num])


class StateIds:
    """A small integer per node naming its scoring state (CPU, model, GPUs left as a multiset, and memory
    when the measure uses it): nodes with equal ids score alike, so each decision scores one per id."""

    def __init__(self, state: State, with_memory: bool) -> None:
        self.with_memory = with_memory
        self.known: dict[tuple, int] = {}
        self.measured = np.full(0, np.nan)   # per id, the measure of that state (NaN: not yet computed)
        self.ids = np.array([self._id(state, n) for n in range(len(state.cpu))], dtype=np.int64)

    def _id(self, state: State, n: int) -> int:
        key = (int(state.cpu[n]), int(state.model[n]), tuple(sorted(state.gpu[n].tolist())),
               int(state.memory[n]) if self.with_memory else 0)
        return self.known.setdefault(key, len(self.known))

    def update(self, state: State, n: int) -> None:
        self.ids[n] = self._id(state, n)

    def measure(self, state: State, reps: np.ndarray, fn: Callable, with_memory: bool, typ: Typical) -> np.ndarray:
        """fn of each representative's state, computed once per state id (a state's measure never changes)."""
        if len(self.measured) < len(self.known):
            self.measured = np.concatenate([self.measured, np.full(len(self.known) - len(self.measured), np.nan)])
        ids = self.ids[reps]
        todo = np.isnan(self.measured[ids])
        if todo.any():
            r = reps[todo]
            self.measured[ids[todo]] = fn(state.cpu[r], state.memory[r] if with_memory else None, state.gpu[r],
                                          state.model[r], typ)
        return self.measured[ids]

    def distinct(self, idx: np.ndarray) -> np.ndarray:
        """The first node (in list order) of each distinct state among idx (idx ascending)."""
        _, first = np.unique(self.ids[idx], return_index=True)
        return idx[np.sort(first)]


def take_gpus(rows: np.ndarray, num: int, milli: int) -> np.ndarray:
    """Rows after nodeRes.Sub: `num` GPUs with `milli` taken from the least-left GPUs that fit."""
    out = rows.copy()
    if num == 0 or len(rows) == 0:
        return out
    key = np.where(rows >= milli, rows, _NEVER)
    cols = np.argsort(key, axis=1, kind="stable")[:, :num]
    r = np.arange(len(rows))[:, None]
    out[r, cols] -= milli
    return out


def _candidates(state: State, reps: np.ndarray, num: int, milli: int
                ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """(index into reps, GPU slot or None, GPU rows after) of each way to place the pod on reps: for a
    shared GPU every GPU that fits (fgd_score.go loops over them), else nodeRes.Sub's one way."""
    if num == 1 and milli < MILLI:
        cand_node, cand_gpu = np.nonzero(state.gpu[reps] >= milli)
        gpu_after = state.gpu[reps][cand_node]
        gpu_after[np.arange(len(cand_node)), cand_gpu] -= milli
        return cand_node, cand_gpu, gpu_after
    return np.arange(len(reps)), None, take_gpus(state.gpu[reps], num, milli)


def _fgd_choice(state: State, ids: StateIds, idx: np.ndarray, cpu: int, num: int, milli: int, typ: Typical,
                memory: int | None, tie_break: Callable[[np.ndarray], np.ndarray] | None,
                measure: Callable = fragmentation, tight_gpu: bool = False) -> Choice:
    with_mem = memory is not None
    reps = ids.distinct(idx)
    mem_now = state.memory[reps] if with_mem else None
    before = ids.measure(state, reps, measure, with_mem, typ)
    cand_node, cand_gpu, gpu_after = _candidates(state, reps, num, milli)
    cpu_after = state.cpu[reps][cand_node] - cpu
    mem_after = mem_now[cand_node] - memory if with_mem else None
    after = measure(cpu_after, mem_after, gpu_after, state.model[reps][cand_node], typ)
    delta = after - before[cand_node]
    best = np.flatnonzero(delta <= delta.min() + 1e-9)
    if tight_gpu and cand_gpu is not None and len(best) > 1:
        left = gpu_after[best, cand_gpu[best]]
        best = best[left <= left.min()]
    if tie_break is not None and len(best) > 1:
        score = tie_break(reps[cand_node[best]])
        best = best[score <= score.min() + 1e-12]
    k = int(best[0])
    node = int(reps[cand_node[k]])
    if cand_gpu is not None:
        return Choice(node, (int(cand_gpu[k]),))
    return Choice(node, _take_gpus(state.gpu[node], num, milli, "tight"))


def _sigmoid_score(delta: np.ndarray) -> np.ndarray:
    """fgd_score.go: int64(sigmoid((before - after) / 1000) * MaxNodeScore), MaxNodeScore = 100."""
    return np.floor(100.0 / (1.0 + np.exp(delta / 1000.0))).astype(np.int64)


def _fgd_scheduler_choice(state: State, ids: StateIds, idx: np.ndarray, cpu: int, num: int, milli: int,
                          typ: Typical, rng: np.random.Generator) -> Choice:
    """FGD as its scheduler plugin decides: each node scores the integer sigmoid of its fragmentation
    decrease (for a shared GPU, its best GPU's score, the first GPU on ties); the scheduler then picks one
    of the top-scoring nodes at random (selectHost)."""
    reps = ids.distinct(idx)
    before = ids.measure(state, reps, fragmentation, False, typ)
    cand_node, cand_gpu, gpu_after = _candidates(state, reps, num, milli)
    after = fragmentation(state.cpu[reps][cand_node] - cpu, None, gpu_after, state.model[reps][cand_node], typ)
    score = _sigmoid_score(after - before[cand_node])
    node_score = np.full(len(reps), np.iinfo(np.int64).min)
    np.maximum.at(node_score, cand_node, score)
    top_states = reps[node_score == node_score.max()]
    tied = idx[np.isin(ids.ids[idx], ids.ids[top_states])]
    node = int(tied[rng.integers(len(tied))])
    if cand_gpu is None:
        return Choice(node, _take_gpus(state.gpu[node], num, milli, "tight"))
    rep = int(np.flatnonzero(ids.ids[reps] == ids.ids[node])[0])
    mine = np.flatnonzero((cand_node == rep) & (score == node_score[rep]))
    # The representative's GPU slots stand for the chosen node's: equal states, equal sorted GPUs; map the
    # slot by its milli-GPU left, first match.
    left = state.gpu[reps[rep], cand_gpu[mine[0]]]
    return Choice(node, (int(np.flatnonzero(state.gpu[node] == left)[0]),))


MAX_SPEC_CPU = 128_000  # gpushareutils.MaxSpecCpu / MaxSpecGpu: the largest node of the trace
MAX_SPEC_GPU = 8_000


def _best_fit_score(state: State, idx: np.ndarray, cpu: int, num: int, milli: int) -> np.ndarray:
    """best_fit_score.go: Σ 0.5 (free - request) / max spec over CPU and total GPU; lower is better."""
    free_gpu = state.free_gpu()[idx]
    return (0.5 * (state.cpu[idx] - cpu) / MAX_SPEC_CPU + 0.5 * (free_gpu - num * milli) / MAX_SPEC_GPU)


def choose(method: str, state: State, ids: StateIds | None, ok: np.ndarray, cpu: int, memory: int, num: int,
           milli: int, typ: Typical, settings: PackingSettings | None = None,
           rng: np.random.Generator | None = None) -> Choice:
    settings = settings or PackingSettings()
    idx = np.flatnonzero(ok)
    if method == "first_fit":
        node = int(idx[0])
        return Choice(node, _take_gpus(state.gpu[node], num, milli, "first"))
    if method == "best_fit":
        s = _best_fit_score(state, idx, cpu, num, milli)
        node = int(idx[int(np.argmin(s))])
        return Choice(node, _take_gpus(state.gpu[node], num, milli, "tight"))
    if method == "fgd":
        return _fgd_choice(state, ids, idx, cpu, num, milli, typ, None, None)
    if method == FGD_SCHEDULER:
        return _fgd_scheduler_choice(state, ids, idx, cpu, num, milli, typ, rng or np.random.default_rng(0))
    if method == "fleetwise":
        capacity = settings.measure == "capacity"
        return _fgd_choice(state, ids, idx, cpu, num, milli, typ,
                           memory if (settings.memory_aware or capacity) else None,
                           (lambda nodes: _best_fit_score(state, nodes, cpu, num, milli))
                           if settings.tie_break == "best_fit" else None,
                           stranded_capacity if capacity else fragmentation, settings.tight_gpu)
    raise ValueError(f"unknown packing method {method!r}; choose one of {', '.join(METHODS)}")


@dataclass
class PackingResult:
    placed: np.ndarray          # per pod, placed or not
    state: State
    node_of: np.ndarray         # per pod, its node (-1 when not placed)

    def summary(self, nodes: Nodes, pods: Pods, typ: Typical) -> dict:
        allocated = float((pods.num_gpu * pods.gpu_milli)[self.placed].sum() / MILLI)
        return {"pods_placed": int(self.placed.sum()), "pods_failed": int((~self.placed).sum()),
                "gpus_allocated": round(allocated, 3),
                "gpus_stranded": round(stranded_gpus(self.state, pods, ~self.placed, typ) / MILLI, 3)}


def _access_table(pods: Pods, models: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(per pod, its spec's index) and (per distinct spec, per model code: allowed)."""
    specs, inverse = np.unique(pods.gpu_spec.astype(str), return_inverse=True)
    table = np.array([[_allowed(s, m) for m in models] for s in specs], dtype=bool).reshape(len(specs), len(models))
    return inverse, table


def stranded_gpus(state: State, pods: Pods, pending: np.ndarray, typ: Typical) -> float:
    """Free milli-GPU on nodes where no pending pod and no typical pod (with its smallest memory) fits."""
    free = state.free_gpu()
    usable = np.zeros(len(free), dtype=bool)
    spec_of, table = _access_table(pods, state.models)
    shapes = {(int(pods.cpu[i]), int(pods.memory[i]), int(pods.num_gpu[i]), int(pods.gpu_milli[i]),
               int(spec_of[i])) for i in np.flatnonzero(pending) if pods.num_gpu[i] > 0}
    for c, m, n, g, s in shapes:
        usable |= fits(state, c, m, n, g, table[s])
    for j in range(len(typ.p)):
        if typ.num[j] > 0:
            usable |= fits(state, int(typ.cpu[j]), int(typ.memory[j]), int(typ.num[j]), int(typ.milli[j]),
                           typ.access[j])
    return float(free[~usable & (free > 0)].sum())


def demand_weighted(typ: Typical) -> Typical:
    """The same shapes weighted by count x GPUs asked (CPU-only shapes as a tenth of a GPU)."""
    p = typ.p * np.maximum(typ.num * typ.milli / MILLI, 0.1)
    return replace(typ, p=p / p.sum())


def pack(method: str, nodes: Nodes, pods: Pods, typ: Typical | None = None,
         progress: Callable[[int, int], None] | None = None, settings: PackingSettings | None = None,
         seed: int = 0) -> PackingResult:
    """Place every pod in the given order (arrival order); a pod that fits nowhere stays unplaced."""
    settings = settings or PackingSettings()
    state = State.empty(nodes)
    typ = typ if typ is not None else typical_pods(pods, state.models)
    if method == "fleetwise" and settings.demand_weighted:
        typ = demand_weighted(typ)
    spec_of, table = _access_table(pods, state.models)
    placed = np.zeros(len(pods), dtype=bool)
    node_of = np.full(len(pods), -1, dtype=np.int64)
    rng = np.random.default_rng(seed)
    with_memory = method == "fleetwise" and (settings.memory_aware or settings.measure == "capacity")
    ids = StateIds(state, with_memory) if method in ("fgd", "fleetwise", FGD_SCHEDULER) else None
    for i in range(len(pods)):
        cpu, mem, num = int(pods.cpu[i]), int(pods.memory[i]), int(pods.num_gpu[i])
        milli = int(pods.gpu_milli[i]) if num else 0
        ok = fits(state, cpu, mem, num, milli, table[spec_of[i]])
        if ok.any():
            c = choose(method, state, ids, ok, cpu, mem, num, milli, typ, settings, rng)
            state.cpu[c.node] -= cpu
            state.memory[c.node] -= mem
            for g in c.gpus:
                state.gpu[c.node, g] -= milli
            if ids is not None:
                ids.update(state, c.node)
            placed[i] = True
            node_of[i] = c.node
        if progress is not None:
            progress(i + 1, len(pods))
    return PackingResult(placed, state, node_of)
