import textwrap

import pytest

from agents.config import ConfigError, load_config, parse_listen
from tests.helpers import run_cli


def write(tmp_path, text: str):
    path = tmp_path / "agent.toml"
    path.write_text(textwrap.dedent(text))
    return path


def test_defaults_need_no_file():
    config = load_config(None, env={})
    assert config.agent.interval_seconds == 10.0
    assert config.agent.listen == ""
    assert "cpu" in config.agent.collectors and "jobs" in config.agent.collectors


def test_file_values_and_collector_options(tmp_path):
    path = write(tmp_path, """
        [agent]
        interval_seconds = 5
        collectors = ["memory"]
        listen = ":9464"
    """)
    config = load_config(path, env={})
    assert config.agent.interval_seconds == 5.0
    assert config.agent.collectors == ["memory"]
    assert parse_listen(config.agent.listen) == ("127.0.0.1", 9464)


@pytest.mark.parametrize(("text", "key", "problem"), [
    ("[agent]\nintervall_seconds = 5\n", "agent.intervall_seconds", "unknown key"),
    ("[agent]\ninterval_seconds = \"often\"\n", "agent.interval_seconds", "valid number"),
    ("[agent]\ninterval_seconds = -1\n", "agent.interval_seconds", "greater than or equal to 0.1"),
    ("[agent]\ncollectors = [\"cpu\", \"gpus\"]\n", "agent.collectors", "unknown collector"),
    ("[agent]\nlisten = \"9464\"\n", "agent.listen", "HOST:PORT"),
    ("[storage]\nurl = \"x\"\n", "storage", "unknown key"),
    ("[collectors.memory]\nfoo = 1\n", "collectors.memory.foo", "unknown key"),
    ("[collectors.gpus]\n", "collectors.gpus", "unknown collector"),
])
def test_bad_config_names_file_key_and_problem(tmp_path, text, key, problem):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_config(path, env={})
    assert err.value.source == str(path)
    assert err.value.key == key
    assert problem in err.value.problem


def test_invalid_toml_and_missing_file(tmp_path):
    path = write(tmp_path, "[agent\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(path, env={})
    with pytest.raises(ConfigError, match="No such file"):
        load_config(tmp_path / "absent.toml", env={})


def test_environment_overrides_file(tmp_path):
    path = write(tmp_path, "[agent]\ninterval_seconds = 5\n")
    env = {"FLEETWISE_AGENT__INTERVAL_SECONDS": "30", "FLEETWISE_AGENT__COLLECTORS": '["memory", "cpu"]',
           "FLEETWISE_AGENT__HOST": "node-7", "UNRELATED": "1"}
    config = load_config(path, env=env)
    assert config.agent.interval_seconds == 30.0
    assert config.agent.collectors == ["memory", "cpu"]
    assert config.agent.host == "node-7"


def test_bad_environment_override_is_blamed_on_the_variable(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_config(None, env={"FLEETWISE_AGENT__INTERVAL_SECONDS": "soon"})
    assert err.value.source == "environment FLEETWISE_AGENT__INTERVAL_SECONDS"
    assert err.value.key == "agent.interval_seconds"


def test_config_check_cli_exit_codes(tmp_path):
    good = write(tmp_path, "[agent]\ninterval_seconds = 5\n")
    result = run_cli(["config", "check", str(good)])
    assert result.returncode == 0, result.stderr
    bad = tmp_path / "bad.toml"
    bad.write_text("[agent]\ninterval_seconds = 0\n")
    result = run_cli(["config", "check", str(bad)])
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert str(bad) in lines[0] and "agent.interval_seconds" in lines[0] and "greater than or equal to 0.1" in lines[0]


def test_agent_with_bad_config_exits_2(tmp_path):
    bad = write(tmp_path, "[agent]\ncollectors = [\"nope\"]\n")
    result = run_cli(["agent", "--once", "--config", str(bad)])
    assert result.returncode == 2
    assert "agent.collectors" in result.stderr


def test_bad_command_line_value_exits_2():
    result = run_cli(["agent", "--once", "--listen", "nowhere"])
    assert result.returncode == 2
    assert "listen" in result.stderr
