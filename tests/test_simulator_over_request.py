"""Recurring over-requested training jobs in the simulator: profile [[mix.over_request]],
agents/simulate/over_request.py."""

from __future__ import annotations

import pytest

from agents.simulate import plan
from agents.simulate import workloads as wl
from agents.simulate.emit import process_gpus
from agents.simulate.profile import DEFAULT_PROFILE, ProfileError, parse_profile

CAMPAIGN = """
[[mix.over_request]]
workload = "squad/bert_base_uncased"
accelerator = "A100"
devices = 4
devices_used = 2
every_hours = 6
hours = 3
user = "team-nlp"
name = "nightly-finetune"
"""


def test_over_requested_jobs_hold_more_gpus_than_they_run_on():
    prof = parse_profile(DEFAULT_PROFILE + CAMPAIGN, "p.toml")
    _, nodes, jobs, rounds = plan(16, 1, 60, 1, prof)
    ours = [j for j in jobs if j.user == "team-nlp"]
    # one every 6 h over 24 h, from the start: rounds 0, 360, 720, 1080
    assert [j.arrival for j in ours] == [0, 360, 720, 1080] and rounds == 1440
    assert all(j.name == "nightly-finetune" and j.devices_per_node == 4 and j.devices_used == 2 for j in ours)
    placed = [j for j in ours if j.start is not None]
    assert placed
    for j in placed:
        (node,) = j.hosts
        assert process_gpus(j, node) == j.gpus[node][:2] and len(j.gpus[node]) == 4
        # it runs as a 2-GPU job of the workload would: same throughput as training_truth at 2 devices
        net = nodes[node].cls.network.bytes_per_second
        tt = wl.training_truth("squad/bert_base_uncased", "A100", 2, 1, net, 1.0, j.cpus_per_node, 1.0, 1.0)
        assert j.truth["throughput"] == pytest.approx(tt.throughput)
    # without the campaign, the same seed draws the same random jobs (the campaign draws no random numbers)
    _, _, plain, _ = plan(16, 1, 60, 1, parse_profile(DEFAULT_PROFILE, "p.toml"))
    assert [(j.id, j.workload, j.arrival) for j in plain] == [(j.id, j.workload, j.arrival) for j in jobs
                                                              if j.user != "team-nlp"]


def test_over_request_is_validated():
    bad = CAMPAIGN.replace("devices_used = 2", "devices_used = 4")
    with pytest.raises(ProfileError, match=r"p.toml: mix.over_request\[0\].devices_used: .*must be below devices 4"):
        parse_profile(DEFAULT_PROFILE + bad, "p.toml")
    with pytest.raises(ProfileError, match=r"mix.over_request\[0\].workload: .*unknown training workload 'mnist'"):
        parse_profile(DEFAULT_PROFILE + CAMPAIGN.replace('"squad/bert_base_uncased"', '"mnist"'), "p.toml")
