"""The scorer's statistics against published values, and the score's judgements on measurements."""

from __future__ import annotations

import pytest

from orchestrator.domain import Outcome
from orchestrator.scorer import stats
from orchestrator.scorer.plan import Flag, Role, RunMeasurement
from orchestrator.scorer.score import ControlRunsFailed, check_controls, score_submission
from orchestrator.settings import ScorerSettings


@pytest.mark.parametrize(
    ("p", "df", "t"),
    [(0.975, 1, 12.706), (0.975, 4, 2.776), (0.99, 4, 3.747), (0.995, 10, 3.169), (0.95, 30, 1.697)],
)
def test_t_quantiles_match_the_tables(p: float, df: int, t: float) -> None:
    assert stats.t_quantile(p, df) == pytest.approx(t, abs=1e-3)
    assert stats.t_cdf(t, df) == pytest.approx(p, abs=1e-4)


def test_one_sided_pvalue_of_mean_below_target() -> None:
    # t = 3.72 with 4 degrees of freedom: just above the 1% line
    p = stats.mean_below_pvalue([2.20, 2.21, 2.19, 2.215, 2.205], 2.22)
    assert p == pytest.approx(0.0102, abs=2e-4)
    assert stats.mean_below_pvalue([2.1, 2.11, 2.09, 2.1, 2.12], 2.22) < 1e-4
    assert stats.mean_below_pvalue([2.3, 2.1], 2.22) > 0.3
    assert stats.mean_below_pvalue([2.1], 2.22) is None


def test_intervals() -> None:
    lo, hi = stats.mean_ci([10.0, 11.0, 12.0])
    assert (lo + hi) / 2 == pytest.approx(11.0) and hi - lo == pytest.approx(2 * 4.303 / 3**0.5, abs=1e-3)
    lo, hi = stats.ratio_ci([20.0, 22.0, 18.0], [30.0, 31.0, 29.0])
    assert lo < 20 / 30 < hi and hi - lo < 0.5
    assert stats.ratio_ci([1.0], [2.0]) is None


def _run(role: Role, repeat: int, t: float, **kw: object) -> RunMeasurement:
    fields = dict(
        label=f"r{repeat}-{role}",
        role=role,
        attempt_id="a" if role is Role.SUBMISSION else None,
        repeat=repeat,
        seed=repeat,
        reason="stopped",
        reached_target=True,
        seconds_to_target=t,
        val_loss=2.1,
        step0_val_loss=6.24,
        cpu_s=2 * t,
        wall_s=t + 1,
        output_bytes=100,
    )
    fields.update(kw)
    return RunMeasurement.model_validate(fields)


def _score(subs: list[RunMeasurement], repeats: int = 3, rules: ScorerSettings | None = None):
    controls = [_run(Role.BASELINE, i, 50.0 + i) for i in range(repeats)]
    controls += [_run(Role.REFERENCE, i, 20.0 + i) for i in range(repeats)]
    base, ref = check_controls(controls, 2.2)
    return score_submission(
        session_id="s",
        task_id="t",
        attempt_id="a",
        measurements=controls + subs,
        baseline=base,
        reference=ref,
        repeats=repeats,
        fingerprint={},
        fingerprint_hash="h",
        target_val_loss=2.2,
        settings=rules or ScorerSettings(significance_min_repeats=3),
    )


def test_honest_runs_score_with_intervals() -> None:
    s = _score([_run(Role.SUBMISSION, i, 30.0 + i, val_loss=2.1 + 0.01 * i) for i in range(3)])
    assert s.outcome is Outcome.SCORED, s.reason
    assert s.fsr == pytest.approx((51 - 31) / 30, abs=1e-3)
    assert s.fsr_ci95 is not None and s.fsr_ci95[0] <= s.fsr <= s.fsr_ci95[1]
    assert s.val_loss_pvalue is not None and s.val_loss_pvalue < 0.01
    assert s.submission.seconds_ci95 is not None


def test_losses_too_close_to_the_target_are_not_significant() -> None:
    s = _score([_run(Role.SUBMISSION, i, 30.0, val_loss=v) for i, v in enumerate([2.19, 2.2, 2.15])])
    assert s.outcome is Outcome.SUBMISSION_FAILED and "val_loss_not_significant" in s.flags


def test_too_few_repeats_report_the_pvalue_without_gating() -> None:
    runs = [_run(Role.SUBMISSION, i, 30.0, val_loss=v) for i, v in enumerate([2.19, 2.2, 2.15])]
    s = _score(runs, rules=ScorerSettings(significance_min_repeats=5))
    assert s.outcome is Outcome.SCORED and s.val_loss_pvalue is not None and s.val_loss_pvalue > 0.01


def test_step0_far_below_untrained_means_training_before_the_clock() -> None:
    s = _score([_run(Role.SUBMISSION, i, 30.0, step0_val_loss=3.0) for i in range(3)])
    assert "trained_before_clock" in s.flags and s.fsr is None


def test_reaching_the_target_without_the_compute_is_implausible() -> None:
    s = _score([_run(Role.SUBMISSION, i, 5.0, cpu_s=2.0) for i in range(3)])
    assert "implausible_compute" in s.flags and s.fsr is None


def test_a_control_over_the_memory_limit_names_the_setting_to_raise() -> None:
    oom = _run(Role.BASELINE, 0, 50.0, reached_target=False, flags=[Flag.MEMORY_LIMIT, Flag.NO_PROGRESS])
    with pytest.raises(ControlRunsFailed, match="SPEEDRUN_SCORER__MEMORY_BYTES"):
        check_controls([oom, _run(Role.REFERENCE, 0, 20.0)], 2.2)
    crashed = _run(Role.BASELINE, 0, 50.0, reached_target=False, flags=[Flag.CRASHED])
    with pytest.raises(ControlRunsFailed) as refused:
        check_controls([crashed, _run(Role.REFERENCE, 0, 20.0)], 2.2)
    assert "memory" not in str(refused.value)
