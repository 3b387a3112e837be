"""The label flow end to end through the nightly job with the real evaluator: an unlabeled batch
gets estimates and shift tests (no metrics), the night's Benjamini-Hochberg verdicts and a shift
alert; labels for a sample arrive later and the next job measures top-1 on them, keeping each
estimator's error; an uncalibrated model fails the unlabeled pair with a clear reason."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select
from test_end_to_end import _lpt, _prepared

from app.db import repository as repo
from app.db.schema import Alert, Detection, Estimate, EvalRun, Metric
from app.db.session import make_engine, session_scope

pytestmark = pytest.mark.slow
TINY = dict(img_size=32, patch_size=8, embed_dim=48, depth=4, num_heads=3)


def _calibrated_lpt(root: Path, prepared: Path) -> Path:
    from lpt_core.artifacts import save_artifact
    from lpt_core.calibrate import CalibrationSpec, fit_reference
    from lpt_core.data.store import load_prepared
    from lpt_core.models import MethodConfig, PromptConfig, build_classifier, create_backbone

    data = load_prepared(prepared)
    cfg = MethodConfig(prompt=PromptConfig(prompt_length=3, pool_size=5, top_k=2, group_start=2))
    model = build_classifier("lpt", create_backbone("vit_tiny_patch16_224", seed=0, **TINY), 6, cfg, seed=0)
    model.set_phase("phase2")
    meta = {"class_names": data.class_names, "class_counts": data.class_counts.tolist(), "data_version": "t"}
    cal = fit_reference(model.eval(), data.test.images, data.test.labels, data.class_counts, spec=CalibrationSpec(),
                        logit_scale=20.0, few_includes_20=False)  # the clean test split as the reference
    save_artifact(root / "models" / "lpt", model, meta, calibration=cal)
    save_artifact(root / "models" / "bare", model, meta)  # no calibration
    return root / "models"


def test_unlabeled_batch_then_labels_for_a_sample(tmp_path: Path) -> None:
    prepared = _prepared(tmp_path)
    models = _calibrated_lpt(tmp_path, prepared)
    env = {**os.environ, "LPT_DB_URL": f"sqlite:///{tmp_path / 'store.db'}", "LPT_CODE_VERSION": "flow-1",
           "LPT_SHIFTS_DIR": str(tmp_path / "shifts"), "LPT_REPORTS_DIR": str(tmp_path / "reports"),
           "LPT_INCOMING_DIR": str(tmp_path / "incoming"), "LPT_PREPARED_DIR": str(prepared), "LPT_USE_DVC": "0"}
    _lpt(tmp_path, env, "ingest", "--models", str(models))
    images = np.load(prepared / "test" / "images.npy")
    labels = np.load(prepared / "test" / "labels.npy")
    rng = np.random.default_rng(0)  # a strong shift the detectors must see: the images washed out to grey
    washed = (0.15 * images + 0.85 * 128 + rng.normal(0, 2, images.shape)).clip(0, 255).astype(np.uint8)
    np.save(tmp_path / "night.npy", washed)
    out, _, _ = _lpt(tmp_path, env, "shift", "add", str(tmp_path / "night.npy"), "--unlabeled", "--data",
                     str(prepared), "--shifts-root", str(tmp_path / "shifts"), "--no-dvc")
    batch_id = out.split("registered shift batch ")[1].split()[0]
    with pytest.raises(AssertionError, match='"pairs_failed": 1'):  # run-now exits 1: the uncalibrated pair failed
        _lpt(tmp_path, env, "scheduler", "run-now")
    engine = make_engine(env["LPT_DB_URL"])
    with session_scope(engine) as s:
        runs = {r.model_version_id: r for r in s.scalars(select(EvalRun).where(EvalRun.batch_id == batch_id))}
        assert sorted(r.status for r in runs.values()) == ["failed", "succeeded"]
        bare = next(r for r in runs.values() if r.status == "failed")
        assert "no monitoring calibration" in bare.error
        run = next(r for r in runs.values() if r.status == "succeeded")
        assert s.scalars(select(Metric).where(Metric.run_id == run.id)).all() == []  # nothing measured
        est = {(e.estimator, e.grp): e for e in s.scalars(select(Estimate).where(Estimate.run_id == run.id))}
        assert ("atc_max_conf", "overall") in est and est[("atc_max_conf", "overall")].measured is None
        det = {d.detector: d for d in s.scalars(select(Detection).where(Detection.run_id == run.id))}
        assert {"bbsd", "prompt_selection", "key_cosine", "label_shift"} <= set(det)
        assert det["bbsd"].rejected is True and det["bbsd"].p_adjusted is not None
        assert any(a.kind == "shift" and batch_id in a.message for a in s.scalars(select(Alert)))
    sample = np.full(len(labels), -1)
    sample[::2] = labels[::2]
    rows = np.flatnonzero(sample >= 0)  # labels for a sample, by image index
    (tmp_path / "labels.csv").write_text("index,label\n" + "".join(f"{i},{sample[i]}\n" for i in rows))
    _lpt(tmp_path, env, "shift", "label", batch_id, str(tmp_path / "labels.csv"), "--data", str(prepared),
         "--shifts-root", str(tmp_path / "shifts"), "--no-dvc")
    with pytest.raises(AssertionError, match="already"):  # a second label set needs --replace and a reason
        _lpt(tmp_path, env, "shift", "label", batch_id, str(tmp_path / "labels.csv"), "--data", str(prepared),
             "--shifts-root", str(tmp_path / "shifts"), "--no-dvc")
    out, _, _ = _lpt(tmp_path, env, "scheduler", "run-now")  # with labels, the uncalibrated model is measurable too
    assert '"pairs_evaluated": 2' in out and '"pairs_failed": 0' in out
    with session_scope(engine) as s:
        latest = [r for r in s.scalars(select(EvalRun).where(EvalRun.batch_id == batch_id, EvalRun.status == "succeeded",
                                                             EvalRun.model_version_id == run.model_version_id))]
        assert len(latest) == 2 and len({r.labels_hash for r in latest}) == 2  # the label-free run is kept
        measured = max(latest, key=lambda r: r.id)
        top1 = s.scalars(select(Metric).where(Metric.run_id == measured.id, Metric.name == "top1",
                                              Metric.grp == "overall")).one()
        assert top1.n == int((sample >= 0).sum())
        atc = s.scalars(select(Estimate).where(Estimate.run_id == measured.id, Estimate.estimator == "atc_max_conf",
                                               Estimate.grp == "overall")).one()
        assert atc.measured == pytest.approx(top1.value) and atc.abs_error == pytest.approx(abs(atc.value - top1.value))
        assert repo.get_batch(s, batch_id).n_labeled == int((sample >= 0).sum())
