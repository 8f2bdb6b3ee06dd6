"""The local stack's command line and the environment its processes get (no processes started)."""

from __future__ import annotations

import pytest

from infra.local.options import LOCAL_SETTINGS, demo_options, parse_args, settings_from_environment
from infra.local.processes import child_environment


def test_ports_come_from_the_environment_unless_given_on_the_command_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MOTO_PORT", "5055")
    monkeypatch.setenv("API_PORT", "")

    args = parse_args(["--mqtt-port", "18883"])

    assert (args.moto_port, args.api_port, args.mqtt_port) == (5055, 8000, 18883)


def test_a_port_that_is_not_a_number_stops_with_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MQTT_PORT", "mqtt")

    with pytest.raises(SystemExit, match=r"MQTT_PORT='mqtt' is not a port number"):
        parse_args([])


def test_the_demo_runs_only_with_mqtt() -> None:
    assert demo_options(parse_args(["--no-mqtt"])) is None
    assert demo_options(parse_args(["--no-demo"])) is None
    demo = demo_options(parse_args(["--demo-meters", "3", "--demo-buyers", "1"]))
    assert demo is not None and (demo.meters, demo.buyers) == (3, 1)


def test_exported_application_settings_override_the_local_ones(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DISPUTE_WINDOW_MS", "1000")
    monkeypatch.setenv("HOME_AUTOMATION_TOKEN", "not an application setting")

    settings = {**LOCAL_SETTINGS, **settings_from_environment()}

    assert settings["DISPUTE_WINDOW_MS"] == "1000"
    assert settings["CREDIT_LIFETIME_MS"] == LOCAL_SETTINGS["CREDIT_LIFETIME_MS"]
    assert "HOME_AUTOMATION_TOKEN" not in settings


def test_a_developers_aws_settings_do_not_reach_the_stacks_processes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_PROFILE", "production")
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", "https://dynamodb.eu-west-1.amazonaws.com")
    monkeypatch.setenv("NO_PROXY", "internal.example")

    environment = child_environment({"AWS_ENDPOINT_URL_SQS": "http://127.0.0.1:5000"}, "127.0.0.1")

    assert "AWS_PROFILE" not in environment
    assert "AWS_ENDPOINT_URL_DYNAMODB" not in environment
    assert environment["AWS_ENDPOINT_URL_SQS"] == "http://127.0.0.1:5000"
    assert environment["NO_PROXY"] == "internal.example,127.0.0.1,localhost"
