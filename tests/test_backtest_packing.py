"""Packing backtest (analyzer.recommend.packing, analyzer.validate.packing, `fleetwise backtest packing`)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from analyzer.recommend.packing import Nodes, Pods, State, fragmentation, pack, typical_pods
from analyzer.validate.packing import read_nodes, read_pods
from fleetwise.cli import main
from tests.conftest import require_data


def _nodes(*rows: tuple[str, int, int, int, str]) -> Nodes:
    names, cpu, mem, gpus, model = zip(*rows, strict=True)
    return Nodes(np.array(names), np.array(cpu), np.array(mem), np.array(gpus), np.array(model))


def _pods(*rows: tuple[int, int, int, int, str]) -> Pods:
    cpu, mem, num, milli, spec = zip(*rows, strict=True)
    return Pods(np.array([f"p{i}" for i in range(len(rows))]), np.array(cpu), np.array(mem), np.array(num),
                np.array(milli), np.array(spec))


def test_typical_pods_cover_95_percent_of_pods_by_frequency():
    # shapes A x5, B x3, C x1, D x1: 5, 8, 9 pods cover 50%, 80%, 90% < 95%, so all four are typical
    pods = _pods(*[(1000, 10, 1, 500, "")] * 5, *[(2000, 10, 1, 1000, "")] * 3, (4000, 10, 0, 0, ""),
                 (8000, 10, 2, 1000, ""))
    typ = typical_pods(pods, [""])
    assert typ.p.tolist() == pytest.approx([0.5, 0.3, 0.1, 0.1])
    # at 80% coverage, A and B suffice and their frequencies renormalise to 5/8 and 3/8
    typ = typical_pods(pods, [""], coverage=0.8)
    assert typ.p.tolist() == pytest.approx([5 / 8, 3 / 8]) and typ.milli.tolist() == [500, 1000]


def test_fragmentation_of_one_node_by_hand():
    # A node with GPUs left [1000, 300] and 10 cores. Typical: X = (1 core, 1 x 500 milli) with p 0.5 and
    # a CPU-only pod with p 0.5. X fits (GPU 0), so only GPU 1's 300 is a fragment for it; the CPU-only
    # pod counts all 1300 free. F = 0.5 * 300 + 0.5 * 1300 = 800.
    pods = _pods((1000, 10, 1, 500, ""), (1000, 10, 0, 0, ""))
    typ = typical_pods(pods, ["V100"])
    f = fragmentation(np.array([10000]), None, np.array([[1000, 300]]), np.array([0]), typ)
    assert f.tolist() == pytest.approx([800.0])
    # With 500 cores less than X needs, X cannot run there: all 1300 count for it too.
    f = fragmentation(np.array([500]), None, np.array([[1000, 300]]), np.array([0]), typ)
    assert f.tolist() == pytest.approx([1300.0])


def test_best_fit_strands_a_gpu_that_fgd_keeps_usable():
    # A CPU node and a 1-GPU node with 8 cores. A CPU-only pod (6 cores) arrives, then a GPU pod (4 cores).
    # best-fit scores 0.5 * cpu_left / 128000 + 0.5 * gpu_left / 8000: CPU node 0.4766, GPU node 0.0703,
    # so it puts the CPU pod on the GPU node and the GPU pod then fits nowhere: 1 GPU stranded.
    # FGD: on the CPU node the fragmentation does not change (no GPUs); on the GPU node it grows by 500
    # (the GPU pod could no longer run there), so the CPU pod goes to the CPU node and both fit.
    nodes = _nodes(("cpu", 128000, 100000, 0, ""), ("gpu", 8000, 100000, 1, "T4"))
    pods = _pods((6000, 1000, 0, 0, ""), (4000, 1000, 1, 1000, ""))
    typ = typical_pods(pods, State.empty(nodes).models)
    bf = pack("best_fit", nodes, pods, typ)
    assert bf.node_of.tolist() == [1, -1]
    assert bf.summary(nodes, pods, typ) == {"pods_placed": 1, "pods_failed": 1, "gpus_allocated": 0.0,
                                            "gpus_stranded": 1.0}
    for method in ("fgd", "fleetwise"):
        r = pack(method, nodes, pods, typ)
        assert r.node_of.tolist() == [0, 1]
        assert r.summary(nodes, pods, typ) == {"pods_placed": 2, "pods_failed": 0, "gpus_allocated": 1.0,
                                               "gpus_stranded": 0.0}


def test_gpu_model_constraints_and_sharing_are_honored():
    # Two T4 GPUs on one node, one V100 on another. A V100-only pod must take the V100; three 400-milli
    # pods share: two fit one T4 GPU (800), the third opens the second.
    nodes = _nodes(("t4", 64000, 100000, 2, "T4"), ("v100", 64000, 100000, 1, "V100"))
    pods = _pods((1000, 10, 1, 1000, "V100"), (1000, 10, 1, 400, "T4"), (1000, 10, 1, 400, "T4"),
                 (1000, 10, 1, 400, "T4"), (1000, 10, 1, 1000, "V100|A100"))
    r = pack("first_fit", nodes, pods)
    assert r.node_of.tolist() == [1, 0, 0, 0, -1]          # the V100 is taken; no other node is allowed
    assert sorted(r.state.gpu[0].tolist()) == [200, 600]
    assert r.state.gpu[1].tolist() == [0, -1]                # -1: a slot the 1-GPU node does not have


def test_memory_is_honored_for_fit():
    nodes = _nodes(("n", 64000, 1000, 1, "T4"))
    r = pack("first_fit", nodes, _pods((1000, 600, 1, 500, ""), (1000, 600, 1, 500, "")))
    assert r.node_of.tolist() == [0, -1]


def _csv(path, header: str, rows: list[str]) -> str:
    path.write_text(header + "\n" + "\n".join(rows) + "\n")
    return str(path)


def test_cli_reports_every_method_as_json(tmp_path, capsys):
    nodes = _csv(tmp_path / "nodes.csv", "sn,cpu_milli,memory_mib,gpu,model",
                 ["c,128000,100000,0,", "g,8000,100000,1,T4"])
    pods = _csv(tmp_path / "pods.csv", "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,creation_time",
                ["b,4000,1000,1,1000,,5", "a,6000,1000,0,0,,1"])   # arrival order is by creation_time
    rc = main(["backtest", "packing", "--nodes", nodes, "--pods", pods, "--format", "json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0
    assert out["methods"]["best_fit"]["pods_placed"] == 1 and out["methods"]["best_fit"]["gpus_stranded"] == 1.0
    assert out["methods"]["fgd"]["pods_placed"] == 2 and out["methods"]["fgd"]["gpus_allocated"] == 1.0


def test_cli_missing_column_and_bad_rows_exit_2_with_one_line(tmp_path, capsys):
    nodes = _csv(tmp_path / "nodes.csv", "sn,cpu_milli,memory_mib,gpu", ["g,8000,100000,1"])
    pods = _csv(tmp_path / "pods.csv", "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,creation_time",
                ["a,6000,1000,1,1500,,1"])
    assert main(["backtest", "packing", "--nodes", nodes, "--pods", pods]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and nodes in err and "'model'" in err
    nodes = _csv(tmp_path / "nodes.csv", "sn,cpu_milli,memory_mib,gpu,model", ["g,8000,100000,1,T4"])
    assert main(["backtest", "packing", "--nodes", nodes, "--pods", pods]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and pods in err and "'gpu_milli'" in err and "line 2" in err


def _first_fit_by_hand(nodes: Nodes, pods: Pods) -> int:
    """An independent first-fit in plain Python: lists of GPU milli left per node."""
    cpu, mem = nodes.cpu.tolist(), nodes.memory.tolist()
    gpus = [[1000] * int(g) for g in nodes.gpus]
    placed = 0
    for c, m, n, g, spec in zip(pods.cpu, pods.memory, pods.num_gpu, pods.gpu_milli, pods.gpu_spec, strict=True):
        allowed = [s for s in str(spec).split("|") if s]
        for k in range(len(cpu)):
            if cpu[k] < c or mem[k] < m or (n and allowed and nodes.model[k] not in allowed):
                continue
            free = [i for i, left in enumerate(gpus[k]) if left >= g] if n else []
            if len(free) < n:
                continue
            cpu[k] -= c
            mem[k] -= m
            for i in free[:n]:
                gpus[k][i] -= g
            placed += 1
            break
    return placed


@pytest.mark.data
def test_real_trace_first_fit_matches_an_independent_first_fit():
    data = require_data("alibaba-gpu-2023")
    nodes = read_nodes(data / "openb_node_list_all_node.csv")
    pods = read_pods(data / "openb_pod_list_default.csv")
    assert len(pods) == 8152 and len(nodes.names) == 1523 and int(nodes.gpus.sum()) == 6212
    # arrival order
    head = Pods(*(getattr(pods, f)[:1500] for f in ("names", "cpu", "memory", "num_gpu", "gpu_milli", "gpu_spec")))
    r = pack("first_fit", nodes, head)
    assert int(r.placed.sum()) == _first_fit_by_hand(nodes, head)
