"""Shift detectors: weighted KS / BBSD, BBSE, prompt-selection drift, key cosines, Benjamini-Hochberg.

False-alarm rates are measured on same-distribution batches (reference and batch redrawn in every
trial; the reference long-tailed and weighted to the balanced target the batches come from).
"""

from __future__ import annotations

import numpy as np
import pytest
from monitoring_synth import class_logits, longtail_counts, lpt_outputs, selections
from scipy import stats

from lpt_core.monitoring import ModelOutputs, benjamini_hochberg, fit_calibration, monitor_batch
from lpt_core.monitoring.ks import ks_pvalues, ks_reference, weighted_ks_statistics
from lpt_core.monitoring.outputs import log_probabilities
from lpt_core.monitoring.selection import fit_selection_reference, merge_cells, selection_chi2

ALPHA = 0.05
C, POOL = 10, 8
MU = np.linspace(0.45, 0.25, C)
COUNTS = longtail_counts(C, 300, 50)


def _upper(rate_trials: int, alpha: float = ALPHA) -> float:
    """alpha + 3 binomial standard errors: the sampling error allowed on a false-alarm rate."""
    return alpha + 3 * np.sqrt(alpha * (1 - alpha) / rate_trials)


def test_weighted_ks_matches_scipy_with_equal_weights() -> None:
    rng = np.random.default_rng(0)
    for n, m in ((50, 30), (300, 1000), (7, 7)):
        ref = rng.normal(size=(n, 3)).astype(np.float32)
        batch = rng.normal(0.3, size=(m, 3)).astype(np.float32)
        ref[:5, 0], batch[:3, 0] = 0.0, 0.0  # ties within and across samples
        prepared = ks_reference(ref, np.ones(n))
        d = weighted_ks_statistics(prepared, batch)
        p = ks_pvalues(d, prepared.effective_size, m)
        for j in range(3):
            expected = stats.ks_2samp(ref[:, j], batch[:, j], method="asymp")
            assert d[j] == pytest.approx(expected.statistic, abs=1e-12)
            # the limit law: never below scipy's finite-n rule, and close to it
            en = n * m / (n + m)
            slack = 1.0 if en < 10 else 0.06 if en < 100 else 0.02  # tiny samples: conservative only
            assert expected.pvalue - 1e-12 <= p[j] <= expected.pvalue + slack


def test_weighted_ks_statistic_equals_brute_force() -> None:
    rng = np.random.default_rng(1)
    ref = rng.integers(0, 20, (200, 4)).astype(np.float32)  # many ties
    weights = rng.uniform(0.2, 5.0, 200)
    batch = rng.integers(0, 22, (90, 4)).astype(np.float32)
    d = weighted_ks_statistics(ks_reference(ref, weights), batch)
    for j in range(4):
        grid = np.union1d(ref[:, j], batch[:, j])
        f_ref = ((ref[:, j][None, :] <= grid[:, None]) * weights).sum(1) / weights.sum()
        f_batch = (batch[:, j][None, :] <= grid[:, None]).mean(1)
        assert d[j] == pytest.approx(np.abs(f_ref - f_batch).max(), abs=1e-12)
    small = weighted_ks_statistics(ks_reference(np.array([[1.0], [2.0], [3.0]]), np.array([1.0, 1.0, 2.0])),
                                   np.array([[2.5], [2.6]]))
    assert small[0] == pytest.approx(0.5)  # at x = 2: F_R = 0.5, F_B = 0


def test_bbsd_false_alarm_rate_and_the_need_for_weights() -> None:
    rng = np.random.default_rng(2)
    ref_labels = np.repeat(np.arange(C), COUNTS)
    trials, combined, per_class, unweighted = 200, [], [], []
    for _ in range(trials):
        ref = ModelOutputs(class_logits(ref_labels, MU, rng))
        cal = fit_calibration(ref, ref_labels, COUNTS * 3)
        raw = fit_calibration(ref, ref_labels, COUNTS * 3, target_prior=COUNTS)
        labels = rng.integers(0, C, 200)
        batch = ModelOutputs(class_logits(labels, MU, rng))
        combined.append(monitor_batch(cal, batch).pvalues()["bbsd"])
        unweighted.append(monitor_batch(raw, batch).pvalues()["bbsd"])
        probs = np.exp(log_probabilities(batch.logits, 20.0, cal.temperature)).astype(np.float32)
        d = weighted_ks_statistics(cal.ks_reference, probs)
        per_class.append(ks_pvalues(d, cal.effective_size, 200))
    assert np.mean(np.array(combined) < ALPHA) <= _upper(trials)
    assert np.mean(np.array(per_class) < ALPHA) <= _upper(trials * C)  # each class's KS, uncorrected
    assert np.mean(np.array(unweighted) < ALPHA) > 0.5  # a balanced batch against an unweighted long tail


