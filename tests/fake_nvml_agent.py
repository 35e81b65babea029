"""`fleetwise agent` in its own process with a fake NVML (tests/fake_nvml.py) at the pynvml function boundary.

    python -m tests.fake_nvml_agent GPUS.json -- agent --config FILE ...

GPUS.json is a list of FakeGpu keyword dicts (NVML's units: bytes, percent, mW, mJ). Only the nvml* functions of
the real pynvml module are replaced, before the command line runs, so the agent's nvidia collector, its error
handling and everything after it are the real ones. Nothing here imports more than the agent itself would
(pynvml, ctypes), so the agent's light-process rule still holds in this process.
"""

from __future__ import annotations

import json
import sys

import pynvml

from tests.fake_nvml import FakeGpu, FakeNVML


class _SetAttr:
    """The one monkeypatch method FakeNVML.install uses; this process never undoes it."""

    @staticmethod
    def setattr(target, name: str, value) -> None:
        setattr(target, name, value)

    @staticmethod
    def delattr(target, name: str, raising: bool = True) -> None:
        if hasattr(target, name) or raising:
            delattr(target, name)


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[1] != "--":
        print("usage: python -m tests.fake_nvml_agent GPUS.json -- FLEETWISE-ARGS...", file=sys.stderr)
        return 2
    with open(argv[0], encoding="utf-8") as f:
        gpus = [FakeGpu(**spec) for spec in json.load(f)]
    FakeNVML(gpus).install(_SetAttr())
    assert pynvml.nvmlDeviceGetCount() == len(gpus)  # the collector will see these, not libnvidia-ml

    from fleetwise.cli import main as fleetwise_main

    return fleetwise_main(argv[2:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
