"""One canonical key per accelerator type, from whatever the driver, a job request or a config file calls it."""

from __future__ import annotations

import pytest

from agents.schema.accelerators import accelerator_family, accelerator_key, accelerator_name


@pytest.mark.parametrize("model,family,key,name", [
    ("NVIDIA A100-SXM4-80GB", "A100", "a100-80gb", "A100 80GB"),
    ("NVIDIA A100-SXM4-40GB", "A100", "a100-40gb", "A100 40GB"),
    ("Tesla V100-SXM2-32GB", "V100", "v100-32gb", "V100 32GB"),
    ("NVIDIA H100 80GB HBM3", "H100", "h100-80gb", "H100 80GB"),
    ("AMD Instinct MI250", "MI250", "mi250", "MI250"),
    ("AMD Instinct MI300X", "MI300X", "mi300x", "MI300X"),
    ("NVIDIA GeForce RTX 4090", "RTX 4090", "rtx-4090", "RTX 4090"),
    ("NVIDIA L40S", "L40S", "l40s", "L40S"),
    ("A100", "A100", "a100", "A100"),  # a job's request names the type without the board
])
def test_key_family_and_display_name(model, family, key, name):
    assert accelerator_family(model) == family
    assert accelerator_key(model) == key
    assert accelerator_name(model) == name == accelerator_name(key)
    assert accelerator_key(key) == key  # idempotent: a key is its own key


def test_no_accelerator():
    assert accelerator_key("") == "" and accelerator_name("") == "" and accelerator_family("") == "unknown"


def test_the_simulator_and_the_job_table_agree():
    from agents.simulate.hardware import ACCELERATORS

    keys = {k: a.canonical_key for k, a in ACCELERATORS.items()}
    assert keys == {"V100": "v100-32gb", "A100": "a100-80gb", "H100": "h100-80gb", "MI250": "mi250"}
