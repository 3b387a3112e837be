"""Label-free accuracy estimates: ATC, DoC, temperature, prior weights, per-predicted-group rules."""

from __future__ import annotations

import numpy as np
import pytest
from monitoring_synth import SCALE, calibrated, class_logits, longtail_counts

from lpt_core.monitoring import ESTIMATORS, ModelOutputs, fit_calibration, monitor_batch
from lpt_core.monitoring.estimates import measured_accuracy
from lpt_core.monitoring.reference import atc_threshold, fit_temperature, prior_weights


def test_calibrated_model_atc_unbiased_and_doc_is_mean_confidence() -> None:
    rng = np.random.default_rng(0)
    counts = np.full(10, 500)
    atc_err, atc_ne_err, doc_gap, temps = [], [], [], []
    for _ in range(150):
        ref, ref_labels = calibrated(2000, 10, rng)
        cal = fit_calibration(ref, ref_labels, counts)
        batch, labels = calibrated(1000, 10, rng)
        result = monitor_batch(cal, batch, labels=labels)
        measured = result.measured[0].value
        atc_err.append(result.estimate("atc_max_conf") - measured)
        atc_ne_err.append(result.estimate("atc_neg_entropy") - measured)
        doc_gap.append(result.estimate("doc") - result.estimate("avg_conf"))
        temps.append(cal.temperature)
    for errors in (atc_err, atc_ne_err):
        se = np.std(errors) / np.sqrt(len(errors))
        assert abs(np.mean(errors)) < max(3 * se, 0.002), (np.mean(errors), se)
    # DoC = avg confidence + (acc_R - mean_R conf); the bracket is 0 in expectation when calibrated
    assert abs(np.mean(doc_gap)) < 3 * np.std(doc_gap) / np.sqrt(len(doc_gap))
    assert np.max(np.abs(doc_gap)) < 0.05
    assert abs(np.mean(temps) - 1.0) < 0.02


def test_doc_equals_mean_confidence_when_reference_accuracy_equals_its_confidence() -> None:
    rng = np.random.default_rng(1)
    ref, labels = calibrated(3000, 10, rng)
    cal = fit_calibration(ref, labels, np.full(10, 500))
    batch, _ = calibrated(500, 10, rng, low=0.5)
    result = monitor_batch(cal, batch)
    gap = cal.overall.accuracy - cal.overall.mean_scores["max_conf"]
    assert result.estimate("doc") == pytest.approx(result.estimate("avg_conf") + gap, abs=1e-12)
    probs = np.exp(batch.logits.astype(np.float64) * SCALE / cal.temperature)
    assert result.estimate("avg_conf") == pytest.approx((probs.max(1) / probs.sum(1)).mean(), abs=1e-9)


@pytest.mark.parametrize("true_t", [0.5, 2.5])
def test_temperature_fit_recovers_known_temperature(true_t: float) -> None:
    rng = np.random.default_rng(2)
    logits = rng.uniform(-1, 1, (20000, 10))
    probs = np.exp(SCALE * logits / true_t)
    probs /= probs.sum(1, keepdims=True)
    labels = (probs.cumsum(1) < rng.random((20000, 1))).sum(1)
    fitted = fit_temperature(logits, labels, np.ones(20000), SCALE)
    assert fitted == pytest.approx(true_t, rel=0.04)


def test_prior_weights_remove_the_long_tail_bias() -> None:
    """Head classes are easier; a long-tailed reference overstates a balanced target's accuracy."""
    rng = np.random.default_rng(3)
    mu = np.linspace(0.6, 0.15, 10)
    counts = longtail_counts(10, 400, 50)
    ref_labels = np.repeat(np.arange(10), counts)
    weighted, unweighted, ref_acc = [], [], []
    for _ in range(20):
        ref = ModelOutputs(class_logits(ref_labels, mu, rng))
        cal = fit_calibration(ref, ref_labels, counts * 3, min_group_images=20)
        cal_raw = fit_calibration(ref, ref_labels, counts * 3, target_prior=counts, min_group_images=20)
        assert np.allclose(cal_raw.reference_weights, 1.0)
        labels = rng.integers(0, 10, 2000)
        batch = ModelOutputs(class_logits(labels, mu, rng))
        for c, errors in ((cal, weighted), (cal_raw, unweighted)):
            result = monitor_batch(c, batch, labels=labels)
            errors.append([result.estimate(e) - result.measured[0].value for e in ("atc_max_conf", "doc")])
        ref_acc.append([cal.overall.accuracy, cal_raw.overall.accuracy])
    balanced = rng.integers(0, 10, 200_000)
    true_acc = np.mean(class_logits(balanced, mu, rng).argmax(1) == balanced)
    ref_bias = np.mean(ref_acc, axis=0) - true_acc
    assert abs(ref_bias[0]) < 0.02 and ref_bias[1] > 0.08, ref_bias
    weighted, unweighted = np.mean(weighted, axis=0), np.mean(unweighted, axis=0)
    assert np.all(np.abs(weighted) < 0.012), weighted
    assert np.all(unweighted > 0.025), unweighted  # ATC and DoC inherit the bias of an unweighted reference