def test_bbsd_power_on_a_clearly_shifted_batch() -> None:
    rng = np.random.default_rng(3)
    ref_labels = np.repeat(np.arange(C), COUNTS)
    cal = fit_calibration(ModelOutputs(class_logits(ref_labels, MU, rng)), ref_labels, COUNTS * 3)
    hits = 0
    for _ in range(20):
        labels = rng.integers(0, C, 200)
        shifted = ModelOutputs(class_logits(labels, MU * 0.6, rng))  # a corruption weakens the class signal
        hits += monitor_batch(cal, shifted).pvalues()["bbsd"] < ALPHA
    assert hits >= 19


def test_bbse_recovers_a_known_label_shift() -> None:
    rng = np.random.default_rng(4)
    counts = longtail_counts(5, 2000, 10)
    mu = np.full(5, 0.45)
    ref_labels = np.repeat(np.arange(5), counts)
    cal = fit_calibration(ModelOutputs(class_logits(ref_labels, mu, rng, sigma=0.2)), ref_labels, counts)
    prior = np.array([0.1, 0.1, 0.1, 0.2, 0.5])
    labels = rng.choice(5, 20000, p=prior)
    shift = monitor_batch(cal, ModelOutputs(class_logits(labels, mu, rng, sigma=0.2)), top_classes=2).label_shift
    assert np.abs(shift.prior - prior).sum() < 0.03
    top = shift.largest_changes()
    assert len(top) == 2 and top[0]["class"] == 4 and top[1]["class"] in (0, 1, 2)
    assert top[0]["change"] == pytest.approx(0.3, abs=0.02) and top[0]["reference_share"] == pytest.approx(0.2)
    assert shift.total_variation == pytest.approx(0.3, abs=0.02)
    balanced = rng.integers(0, 5, 20000)
    same = monitor_batch(cal, ModelOutputs(class_logits(balanced, mu, rng, sigma=0.2))).label_shift
    assert same.total_variation < 0.02


def test_merge_cells_of_rare_prompts() -> None:
    cell = merge_cells(np.array([0.5, 10.0, 1.0, 20.0, 2.0, 3.0]))
    assert set(cell[[0, 2, 4, 5]]) == {0} and len(set(cell)) == 3  # 0.5+1+2+3 >= 5: one merged cell
    cell = merge_cells(np.array([1.0, 2.0, 10.0, 20.0]))
    assert cell[0] == cell[1] == cell[2] != cell[3]  # 1+2 < 5: grown by the next rarest (10)
    np.testing.assert_array_equal(merge_cells(np.array([7.0, 5.0, 6.0])), [2, 0, 1])  # none rare


def test_selection_chi2_merges_prompts_expected_fewer_than_five_times() -> None:
    rng = np.random.default_rng(5)
    pairs = np.array([[5, 0]] * 2 + [[4, 1]] * 30 + [[0, 1], [2, 3], [0, 2], [1, 3]] * 42)  # 200 images
    labels, weights = np.zeros(200, dtype=np.int64), np.ones(200)
    ref = fit_selection_reference(pairs, np.full((200, 2), 0.5), labels, weights, np.ones(1), pool_size=7)
    batch = pairs[rng.permutation(200)[:40]]  # 80 picks: prompt 4 expected ~6 times, 5 under 1, 6 never
    result = selection_chi2(ref, batch)
    # 5 and 6 together are expected fewer than 5 times, so the next rarest (4) joins their cell
    assert result["merged_prompts"] == [4, 5, 6] and result["cells"] == 5
    assert 0.0 <= result["pvalue"] <= 1.0
    tiny = selection_chi2(ref, np.array([[0, 1], [2, 3]]))  # 4 picks: every prompt is rare
    assert tiny["cells"] == 1 and tiny["pvalue"] == 1.0 and tiny["merged_prompts"] == list(range(7))
    spread = np.stack([np.arange(210) % 7, (np.arange(210) + 1) % 7], axis=1)  # every prompt 60 times
    even = fit_selection_reference(spread, np.full((210, 2), 0.5), np.zeros(210, np.int64), np.ones(210), np.ones(1), 7)
    none_rare = selection_chi2(even, spread)
    assert none_rare["cells"] == 7 and none_rare["merged_prompts"] == [] and none_rare["pvalue"] == pytest.approx(1.0)


