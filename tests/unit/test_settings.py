"""Settings precedence: code > environment > config file > defaults."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from orchestrator.errors import ConfigError
from orchestrator.settings import Settings


def test_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "speedrun.toml"
    config.write_text(
        'backend = "from-file"\nlog_level = "warning"\n[scorer]\nrepeats = 4\ntimeout_factor = 5.0\n'
    )
    monkeypatch.setenv("SPEEDRUN_CONFIG", str(config))
    monkeypatch.setenv("SPEEDRUN_SCORER__REPEATS", "2")
    monkeypatch.setenv("SPEEDRUN_BACKEND", "from-env")
    s = Settings(backend="from-code")
    assert s.backend == "from-code"
    assert s.scorer.repeats == 2  # env beats file
    assert s.scorer.timeout_factor == 5.0  # file beats default
    assert s.log_level == "warning"
    assert s.sandbox.max_experiments == 20  # default


def test_unknown_keys_are_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "speedrun.toml"
    config.write_text("[scorer]\nrepeat = 3\n")
    monkeypatch.setenv("SPEEDRUN_CONFIG", str(config))
    with pytest.raises(ValueError, match="repeat"):
        Settings()


def test_a_config_file_named_on_purpose_must_exist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPEEDRUN_CONFIG", str(tmp_path / "typo.toml"))
    with pytest.raises(ConfigError, match=r"SPEEDRUN_CONFIG names .*typo\.toml, which does not exist"):
        Settings()
    monkeypatch.setenv("SPEEDRUN_CONFIG", "")  # empty: no config file at all
    assert Settings().backend == "local"


def test_a_config_syntax_error_names_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "speedrun.toml"
    config.write_text('backend = "local\n')
    monkeypatch.setenv("SPEEDRUN_CONFIG", str(config))
    with pytest.raises(ConfigError, match=re.escape(f"config file {config} is not valid TOML")):
        Settings()
