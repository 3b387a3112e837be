"""The monitoring calibration in the artifact (fitted after training, checksummed), evaluation of
unlabeled and partly labelled batches, and ``lpt calibrate``."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import yaml

from lpt_core.artifacts import ArtifactError, artifact_sha256, load_calibration, verify_artifact
from lpt_core.cli import main
from lpt_core.data.store import save_prepared
from lpt_core.evaluate import EvalConfig, evaluate_artifact

PARAMS = {
    "recipe": {"seed": 0, "model": {"prompt": {"prompt_length": 3, "pool_size": 5, "top_k": 2, "group_start": 2}},
               "train": {"epochs": 1, "batch_size": 16, "lr_per_256": 0.5, "max_steps_per_epoch": 2,
                         "eval_batch_size": 64, "progress": False}},
    "models": {"lpt": {"method": "lpt"}, "lin": {"method": "linear", "calibration": {"reference": "none"}}},
}
CPU = EvalConfig(device="cpu")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from tiny_data import make_tiny_prepared

    from lpt_core.pretrain import PretrainConfig, save_random_backbone

    root = tmp_path_factory.mktemp("cal")
    save_random_backbone(PretrainConfig(img_size=32, patch_size=8, embed_dim=48, depth=4, num_heads=3), root / "bb")
    data = save_prepared(root / "data", make_tiny_prepared())
    (root / "params.yaml").write_text(yaml.safe_dump(PARAMS))
    for name in ("lpt", "lin"):
        assert main(["train", "--params", str(root / "params.yaml"), "--model", name, "--data", str(data),
                     "--backbone", str(root / "bb"), "--out", str(root / name), "--checkpoints",
                     str(root / "ck" / name), "--device", "cpu"]) == 0
    return root


def test_training_stores_a_checksummed_calibration(trained) -> None:
    cal = load_calibration(trained / "lpt")
    assert cal is not None and cal.selection is not None and cal.reference_size == 30  # val: 5 per class
    assert cal.info["reference"] == "val" and cal.target_prior_name == "balanced"
    assert load_calibration(trained / "lin") is None  # calibration: {reference: none}
    tampered = trained / "tampered"
    shutil.copytree(trained / "lpt", tampered)
    path = tampered / "calibration" / "calibration.json"
    path.write_text(path.read_text().replace('"temperature": ', '"temperature": 1e-3 + '))
    with pytest.raises(ArtifactError, match="calibration.json is corrupted or edited"):
        verify_artifact(tampered)


def test_unlabeled_and_partly_labelled_batches(trained) -> None:
    from tiny_data import make_tiny_prepared

    test = make_tiny_prepared().test
    blind = evaluate_artifact(trained / "lpt", test.images, None, CPU)
    doc = blind.to_dict()
    assert doc["metrics"] == [] and doc["labels"]["n_labeled"] == 0 and doc["labels"]["n_images"] == 48
    mon = doc["monitoring"]
    assert {e["estimator"] for e in mon["estimates"]} >= {"atc_max_conf", "doc"} and mon["measured"] == []
    assert {d["name"] for d in mon["detectors"]} == {"bbsd", "prompt_selection", "key_cosine"}
    some = np.full(len(test.labels), -1)
    some[::3] = test.labels[::3]
    part = evaluate_artifact(trained / "lpt", test.images, some, CPU).to_dict()
    top1 = next(m for m in part["metrics"] if m["name"] == "top1" and m["group"] == "overall")
    assert top1["n"] == 16 == part["labels"]["n_labeled"]
    assert part["monitoring"]["measured"][0]["n"] == 16 and part["monitoring"]["estimate_errors"]
    assert part["monitoring"]["estimates"] == mon["estimates"]  # estimates use every image, labels or not
    with pytest.raises(ValueError, match="one label per image"):
        evaluate_artifact(trained / "lpt", test.images, test.labels[:5], CPU)


def test_lpt_calibrate_writes_a_new_artifact(trained) -> None:
    out = trained / "lin_cal"
    assert main(["calibrate", "--artifact", str(trained / "lin"), "--data", str(trained / "data"), "--split",
                 "test", "--out", str(out), "--device", "cpu"]) == 0
    cal = load_calibration(out)
    assert cal is not None and cal.selection is None and cal.reference_size == 48
    meta = json.loads((out / "meta.json").read_text())
    assert meta["calibration"]["reference"] == "data:test" and artifact_sha256(out) != artifact_sha256(trained / "lin")
    a = (trained / "lin" / "tensors.safetensors").read_bytes()
    assert (out / "tensors.safetensors").read_bytes() == a  # the same model, now with a reference
    assert main(["calibrate", "--artifact", str(out), "--data", str(trained / "data"), "--out", str(out)]) == 2
