"""Channels from the config file: the documented format, secrets from env or files, clear errors."""
from __future__ import annotations

import pytest

from config.settings import SettingsError, load_settings


def _settings(tmp_path, toml: str, env: dict | None = None):
    path = tmp_path / "queuewatch.toml"
    path.write_text(toml)
    return load_settings(env=env or {}, config_path=str(path))


def test_each_channel_type_parses_with_its_routes_and_secrets(tmp_path):
    (tmp_path / "pw").write_text("hunter2\n")
    settings = _settings(tmp_path, f"""
[notify]
repeat_interval_s = 3600

[[notify.channels]]
name = "ops"
type = "slack"
url_env = "SLACK_URL"
severities = ["critical"]
queues = ["payments-*"]
libraries = ["rq", "bullmq"]
repeat_interval_s = 0

[[notify.channels]]
type = "pagerduty"
routing_key_env = "PD_KEY"

[[notify.channels]]
type = "email"
host = "smtp.example.com"
username = "bot"
password_file = "{tmp_path / 'pw'}"
to = ["a@example.com", "b@example.com"]

[[notify.channels]]
type = "webhook"
url = "https://hooks.example.com/q"
""", {"SLACK_URL": "https://hooks.slack.com/services/T/B/X", "PD_KEY": "k" * 32, "QUEUEWATCH_WEBHOOK_SECRET": "s"})
    slack, pager, mail, hook = settings.channels
    assert slack.route.severities == ("critical",) and slack.route.queues == ("payments-*",)
    assert slack.route.libraries == ("rq", "bullmq") and slack.repeat_interval_s == 0
    assert slack.url.reveal() == "https://hooks.slack.com/services/T/B/X" and slack.cursor_name == "notify:ops"
    assert pager.name == "pagerduty" and pager.routing_key.reveal() == "k" * 32 and pager.repeat_interval_s == 3600
    assert pager.events_url == "https://events.pagerduty.com/v2/enqueue"
    assert mail.password.reveal() == "hunter2" and mail.smtp_port == 587 and mail.smtp_tls == "starttls"
    assert mail.recipients == ("a@example.com", "b@example.com")
    assert hook.url.reveal() == "https://hooks.example.com/q" and hook.signing_secret.reveal() == "s"
    shown = repr(settings)
    assert "hunter2" not in shown and "hooks.slack.com" not in shown and "k" * 32 not in shown


def test_the_default_repeat_interval_is_four_hours(tmp_path):
    (channel,) = _settings(tmp_path, '[[notify.channels]]\ntype = "webhook"\nurl = "http://h/x"\n').channels
    assert channel.repeat_interval_s == 14400 and channel.max_attempts == 8


@pytest.mark.parametrize("toml,env,message", [
    ('type = "sms"', {}, "type must be one of"),
    ('type = "slack"\nurl = "https://hooks.slack.com/x"', {}, "url is a credential"),
    ('type = "slack"\nurl_env = "U"\nurl_file = "/x"', {"U": "u"}, "give one of"),
    ('type = "email"\nto = []', {}, "to must list"),
    ('type = "email"\nto = ["a@b"]\ntls = "maybe"', {}, "tls must be one of"),
    ('type = "webhook"\nurl = "http://h"\nseverities = ["info"]', {}, "severities must be among"),
    ('type = "webhook"\nurl = "http://h"\ncolour = "red"', {}, "unknown key"),
    ('type = "webhook"\nurl = "http://h"\nrepeat_interval_s = -1', {}, "repeat_interval_s must be"),
    ('type = "webhook"\nurl = "http://h"\nname = "has space"', {}, "name must be"),
])
def test_bad_channels_are_refused_with_the_reason(tmp_path, toml, env, message):
    with pytest.raises(SettingsError, match=message):
        _settings(tmp_path, "[[notify.channels]]\n" + toml + "\n", env)


def test_an_unset_secret_variable_is_named_but_no_value_is_shown(tmp_path):
    with pytest.raises(SettingsError) as caught:
        _settings(tmp_path, '[[notify.channels]]\ntype = "pagerduty"\nrouting_key = "abc123secret"\n')
    assert "abc123secret" not in str(caught.value)


def test_duplicate_names_and_the_env_webhook_name_clash(tmp_path):
    twice = '[[notify.channels]]\ntype = "webhook"\nurl = "http://h"\n' * 2
    with pytest.raises(SettingsError, match="two channels are named 'webhook'"):
        _settings(tmp_path, twice)
    with pytest.raises(SettingsError, match="QUEUEWATCH_WEBHOOK_URL"):
        _settings(tmp_path, '[[notify.channels]]\ntype = "webhook"\nurl = "http://h"\n',
                  {"QUEUEWATCH_WEBHOOK_URL": "http://other"})


def test_a_missing_secret_is_noted_for_the_collector_not_raised_for_everyone(tmp_path):
    """The dashboard and the API read the same config file without the channels' secrets in their env."""
    settings = _settings(tmp_path, """
[[notify.channels]]
type = "slack"
url_env = "NOPE"

[[notify.channels]]
type = "pagerduty"
routing_key_file = "/nonexistent/key"
""")
    slack, pager = settings.channels
    assert slack.unresolved == "environment variable NOPE (from url_env) is not set"
    assert pager.unresolved.startswith("cannot read routing_key_file /nonexistent/key")
    assert slack.secrets() == [] and pager.secrets() == []


def test_collect_refuses_to_start_with_a_missing_secret(tmp_path, db_url):
    from tests.queuewatch.test_bad_input import run_cli

    config = tmp_path / "queuewatch.toml"
    config.write_text('[[notify.channels]]\nname = "ops"\ntype = "slack"\nurl_env = "QW_TEST_UNSET_SLACK"\n')
    result = run_cli("collect", "--redis", "redis://127.0.0.1:1/0", "--db", db_url, "--config", str(config))
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [
        f"queuewatch: {config}: channel ops: environment variable QW_TEST_UNSET_SLACK (from url_env) is not set"]