def test_prior_weights_values_and_missing_classes() -> None:
    labels = np.array([0, 0, 0, 1, 2])  # class 3 has no reference image
    weights, prior = prior_weights(labels, np.full(4, 0.25))
    np.testing.assert_allclose(prior, [1 / 3, 1 / 3, 1 / 3, 0])
    np.testing.assert_allclose(weights / weights[0], [1, 1, 1, 3, 3])
    assert weights.mean() == pytest.approx(1.0)
    cal = fit_calibration(ModelOutputs(np.eye(5, 4, dtype=np.float32)[[0, 1, 2, 1, 2]]), labels, [5, 5, 5, 5])
    assert cal.missing_classes == (3,)


def test_atc_threshold_meets_the_weighted_share() -> None:
    rng = np.random.default_rng(4)
    scores, weights = rng.random(1001), rng.uniform(0.1, 3.0, 1001)
    for acc in (0.0, 0.137, 0.5, 0.9, 1.0):
        t = atc_threshold(scores, weights, acc)
        share = weights[scores > t].sum() / weights.sum()
        assert abs(share - acc) <= weights.max() / weights.sum()
    assert atc_threshold(scores, weights, 1.0) < scores.min()
    assert atc_threshold(scores, weights, 0.0) == scores.max()
    with pytest.raises(ValueError, match="accuracy in"):
        atc_threshold(scores, weights, 1.5)


def test_per_group_statistics_fall_back_to_global_when_too_few() -> None:
    rng = np.random.default_rng(5)
    counts = np.array([500, 300, 50, 30, 10, 5])  # many, many, medium, medium, few, few
    mu = np.linspace(0.5, 0.3, 6)
    labels = np.repeat(np.arange(6), [200, 200, 100, 100, 15, 10])
    ref = ModelOutputs(class_logits(labels, mu, rng))
    cal = fit_calibration(ref, labels, counts, min_group_images=60)
    sources = {g.group: (g.source, g.n_reference) for g in cal.groups}
    assert sources["many"][0] == "group" and sources["medium"][0] == "group" and sources["few"][0] == "global"
    preds = ref.logits.argmax(1)
    assert sources["few"][1] == int(np.isin(preds, [4, 5]).sum())
    assert next(g for g in cal.groups if g.group == "few").stats == cal.overall
    result = monitor_batch(cal, ModelOutputs(class_logits(rng.integers(0, 6, 300), mu, rng)))
    groups = {e.group: e.source for e in result.estimates}
    assert groups == {"overall": "group", "predicted:many": "group", "predicted:medium": "group",
                      "predicted:few": "global"}
    assert {e.estimator for e in result.estimates} == set(ESTIMATORS)
    no_many = fit_calibration(ref, labels, np.array([90, 80, 50, 30, 10, 5]))
    assert [g.group for g in no_many.groups] == ["medium", "few"]  # a group without classes is left out


def test_measured_accuracy_is_share_correct_among_predicted_in_group() -> None:
    groups = np.array(["many", "many", "few"])
    preds = np.array([0, 1, 2, 2, 0, 1])
    labels = np.array([0, 0, 2, 1, 0, 1])
    rows = {(m.group, m.n): m.value for m in measured_accuracy(preds, labels, groups, ("many", "medium", "few"))}
    assert rows == {("overall", 6): 4 / 6, ("predicted:many", 4): 3 / 4, ("predicted:few", 2): 1 / 2}
