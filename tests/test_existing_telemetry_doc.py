"""The mapping table (agents.schema.equivalents) against the schema, and the docs generated from it."""

from __future__ import annotations

from agents import schema
from agents.schema.equivalents import EQUIVALENTS, VIEWS, equivalents, views
from agents.schema.existing_reference import render_markdown
from agents.schema.reference import render_markdown as render_metrics
from tests.conftest import REPO


def test_existing_telemetry_doc_is_generated_from_the_table():
    doc = (REPO / "docs" / "existing-telemetry.md").read_text()
    assert doc == render_markdown(), "docs/existing-telemetry.md is stale: run `make docs`"
    metrics = (REPO / "docs" / "metrics.md").read_text()
    assert metrics == render_metrics(), "docs/metrics.md is stale: run `make docs`"
    # one table drives both: the metrics reference shows the readers' conversion of FB_USED
    assert "DCGM_FI_DEV_FB_USED (MiB), x 1048576" in metrics


def test_every_equivalent_names_a_schema_field_and_has_a_view():
    for e in EQUIVALENTS:
        m = schema.get(e.measurement)
        assert e.field in m.fields, f"{e.measurement}.{e.field}"
        assert e.scale > 0, e  # conditions are divided by the scale: a sign flip would turn < into >
        assert views(e.source, e.measurement), f"no view for {e.source} {e.measurement}"
    for v in VIEWS:
        m = schema.get(v.measurement)
        assert {t for t, _ in v.tags} <= set(m.tags), v
        assert ("host" in dict(v.tags)), v


def test_units_by_hand():
    """Each source's documented unit -> fleetwise's base unit, worked by hand."""
    def scale(source, measurement, field):
        (e,) = [e for e in equivalents(source, measurement) if e.field == field][:1]
        return e.scale
    assert scale("dcgm-exporter", "gpu", "memory_used_bytes") == 1_048_576  # MiB
    assert scale("dcgm-exporter", "gpu", "utilization_ratio") == 0.01  # %
    assert scale("dcgm-exporter", "gpu", "energy_joules") == 0.001  # mJ
    assert scale("dcgm-exporter", "gpu", "sm_clock_hertz") == 1e6  # MHz
    assert scale("telegraf", "infiniband", "xmit_bytes_per_second") == 4  # port_xmit_data counts 4-byte words
    assert scale("telegraf", "gpu", "memory_total_bytes") == 1_048_576  # nvidia_smi memory_total: MiB
