"""Power and sample size (against statsmodels), and stability over repeats (by hand)."""

from __future__ import annotations

import math

import pytest
from statsmodels.stats.power import TTestPower

from pytest_lmms.stats import design_effect, power, sample_size, stability


@pytest.mark.parametrize(
    ("n", "effect", "p", "rho"), [(100, 0.05, 0.7, None), (500, 0.02, 0.5, 0.5), (2000, 0.01, 0.9, 0.3)]
)
def test_power_matches_statsmodels_ttest_power(n: int, effect: float, p: float, rho: float | None) -> None:
    sd_diff = math.sqrt(2 * p * (1 - p) * (1 - (rho or 0.0)))
    expected = TTestPower().power(effect_size=effect / sd_diff, nobs=n, alpha=0.05, alternative="two-sided")
    assert power(n, effect, p=p, paired_correlation=rho) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize(("effect", "sd", "target"), [(0.02, 0.45, 0.8), (0.05, 0.3, 0.9), (0.1, 1.0, 0.8)])
def test_sample_size_is_the_ceiling_of_statsmodels_solution(effect: float, sd: float, target: float) -> None:
    sd_diff = sd * math.sqrt(2)
    solved = TTestPower().solve_power(effect_size=effect / sd_diff, alpha=0.05, power=target)
    assert sample_size(effect, sd=sd, power=target) == math.ceil(solved)


def test_clustered_questions_need_the_design_effect_more() -> None:
    plain = TTestPower().solve_power(effect_size=0.03 / math.sqrt(2 * 0.21), alpha=0.05, power=0.8)
    n = sample_size(0.03, p=0.7, cluster_size=10, icc=0.2)
    assert design_effect(10, 0.2) == pytest.approx(2.8)
    assert n == math.ceil(plain * 2.8) or n == math.ceil(plain * 2.8) + 1
    assert (
        power(n, 0.03, p=0.7, cluster_size=10, icc=0.2)
        >= 0.8
        > power(n - 1, 0.03, p=0.7, cluster_size=10, icc=0.2)
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"effect": 0.02}, "exactly one of sd"),
        ({"effect": 0.02, "p": 0.7, "sd": 0.4}, "exactly one of sd"),
        ({"effect": 0.02, "p": 1.0}, "strictly between"),
        ({"effect": 0.02, "p": 0.7, "cluster_size": 5}, "go together"),
        ({"effect": 0.02, "p": 0.7, "paired_correlation": 1.0}, "paired_correlation"),
        ({"effect": 0.0, "p": 0.7}, "non-zero"),
    ],
)
def test_power_inputs_are_checked(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        sample_size(**kwargs)


def test_stability_from_scores_by_hand() -> None:
    result = stability({"q1": [1, 1, 1], "q2": [1, 0, 0], "q3": [0, 0, 0], "q4": [1, 0]})
    # EA: mean of 1, 1/3, 0, 1/2; CA: medians 1, 0, 0, 0.5; IV: 0, 2/9, 0, 1/4; CR: q1, q3
    assert result.expected_accuracy == pytest.approx((1 + 1 / 3 + 0 + 0.5) / 4)
    assert result.consensus_accuracy == pytest.approx(1.5 / 4)
    assert result.internal_variance == pytest.approx((2 / 9 + 1 / 4) / 4)
    assert result.consistency_rate == 0.5
    assert (result.n_questions, result.k) == (4, 2)


def test_stability_with_answers_uses_the_plurality_answer() -> None:
    scores = {"q1": [1, 0, 0], "q2": [0, 0, 1, 1], "q3": [0, 0, 0]}
    answers = {"q1": ["B", "C", "C"], "q2": ["A", "D", "B", "B"], "q3": ["A", "C", "D"]}
    result = stability(scores, answers)
    # q1: C wins (wrong) -> 0; q2: B wins (right) -> 1; q3: a three-way tie of wrong answers -> 0
    assert result.consensus_accuracy == pytest.approx(1 / 3)
    # scores of q3 agree, but its answers do not: only answers count for consistency
    assert result.consistency_rate == 0.0


def test_stability_tie_between_right_and_wrong_counts_half() -> None:
    assert stability({"q": [1, 0]}, {"q": ["A", "B"]}).consensus_accuracy == 0.5


def test_stability_errors_name_the_question() -> None:
    with pytest.raises(ValueError, match="'q2' has 1 sample"):
        stability({"q1": [1, 0], "q2": [1]})
    with pytest.raises(ValueError, match="'q1': 1 answers for 2 scores"):
        stability({"q1": [1, 0]}, {"q1": ["A"]})
    with pytest.raises(ValueError, match="'q1' has a NaN"):
        stability({"q1": [1, float("nan")]})
