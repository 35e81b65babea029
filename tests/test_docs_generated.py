from agents import schema
from agents.schema.reference import render_markdown
from tests.conftest import REPO


def test_metrics_doc_is_generated_from_the_schema():
    doc = (REPO / "docs" / "metrics.md").read_text()
    assert doc == render_markdown(), "docs/metrics.md is stale: run `make docs`"


def test_schema_conventions():
    units = ("_bytes", "_seconds", "_watts", "_joules", "_ratio", "_celsius", "_hertz", "_per_second")
    for m in schema.MEASUREMENTS.values():
        assert m.tags[0] == "host"
        assert not set(m.tags) & set(m.fields), m.name
        for f in m.fields.values():
            assert f.help.strip(), f"{m.name}.{f.name} has no help"
            if f.kind is schema.Kind.COUNTER:
                assert m.prometheus_name(f.name).endswith("_total")
            if f.name.endswith(units):
                assert f.type is not str
