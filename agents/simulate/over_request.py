"""Recurring over-requested training jobs (profile `[[mix.over_request]]`): a team re-runs one training job
on one GPU type, asking for more GPUs than its program runs on.

The common case jobstats reports as "GPUs allocated but unused": a script launched with a fixed world size
(`torchrun --nproc_per_node=2`) inside a 4-GPU allocation, or a one-GPU script submitted with `--gpus=4`.
The held GPUs beyond `devices_used` have no process and read 0% busy; the job runs exactly as a
`devices_used`-GPU job would (truth.derive). Deterministic: no random numbers are drawn, so enabling it
changes no other job's draws (placement may still shift, since these jobs take GPUs too).
"""

from __future__ import annotations

from agents.simulate.scheduler import Job, Node


def over_request_jobs(mix, nodes: list[Node], rounds: int, interval: float, first: int) -> list[Job]:
    """One job every `every_hours` per campaign, ids continuing from `first`."""
    out: list[Job] = []
    per_node: dict[str, int] = {}
    for n in nodes:
        if n.cls.accelerator is not None:
            per_node[n.cls.accelerator.key] = max(per_node.get(n.cls.accelerator.key, 0), n.cls.devices)
    for c in mix.over_request:
        if per_node.get(c.accelerator, 0) < c.devices:
            continue  # no node of that type holds the ask: the campaign cannot run on this fleet
        every = max(1, int(c.every_hours * 3600 // interval))
        duration = max(1, int(c.hours * 3600 // interval))
        for arrival in range(0, rounds, every):
            out.append(Job(f"{100000 + first + len(out)}", "training", c.workload, c.user, "slurm", arrival,
                           duration, c.accelerator, c.devices, 1, 4 * c.devices, (32 << 30) * c.devices,
                           devices_used=c.devices_used, name=c.name))
    return out
