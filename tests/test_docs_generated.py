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


def test_configuration_doc_is_generated_from_the_models():
    from agents.config_reference import render_markdown as render_config

    doc = (REPO / "docs" / "configuration.md").read_text()
    assert doc == render_config(), "docs/configuration.md is stale: run `make docs`"


def test_example_config_is_valid_and_shows_the_defaults():
    from agents.config import Config, load_config

    example = load_config(REPO / "deploy" / "config" / "agent.toml", env={})
    defaults = Config()
    assert example.agent == defaults.agent
    assert example.store == defaults.store
    assert example.recommend == defaults.recommend
