"""Metrics on hand-worked examples: shot groups at 20/100, ECE, macro-F1, CIs, CE/mCE, gaps."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lpt_core import metrics as M


def test_shot_groups_boundaries() -> None:
    counts = np.array([101, 100, 21, 20, 19, 0])
    assert M.shot_groups(counts).tolist() == ["many", "medium", "medium", "medium", "few", "few"]
    assert M.shot_groups(counts, few_includes_20=True).tolist() == ["many", "medium", "medium", "few", "few", "few"]
    with pytest.raises(ValueError, match="non-negative"):
        M.shot_groups(np.array([5, -1]))


def test_ece_hand_example() -> None:
    # confidences 0.9 (correct), 0.9 (wrong), 0.6 (correct), 0.6 (correct)
    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.4, 0.6], [0.4, 0.6]])
    labels = np.array([0, 1, 1, 1])
    # bin of 0.9: acc 0.5, conf 0.9 -> 0.4 * 2/4; bin of 0.6: acc 1, conf 0.6 -> 0.4 * 2/4
    assert M.expected_calibration_error(probs, labels) == pytest.approx(0.4)


def test_macro_f1_hand_example() -> None:
    labels = np.array([0, 0, 1, 1])
    preds = np.array([0, 1, 1, 1])
    # class 0: p=1, r=.5 -> 2/3; class 1: p=2/3, r=1 -> 0.8; class 2 absent everywhere -> ignored
    assert M.macro_f1(preds, labels, 3) == pytest.approx((2 / 3 + 0.8) / 2)


def test_nll_and_softmax() -> None:
    probs = M.softmax(np.array([[0.0, np.log(3.0)]]))
    assert probs == pytest.approx(np.array([[0.25, 0.75]]))
    assert M.nll(probs, np.array([1])) == pytest.approx(-np.log(0.75))


def test_wilson_interval_known_value() -> None:
    low, high = M.wilson_interval(8, 10)
    assert (low, high) == pytest.approx((0.4902, 0.9433), abs=1e-4)
    with pytest.raises(ValueError, match="n > 0"):
        M.wilson_interval(0, 0)


def test_bootstrap_ci_contains_estimate_and_is_seeded() -> None:
    correct, n = np.array([5, 9, 1]), np.array([10, 10, 10])
    ci = M.class_mean_bootstrap(correct, n, np.random.default_rng(0))
    assert ci[0] < 0.5 < ci[1]
    assert ci == M.class_mean_bootstrap(correct, n, np.random.default_rng(0))


def test_classification_metrics_groups_and_rows() -> None:
    counts = np.array([200, 50, 5])  # many, medium, few
    labels = np.array([0, 0, 1, 1, 2, 2, 2, 2])
    logits = np.eye(3)[[0, 0, 1, 0, 2, 0, 0, 0]]  # class accs: 1, .5, .25
    out = M.classification_metrics(logits, labels, counts, logit_scale=20.0)
    rows = {(r["name"], r["group"]): r for r in out["metrics"]}
    assert rows[("top1", "overall")]["value"] == pytest.approx(4 / 8)
    assert rows[("top1", "many")]["value"] == 1.0
    assert rows[("top1", "medium")]["value"] == 0.5
    assert rows[("top1", "few")]["value"] == 0.25 and rows[("top1", "few")]["n"] == 4
    assert rows[("error", "overall")]["value"] == pytest.approx(0.5)
    assert rows[("top1", "class:2")]["ci_low"] < 0.25 < rows[("top1", "class:2")]["ci_high"]
    assert out["per_class"]["accuracy"] == [1.0, 0.5, 0.25]
    assert out["per_class"]["n"] == [2, 2, 4]
    with pytest.raises(ValueError, match="classes"):
        M.classification_metrics(logits[:, :2], labels, counts)


def _table(values: dict[str, list[float]]) -> pd.DataFrame:
    return pd.DataFrame(
        [{"corruption": c, "severity": s + 1, "error": e} for c, errs in values.items() for s, e in enumerate(errs)]
    )


def test_ce_mce_and_relative_mce() -> None:
    model = _table({"fog": [0.2, 0.4], "snow": [0.3, 0.3]})
    ref = _table({"fog": [0.4, 0.4], "snow": [0.3, 0.9]})
    ce = M.corruption_error(model, ref)
    assert ce["fog"] == pytest.approx(0.6 / 0.8) and ce["snow"] == pytest.approx(0.6 / 1.2)
    assert M.mce(model, ref) == pytest.approx((0.75 + 0.5) / 2)
    rel = M.relative_corruption_error(model, 0.1, ref, 0.2)
    assert rel["fog"] == pytest.approx((0.1 + 0.3) / (0.2 + 0.2))
    assert rel["snow"] == pytest.approx((0.2 + 0.2) / (0.1 + 0.7))
    assert M.relative_mce(model, 0.1, ref, 0.2) == pytest.approx((1.0 + 0.5) / 2)
    with pytest.raises(ValueError, match="lacks"):
        M.corruption_error(model, _table({"fog": [0.4, 0.4]}))


def test_mean_corrupted_accuracy_and_gap() -> None:
    table = pd.DataFrame({"corruption": ["a", "a", "b"], "severity": [1, 2, 1], "accuracy": [0.5, 0.7, 0.9]})
    assert M.mean_corrupted_accuracy(table) == pytest.approx(0.7)
    gap = M.robustness_gap({"overall": 0.8, "few": 0.5}, {"overall": 0.6, "few": 0.2, "many": 0.9})
    assert gap.to_dict() == pytest.approx({"overall": 0.2, "few": 0.3})


def test_group_accuracy_matches_rows() -> None:
    counts = np.array([200, 50, 5])
    labels = np.array([0, 1, 2, 2])
    preds = np.array([0, 0, 2, 0])
    assert M.group_accuracy(preds, labels, counts) == {"overall": 0.5, "many": 1.0, "medium": 0.0, "few": 0.5}
