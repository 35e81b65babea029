"""The node agent must stay light: no pandas, numpy, pyarrow, duckdb, scikit-learn or dash."""

import json
import subprocess
import sys

HEAVY = ("pandas", "numpy", "pyarrow", "duckdb", "sklearn", "dash", "scipy", "plotly")

SCRIPT = """
import contextlib, io, json, sys
from fleetwise.cli import main
with contextlib.redirect_stdout(io.StringIO()) as out:
    rc = main(["agent", "--once"])
print(json.dumps({"rc": rc, "lines": len(out.getvalue().splitlines()),
                  "heavy": sorted(m for m in sys.modules if m.split(".")[0] in %r)}))
"""


def test_agent_once_imports_nothing_heavy():
    result = subprocess.run([sys.executable, "-c", SCRIPT % (HEAVY,)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["rc"] == 0
    assert report["lines"] > 5
    assert report["heavy"] == []