def test_selection_and_cosine_false_alarm_rate_and_power() -> None:
    rng = np.random.default_rng(6)
    ref_labels = np.repeat(np.arange(C), COUNTS)
    trials, pvalues = 300, {"prompt_selection": [], "key_cosine": []}
    for _ in range(trials):
        cal = fit_calibration(lpt_outputs(ref_labels, MU, POOL, rng), ref_labels, COUNTS * 3, pool_size=POOL)
        result = monitor_batch(cal, lpt_outputs(rng.integers(0, C, 300), MU, POOL, rng))
        for name in pvalues:
            pvalues[name].append(result.pvalues()[name])
    for name, values in pvalues.items():
        rate = np.mean(np.array(values) < ALPHA)
        assert rate <= _upper(trials), (name, rate)
        assert np.mean(np.array(values) < 0.5) > 0.3, name  # not vacuously conservative
    batch = lpt_outputs(rng.integers(0, C, 300), MU, POOL, rng)
    collapsed = batch.selected.copy()
    collapsed[:120] = [0, 1]  # the query of 40% of the images falls onto prompts 0 and 1
    drifted = ModelOutputs(batch.logits, collapsed, batch.key_cosine)
    lower = ModelOutputs(batch.logits, batch.selected, batch.key_cosine - 0.02)
    assert monitor_batch(cal, drifted).pvalues()["prompt_selection"] < 1e-6
    assert monitor_batch(cal, lower).pvalues()["key_cosine"] < 1e-6
    assert monitor_batch(cal, lower).pvalues()["prompt_selection"] > 1e-3  # the cosines alone do not move it


def test_rao_scott_correction_holds_the_level_where_plain_pearson_does_not() -> None:
    """Strongly paired picks, unweighted reference: the corrected p-value holds alpha."""
    rng = np.random.default_rng(7)
    labels = np.repeat(np.arange(C), 60)
    corrected, plain = [], []
    for _ in range(600):
        selected, cosine = selections(labels, POOL, rng, p_pair=0.9)
        ref = fit_selection_reference(selected, cosine, labels, np.ones(len(labels)), np.full(C, 0.1), POOL)
        batch, _ = selections(rng.integers(0, C, 300), POOL, rng, p_pair=0.9)
        result = selection_chi2(ref, batch)
        corrected.append(result["pvalue"])
        plain.append(result["pvalue_uncorrected"])
    rate, plain_rate = np.mean(np.array(corrected) < ALPHA), np.mean(np.array(plain) < ALPHA)
    assert abs(rate - ALPHA) <= 3 * np.sqrt(ALPHA * (1 - ALPHA) / 600)
    assert abs(plain_rate - ALPHA) > abs(rate - ALPHA)


def test_benjamini_hochberg_by_hand() -> None:
    p = [0.01, 0.04, 0.03, 0.2, 0.5]
    # sorted 0.01, 0.03, 0.04, 0.2, 0.5 -> p * 5 / rank = 0.05, 0.075, 0.0667, 0.25, 0.5 -> running min from the top
    result = benjamini_hochberg(p, 0.05)
    np.testing.assert_allclose(result.adjusted, [0.05, 0.2 / 3, 0.2 / 3, 0.25, 0.5])
    np.testing.assert_array_equal(result.reject, [True, False, False, False, False])
    np.testing.assert_array_equal(benjamini_hochberg(p, 0.07).reject, [True, True, True, False, False])
    assert len(benjamini_hochberg([], 0.05).adjusted) == 0
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        benjamini_hochberg([0.1, 1.2], 0.05)
    with pytest.raises(ValueError, match="alpha"):
        benjamini_hochberg([0.1], 0.0)
