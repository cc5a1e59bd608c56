"""The settings of batching, async concurrency and GPUs: read, checked, explained."""

from __future__ import annotations

import pytest

from aisetl.config import ConfigError, Settings

BASE = {"AIS_TARGET_URL": "http://127.0.0.1:1"}


def test_defaults_leave_the_class_values_in_charge() -> None:
    settings = Settings.from_env(BASE)
    assert settings.max_batch_size is None and settings.max_batch_delay is None
    assert settings.batch_concurrency is None
    assert settings.async_concurrency == 256 and settings.gpus == ""


def test_values_are_read() -> None:
    settings = Settings.from_env(
        {
            **BASE,
            "AISETL_MAX_BATCH_SIZE": "64",
            "AISETL_MAX_BATCH_DELAY": "0.02",
            "AISETL_BATCH_CONCURRENCY": "2",
            "AISETL_ASYNC_CONCURRENCY": "500",
            "AISETL_GPUS": " 0, 2 ",
        }
    )
    assert (settings.max_batch_size, settings.max_batch_delay) == (64, 0.02)
    assert (settings.batch_concurrency, settings.async_concurrency) == (2, 500)
    assert settings.gpus == "0,2"


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("AISETL_MAX_BATCH_SIZE", "0", "must be at least 1"),
        ("AISETL_MAX_BATCH_DELAY", "soon", "is not a number of seconds"),
        ("AISETL_ASYNC_CONCURRENCY", "lots", "is not a whole number"),
        ("AISETL_GPUS", "0,,1", "use 'auto', 'none' or GPU indices"),
    ],
)
def test_bad_values_name_the_variable(name: str, value: str, says: str) -> None:
    with pytest.raises(ConfigError, match=says) as raised:
        Settings.from_env({**BASE, name: value})
    assert name in str(raised.value)
