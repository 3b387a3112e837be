"""Every params profile (and params.yaml) parses into the config of each stage that reads it."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from lpt_core.cli.pipeline import list_profiles, use_profile
from lpt_core.config import from_mapping

ROOT = Path(__file__).resolve().parents[2]
PARAM_FILES = [ROOT / "params.yaml", *sorted((ROOT / "profiles").glob("*.yaml"))]


def _check_sections(params: dict) -> None:
    from lpt_core.data.prepare import PrepareConfig
    from lpt_core.models import MethodConfig
    from lpt_core.pipeline.baselines import BaselinesConfig
    from lpt_core.pipeline.evaluate import EvaluateConfig
    from lpt_core.pipeline.shifts import ShiftsConfig, shift_plan
    from lpt_core.pipeline.train import TrainStageConfig
    from lpt_core.pretrain import PretrainConfig
    from lpt_core.train import TrainConfig

    from_mapping(PrepareConfig, params["prepare"])
    from_mapping(PrepareConfig, params["prepare_base"])
    assert shift_plan(from_mapping(ShiftsConfig, params["shifts"]))[0][0] == "clean"
    from_mapping(PretrainConfig, params["pretrain"])
    from_mapping(EvaluateConfig, params["evaluate"])
    from_mapping(BaselinesConfig, params["baselines"])
    train_sections = [k for k in params if k.startswith("train_")]
    assert len(train_sections) == 8
    for name in train_sections:
        stage = from_mapping(TrainStageConfig, params[name], where=name)
        from_mapping(MethodConfig, stage.model, where=f"{name}.model")
        from_mapping(TrainConfig, stage.train, where=f"{name}.train")
    assert {"fashion_mnist", "target_raw", "backbone"} <= set(params["paths"])


@pytest.mark.parametrize("path", PARAM_FILES, ids=lambda p: p.name)
def test_profile_sections_parse(path: Path) -> None:
    _check_sections(yaml.safe_load(path.read_text()))


def test_paper_profiles_follow_the_spec_recipe() -> None:
    for rho in (100, 50, 10):
        p = yaml.safe_load((ROOT / "profiles" / f"cifar100_lt_r{rho}.yaml").read_text())
        assert p["prepare"]["source"] == "cifar100" and p["prepare"]["rho"] == rho and p["prepare"]["n_max"] == 500
        assert len(p["shifts"]["corruptions"]) == 15 and p["shifts"]["severities"] == [1, 2, 3, 4, 5]
        train = p["train_lpt_phase2"]["train"]
        assert (train["batch_size"], train["lr"], train["warmup_epochs"], train["sampling"]) == (256, 0.02, 1, "dual")
        assert p["train_lpt_phase2"]["model"]["prompt"]["group_start"] == 6


def test_unknown_key_in_a_section_is_refused() -> None:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["shifts"]["sevrities"] = [1]
    with pytest.raises(ValueError, match="sevrities"):
        _check_sections(params)


def test_use_profile_copies_and_refuses_unknown_names(tmp_path: Path) -> None:
    target = tmp_path / "params.yaml"
    assert "cifar100_lt_r100" in list_profiles(ROOT / "profiles")
    use_profile("cifar100_lt_r100", ROOT / "profiles", target)
    assert target.read_text() == (ROOT / "profiles" / "cifar100_lt_r100.yaml").read_text()
    with pytest.raises(KeyError, match="valid names: .*quickstart"):
        use_profile("cifar100_lt_r1000", ROOT / "profiles", target)
