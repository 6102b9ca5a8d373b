"""The Celery configuration dict: the values that matter and the timing guard rails."""

from __future__ import annotations

import pytest

from pipeline.core.settings import PipelineSettings, Settings
from workers.app import SERIALIZER, ConfigError, celery_config, make_app

URL = "redis://127.0.0.1:6379/3"


def _settings(**pipeline: object) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        redis_url=URL,
        pipeline=PipelineSettings.model_validate(pipeline),
    )


def test_delivery_semantics_are_at_least_once_with_prefetch_one() -> None:
    """Late acks, requeue on worker loss, prefetch 1, results ignored, no backend."""
    conf = celery_config(_settings())
    assert conf["broker_url"] == URL
    assert conf["task_acks_late"] is True
    assert conf["task_reject_on_worker_lost"] is True
    assert conf["worker_prefetch_multiplier"] == 1
    assert conf["task_ignore_result"] is True
    assert conf["result_backend"] is None
    assert conf["broker_connection_retry_on_startup"] is True
    assert conf["task_serializer"] == SERIALIZER and conf["accept_content"] == [SERIALIZER, "json"]
    assert conf["worker_disable_rate_limits"] is True


def test_queue_and_visibility_come_from_settings() -> None:
    """The dedicated queue and the visibility timeout are the configured ones."""
    conf = celery_config(_settings(queue="night", visibility_timeout_seconds=7200))
    assert conf["task_default_queue"] == "night"
    assert conf["task_default_routing_key"] == "night"
    assert conf["broker_transport_options"]["visibility_timeout"] == 7200


def test_time_limits_stay_far_below_the_visibility_timeout() -> None:
    """Default soft < hard time limit < half the visibility timeout."""
    conf = celery_config(_settings())
    visibility = conf["broker_transport_options"]["visibility_timeout"]
    assert conf["task_soft_time_limit"] < conf["task_time_limit"] < visibility / 2
    assert Settings(_env_file=None).pipeline.backoff_max_seconds < visibility / 2  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("knobs", "named"),
    [
        ({"task_time_limit_seconds": 2000, "visibility_timeout_seconds": 3600},
         "TASK_TIME_LIMIT_SECONDS"),
        ({"backoff_max_seconds": 1800.0}, "BACKOFF_MAX_SECONDS"),
        ({"task_soft_time_limit_seconds": 700, "task_time_limit_seconds": 660},
         "TASK_SOFT_TIME_LIMIT_SECONDS"),
        ({"claim_ttl_seconds": 60}, "CLAIM_TTL_SECONDS"),
    ],
)
def test_unsafe_timing_is_refused_naming_the_setting(knobs: dict[str, object], named: str) -> None:
    """Limits, backoff or claim TTLs that could run a chunk or a create twice are refused."""
    with pytest.raises(ConfigError, match=named):
        celery_config(_settings(**knobs))


def test_missing_broker_is_refused() -> None:
    """Without a Redis URL (and no embedded one) there is no configuration."""
    settings = Settings(_env_file=None, redis_url=None)  # type: ignore[call-arg]
    with pytest.raises(ConfigError, match="ONBOARD_REDIS_URL"):
        celery_config(settings)


def test_make_app_applies_the_config_and_the_broker_override() -> None:
    """The app carries the config; an explicit broker URL wins over the settings."""
    app = make_app(_settings(), broker_url="redis+socket:///tmp/x.sock")
    assert app.conf.broker_url == "redis+socket:///tmp/x.sock"
    assert app.conf.task_acks_late is True
    assert app.conf.task_default_queue == "onboard"
