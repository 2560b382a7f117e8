from __future__ import annotations

import pytest

from config.settings import SettingsError, load_settings


def test_defaults():
    settings = load_settings(env={})
    assert settings.redis_url == "redis://localhost:6379/0"
    assert settings.db_url.startswith("sqlite:///")
    assert settings.interval_s == 10.0 and settings.retention_days == 7.0 and settings.retention_s == 7 * 86400
    assert settings.thresholds.default.queue_depth_warning == 200


def test_environment_and_overrides():
    env = {"QUEUEWATCH_INTERVAL_S": "2.5", "QUEUEWATCH_RETENTION_DAYS": "3", "QUEUEWATCH_REDIS_URL": "redis://x:1/2"}
    settings = load_settings(env=env, redis_url="redis://flag:9/0")
    assert settings.interval_s == 2.5 and settings.retention_days == 3.0
    assert settings.redis_url == "redis://flag:9/0"


@pytest.mark.parametrize("env", [{"QUEUEWATCH_INTERVAL_S": "soon"}, {"QUEUEWATCH_RETENTION_DAYS": "-1"},
                                 {"QUEUEWATCH_SAMPLE_JOBS": "0"}])
def test_bad_values_are_rejected_clearly(env):
    with pytest.raises(SettingsError, match=next(iter(env))):
        load_settings(env=env)


def test_thresholds_file(tmp_path):
    path = tmp_path / "qw.toml"
    path.write_text("[thresholds]\nqueue_depth_warning = 50\n\n"
                    "[thresholds.queues.bulk]\nqueue_depth_warning = 5000\nqueue_depth_critical = 9000\n")
    thresholds = load_settings(env={"QUEUEWATCH_CONFIG": str(path)}).thresholds
    assert thresholds.for_queue("other").queue_depth_warning == 50
    assert thresholds.for_queue("bulk").queue_depth_warning == 5000
    assert thresholds.for_queue("bulk").error_rate_warning_pct == 5.0


@pytest.mark.parametrize("text,message", [
    ("[thresholds]\nqueue_depthh = 1\n", "unknown threshold"),
    ("[thresholds]\nqueue_depth_warning = 'many'\n", "must be numbers"),
    ("[thresholds]\nqueue_depth_warning = 5000\n", "must not exceed"),
    ("not toml ===", "not valid TOML"),
])
def test_bad_threshold_files(tmp_path, text, message):
    path = tmp_path / "qw.toml"
    path.write_text(text)
    with pytest.raises(SettingsError, match=message):
        load_settings(env={}, config_path=str(path))


def test_missing_config_file(tmp_path):
    with pytest.raises(SettingsError, match="not found"):
        load_settings(env={}, config_path=str(tmp_path / "nope.toml"))


def test_alert_timing_from_the_thresholds_file(tmp_path):
    path = tmp_path / "qw.toml"
    path.write_text("[alerts]\npending_s = 60\nkeep_firing_s = 120\nmin_jobs = 20\n\n"
                    "[alerts.queues.bulk-imports]\npending_s = 300\n")
    timings = load_settings(env={"QUEUEWATCH_CONFIG": str(path)}).alert_timings
    assert (timings.for_queue("emails").pending_s, timings.for_queue("emails").keep_firing_s,
            timings.for_queue("emails").min_jobs) == (60, 120, 20)
    assert (timings.for_queue("bulk-imports").pending_s, timings.for_queue("bulk-imports").keep_firing_s) == (300, 120)
    defaults = load_settings(env={}).alert_timings.default
    assert (defaults.pending_s, defaults.keep_firing_s, defaults.min_jobs) == (0, 0, 0)


@pytest.mark.parametrize("text,message", [
    ("[alerts]\npending = 60\n", r"\[alerts\] unknown setting"),
    ("[alerts]\npending_s = -1\n", r"\[alerts\] must be a finite number from 0"),
    ("[alerts]\nkeep_firing_s = 'long'\n", "keep_firing_s|finite number"),
    ("[alerts.queues.bulk]\nmin_jobs = nan\n", r"\[alerts.queues.bulk\]"),
    ("alerts = 5\n", "must be a table"),
    ("[alerts]\nqueues = 5\n", "one table per queue"),
    ("[alerts.queues]\nbulk = 5\n", "must be a table"),
])
def test_bad_alert_timing(tmp_path, text, message):
    path = tmp_path / "qw.toml"
    path.write_text(text)
    with pytest.raises(SettingsError, match=message):
        load_settings(env={}, config_path=str(path))


@pytest.mark.parametrize("raw,ok", [("0", True), ("2.5", True), ("-1", False), ("nan", False)])
def test_stale_check_s(raw, ok):
    if ok:
        assert load_settings(env={"QUEUEWATCH_STALE_CHECK_S": raw}).stale_check_s == float(raw)
    else:
        with pytest.raises(SettingsError, match="QUEUEWATCH_STALE_CHECK_S"):
            load_settings(env={"QUEUEWATCH_STALE_CHECK_S": raw})
