"""Profiles: small override files merged onto the quickstart base; every merged profile (and
params.yaml) parses into the config of each stage that reads it; the paper profiles follow the
spec's recipe and the released protocol."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from lpt_core.cli.pipeline import BASE_PROFILE, changes, list_profiles, profile_params, use_profile
from lpt_core.config import from_mapping

ROOT = Path(__file__).resolve().parents[2]
PROFILES = ROOT / "profiles"
NAMES = sorted(list_profiles(PROFILES))
PAPER = [n for n in NAMES if n != BASE_PROFILE]


def _check_sections(params: dict) -> None:
    from lpt_core.data.prepare import PrepareConfig
    from lpt_core.evaluate import EvalConfig
    from lpt_core.pipeline.baselines import BaselinesConfig
    from lpt_core.pipeline.shifts import ShiftsConfig, shift_plan
    from lpt_core.pretrain import PretrainConfig
    from lpt_core.sections import resolve_model

    from_mapping(PrepareConfig, params["prepare"])
    from_mapping(PrepareConfig, params["prepare_base"])
    assert shift_plan(from_mapping(ShiftsConfig, params["shifts"]))[0][0] == "clean"
    from_mapping(PretrainConfig, params["pretrain"])
    from_mapping(EvalConfig, params["evaluate"])
    from_mapping(BaselinesConfig, params["baselines"])
    assert set(params["models"]) == {"lpt", "vpt", "linear", "full_ft", "lpt_random", "linear_random"}
    for name in params["models"]:
        spec = resolve_model(params, name)
        for phase in ("phase1", "phase2", "train"):
            spec.phase_config(phase)
    assert {"fashion_mnist", "target_raw", "backbone"} <= set(params["paths"])


def test_params_yaml_is_the_quickstart_base() -> None:
    assert (ROOT / "params.yaml").read_text() == (PROFILES / f"{BASE_PROFILE}.yaml").read_text()


@pytest.mark.parametrize("name", NAMES)
def test_merged_profile_sections_parse(name: str) -> None:
    _check_sections(profile_params(name, PROFILES))


@pytest.mark.parametrize("name", PAPER)
def test_profiles_are_small_override_files(name: str) -> None:
    text = (PROFILES / f"{name}.yaml").read_text()
    assert len(text.splitlines()) <= 60
    assert "models" not in yaml.safe_load(text)  # the same six models as the base


def test_paper_profiles_follow_the_spec_recipe_and_the_released_protocol() -> None:
    from lpt_core.sections import resolve_model

    for name in PAPER:
        p = profile_params(name, PROFILES)
        assert p["prepare"]["protocol"] == "released" and p["evaluate"]["amp"] == "off", name
        assert len(p["shifts"]["corruptions"]) == 15 and p["shifts"]["severities"] == [1, 2, 3, 4, 5]
        lpt = resolve_model(p, "lpt")
        train = lpt.phase_config("phase2")
        assert (train.batch_size, train.lr_per_256, train.warmup_epochs, train.sampling, train.schedule, train.epochs) == (
            256, 0.02, 1, "dual", "epoch", 90), name
        assert lpt.model.prompt.group_start == 6 and lpt.model.prompt.pool_size == 20
        assert resolve_model(p, "full_ft").train.lr_per_256 == 0.002
        # the released protocol never selects on the test split: the last epoch, or an official val list
        assert train.select == "last" or p["prepare"]["source"] == "places_lt", name
    for rho in (100, 50, 10):
        p = profile_params(f"cifar100_lt_r{rho}", PROFILES)
        assert p["prepare"]["source"] == "cifar100" and p["prepare"]["rho"] == rho and p["prepare"]["n_max"] == 500


def test_unknown_key_in_a_section_is_refused() -> None:
    params = profile_params(BASE_PROFILE, PROFILES)
    params["shifts"]["sevrities"] = [1]
    with pytest.raises(ValueError, match="sevrities"):
        _check_sections(params)


def test_use_profile_writes_the_merge_and_reports_what_changed(tmp_path: Path) -> None:
    target = tmp_path / "params.yaml"
    target.write_text((PROFILES / f"{BASE_PROFILE}.yaml").read_text())
    diff = use_profile("cifar100_lt_r100", PROFILES, target)
    assert yaml.safe_load(target.read_text()) == profile_params("cifar100_lt_r100", PROFILES)
    keys = {k for k, _, _ in diff}
    assert {"prepare.source", "recipe.train.epochs", "evaluate.amp"} <= keys and "recipe.train.momentum" not in keys
    back = use_profile(BASE_PROFILE, PROFILES, target)
    assert {k for k, _, _ in back} == keys and target.read_text() == (PROFILES / f"{BASE_PROFILE}.yaml").read_text()
    with pytest.raises(KeyError, match="valid names: .*quickstart"):
        use_profile("cifar100_lt_r1000", PROFILES, target)


def test_changes_lists_leaf_differences() -> None:
    assert changes({"a": {"b": 1, "c": [1]}}, {"a": {"b": 2, "c": [1]}, "d": None}) == [("a.b", 1, 2)]
    assert changes({"a": 1}, {"a": 1, "b": 2}) == [("b", None, 2)]
