"""Settings precedence: code > environment > config file > defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

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
