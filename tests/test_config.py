import pytest
import yaml

from tests.conftest import ROOT
from training.config import apply_overrides, deep_merge, flatten, load_config, resolve_inheritance

TINY = ROOT / "configs" / "tiny.yaml"
SHIPPED = sorted((ROOT / "configs").rglob("*.yaml"))


def _write(path, text: str):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_the_glob_finds_the_experiments():
    assert len([p for p in SHIPPED if p.parent.name == "experiments"]) >= 10


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(ROOT / "configs")))
def test_shipped_config_validates(path):
    if path.name == "speakers.yaml":  # the speaker tagger's own schema (training/speakers_train.py)
        from training.speakers_train import load_speakers_config

        assert load_speakers_config(path).name == "speakers"
        return
    config = load_config(path)
    assert config.name and config.data.train and config.data.dev


@pytest.mark.parametrize(
    "path",
    [p for p in SHIPPED if "inherit" in yaml.safe_load(p.read_text())],
    ids=lambda p: str(p.relative_to(ROOT / "configs")),
)
def test_inheriting_configs_state_only_what_they_change(path):
    raw = yaml.safe_load(path.read_text())
    parent = resolve_inheritance(path.parent / raw.pop("inherit"))
    flat_parent = flatten(parent)
    restated = {k: v for k, v in flatten(raw).items() if k in flat_parent and flat_parent[k] == v}
    assert not restated, f"{path.name} restates its parent's values: {restated}"


def test_default_is_complete():
    assert "inherit" not in yaml.safe_load((ROOT / "configs" / "default.yaml").read_text())


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


def test_deep_merge_merges_mappings_and_replaces_lists():
    base = {"a": {"b": 1, "c": {"d": 2, "e": 3}}, "l": [1, 2], "s": "x"}
    merged = deep_merge(base, {"a": {"c": {"e": 30}}, "l": [9], "n": None})
    assert merged == {"a": {"b": 1, "c": {"d": 2, "e": 30}}, "l": [9], "s": "x", "n": None}
    assert base["a"]["c"]["e"] == 3  # the parent is left as it was


def test_child_deep_merges_over_parent_relative_to_itself(tmp_path, monkeypatch):
    _write(tmp_path / "base" / "tiny.yaml", TINY.read_text())
    child = _write(
        tmp_path / "base" / "exp" / "child.yaml",
        "inherit: ../tiny.yaml\nname: child\nmodel: {max_length: 40}\n"
        "data:\n  train:\n    - {path: other.jsonl}\n",
    )
    monkeypatch.chdir(tmp_path)  # the parent is found next to the child, not from the cwd
    config, parent = load_config(child), load_config(TINY)
    assert config.name == "child"
    assert config.model.max_length == 40
    assert config.model.base == parent.model.base == "tiny-random"  # siblings kept
    assert [s.path for s in config.data.train] == ["other.jsonl"]  # the list is replaced whole
    assert config.data.dev == parent.data.dev
    assert (
        config.model_dump()
        == parent.model_copy(
            update={
                "name": "child",
                "model": parent.model.model_copy(update={"max_length": 40}),
                "data": parent.data.model_copy(update={"train": config.data.train}),
            }
        ).model_dump()
    )


def test_chains_and_override_precedence(tmp_path):
    _write(tmp_path / "grand.yaml", TINY.read_text())
    _write(tmp_path / "parent.yaml", "inherit: grand.yaml\ntrain: {epochs: 5, batch_size: 8}\nseed: 1\n")
    child = _write(tmp_path / "child.yaml", "inherit: parent.yaml\ntrain: {epochs: 6}\n")
    config = load_config(child)
    assert (config.train.epochs, config.train.batch_size, config.seed) == (6, 8, 1)
    assert config.optim.lr == load_config(TINY).optim.lr  # from the grandparent
    config = load_config(child, ["train.epochs=7", "seed=2"])
    assert (config.train.epochs, config.train.batch_size, config.seed) == (7, 8, 2)


def test_missing_parent_names_both_files(tmp_path):
    child = _write(tmp_path / "child.yaml", "inherit: nowhere/base.yaml\nname: x\n")
    with pytest.raises(
        ValueError, match=r"child\.yaml: inherited config .*nowhere/base\.yaml does not exist"
    ):
        load_config(child)


def test_cycles_are_refused(tmp_path):
    _write(tmp_path / "a.yaml", "inherit: b.yaml\nname: a\n")
    _write(tmp_path / "b.yaml", "inherit: ./a.yaml\nname: b\n")
    with pytest.raises(ValueError, match=r"inheritance cycle: .*a\.yaml -> .*b\.yaml -> .*a\.yaml"):
        load_config(tmp_path / "a.yaml")
    _write(tmp_path / "self.yaml", "inherit: self.yaml\n")
    with pytest.raises(ValueError, match="inheritance cycle"):
        load_config(tmp_path / "self.yaml")


def test_unknown_key_in_a_child_fails_loudly(tmp_path):
    _write(tmp_path / "tiny.yaml", TINY.read_text())
    child = _write(tmp_path / "child.yaml", "inherit: tiny.yaml\nmodel: {contxt: true}\n")
    with pytest.raises(ValueError, match=r"child\.yaml: invalid config: model\.contxt: Extra inputs"):
        load_config(child)


@pytest.mark.parametrize("value", ["[a.yaml, b.yaml]", "''", "3"])
def test_inherit_must_be_one_path(tmp_path, value):
    child = _write(tmp_path / "child.yaml", f"inherit: {value}\nname: x\n")
    with pytest.raises(ValueError, match="'inherit' must be a path"):
        load_config(child)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["model.context=true", "model.context_before=0"], r"model\.context_before: Input should be greater"),
        (["model.context=true", "model.context_before=4"], r"model\.context_before: Input should be less"),
        (["model.context=true", "model.context_after=2"], r"model\.context_after: Input should be less"),
        (["model.context=true", "model.context_after=two"], r"model\.context_after: Input should be a valid integer"),
        (["model.context_before=2"], "context_before=2, context_after=0 set a context window, which only"),
        (["model.context_after=1"], "set model.context: true, or drop them"),
    ],
)
def test_a_bad_context_window_is_refused(overrides, message):
    with pytest.raises(ValueError, match=message):
        load_config(TINY, overrides)


def test_the_context_window_experiments_change_only_the_window_and_its_budget():
    from inference.inputs import PREVIOUS, Window
    from training.save import model_info

    default = load_config(ROOT / "configs" / "default.yaml")
    assert model_info(default).window == PREVIOUS  # configs without the keys read as before
    for name, window, max_length in (("default_prev2", Window(2, 0), 160), ("default_prev2_next", Window(2, 1), 192)):
        config = load_config(ROOT / "configs" / "experiments" / f"{name}.yaml")
        assert model_info(config).window == window and config.model.max_length == max_length
        assert config.tracking.experiment == "claimlens-experiments" and config.tracking.registered_model is None
        assert config.name != default.name
        same = {"name", "tracking", "model"}
        assert config.model_dump(exclude=same) == default.model_dump(exclude=same)
        changed = {"context_before", "context_after", "max_length"}
        assert config.model.model_dump(exclude=changed) == default.model.model_dump(exclude=changed)
