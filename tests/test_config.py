import pytest

from tests.conftest import ROOT
from training.config import apply_overrides, load_config

TINY = ROOT / "configs" / "tiny.yaml"


def test_shipped_configs_validate():
    for path in sorted((ROOT / "configs").glob("*.yaml")):
        config = load_config(path)
        assert config.name and config.data.train


def test_dotted_overrides_and_string_floats_are_coerced():
    config = load_config(
        TINY, ["train.epochs=7", "optim.lr=2e-5", "model.context=true", "tracking.enabled=false"]
    )
    assert config.train.epochs == 7
    assert config.optim.lr == pytest.approx(2e-5)
    assert config.model.context is True
    assert config.tracking.enabled is False


def test_config_is_frozen():
    config = load_config(TINY)
    with pytest.raises(Exception, match="frozen"):
        config.seed = 3  # type: ignore[misc]


def test_unknown_keys_fail_loudly(tmp_path):
    with pytest.raises(ValueError, match=r"train\.epoch.*Extra inputs are not permitted"):
        load_config(TINY, ["train.epoch=3"])
    bad = tmp_path / "bad.yaml"
    bad.write_text(TINY.read_text() + "\nsurprise: 1\n")
    with pytest.raises(ValueError, match="surprise"):
        load_config(bad)


def test_bad_values_say_where(tmp_path):
    with pytest.raises(ValueError, match=r"optim\.lr"):
        load_config(TINY, ["optim.lr=fast"])
    with pytest.raises(ValueError, match=r"train\.class_weighting"):
        load_config(TINY, ["train.class_weighting=always"])
    with pytest.raises(ValueError, match="not of the form"):
        load_config(TINY, ["train.epochs"])
    with pytest.raises(ValueError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: [unclosed\n")
    with pytest.raises(ValueError, match="invalid YAML"):
        load_config(broken)


def test_overrides_do_not_mutate_input():
    data = {"train": {"epochs": 1}}
    assert apply_overrides(data, ["train.epochs=2"])["train"]["epochs"] == 2
    assert data["train"]["epochs"] == 1


def test_resolved_config_round_trips(tmp_path):
    config = load_config(TINY, ["seed=99"])
    out = tmp_path / "resolved.yaml"
    out.write_text(config.to_yaml())
    assert load_config(out) == config
