"""How the server runs: every setting, read from ``CLAIMLENS_*`` environment variables.

``claimlens serve`` passes its flags as overrides, which win over the environment; the
uvicorn factory ``inference.app:app_from_env`` reads the environment alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from inference.backends import BACKENDS, QUANTIZE, check_choice

PREFIX = "CLAIMLENS_"
MODEL_VARIABLE = "CLAIMLENS_MODEL"
SPEAKER_MODEL_VARIABLE = "CLAIMLENS_SPEAKER_MODEL"
# Fields read from a variable named otherwise than PREFIX + FIELD, and the flag that sets each.
_ALIASES = {
    "model_dir": (MODEL_VARIABLE, "--model"),
    "speaker_model_dir": (SPEAKER_MODEL_VARIABLE, "--speakers"),
}
SECRET_FIELDS = frozenset({"api_keys"})


class Settings(BaseSettings):
    """How the server runs; every limit is checked before the model sees a request.

    ``api_keys``: when any are set, every route but ``/health`` needs ``Authorization:
    Bearer <key>``. ``speaker_model_dir``: a speaker model (``inference.speakers``) loaded
    beside the classifier, for the speaker and cue of each attributed sentence. ``cors_origins``: browser origins allowed to call the API (none by
    default). ``batch_wait_ms``: how long the micro-batcher waits to gather concurrent
    requests (0 turns micro-batching off: each request is its own forward pass).

    >>> Settings(model_dir="models/quickstart", max_queue=8).max_queue
    8
    """

    model_config = SettingsConfigDict(
        env_prefix=PREFIX,
        frozen=True,
        extra="forbid",
        validate_by_name=True,
        # A bad API key must never be echoed into an error message or a log.
        hide_input_in_errors=True,
    )

    model_dir: str = Field(validation_alias=MODEL_VARIABLE, min_length=1, description="a model directory")
    speaker_model_dir: str | None = Field(
        default=None,
        validation_alias=SPEAKER_MODEL_VARIABLE,
        min_length=1,
        description="a speaker model directory: adds speaker and cue to /v1/analyze (default: none)",
    )
    backend: str = "torch"
    quantize: str = "none"
    threads: int | None = Field(default=None, ge=1, description="model threads (default: the usable cores)")
    max_sentences: int = Field(default=256, ge=1)
    max_sentence_chars: int = Field(default=2_000, ge=1)
    max_text_chars: int = Field(default=100_000, ge=1)
    max_body_bytes: int = Field(default=1_000_000, ge=1)
    batch_wait_ms: float = Field(default=3.0, ge=0)
    max_batch: int = Field(default=64, ge=1)
    max_queue: int = Field(default=64, ge=1)
    request_timeout_s: float = Field(default=30.0, gt=0)
    shutdown_timeout_s: float = Field(default=20.0, gt=0)
    # Comma-separated in the environment; never printed or logged.
    api_keys: Annotated[tuple[str, ...], NoDecode] = Field(default=(), repr=False)
    api_keys_file: Path | None = Field(default=None, description="a file of API keys, one per line")
    cors_origins: Annotated[tuple[str, ...], NoDecode] = ()

    @model_validator(mode="before")
    @classmethod
    def _add_keys_from_file(cls, data: Any) -> Any:
        # One key per line: keeps keys out of the environment and out of argv.
        if not isinstance(data, dict) or not data.get("api_keys_file"):
            return data
        path = Path(data["api_keys_file"])
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as err:
            raise ValueError(f"cannot read the API keys file {path}: {err}") from None
        keys = [line.strip() for line in lines if line.strip()]
        return {**data, "api_keys": (*_comma_separated(data.get("api_keys", ())), *keys)}

    @field_validator("api_keys", "cors_origins", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        return _comma_separated(value)

    @field_validator("api_keys")
    @classmethod
    def _strong_keys(cls, keys: tuple[str, ...]) -> tuple[str, ...]:
        if any(len(key) < 16 or not key.isprintable() or " " in key for key in keys):
            raise ValueError("API keys must be at least 16 printable characters without spaces")
        return keys

    @field_validator("backend")
    @classmethod
    def _known_backend(cls, backend: str) -> str:
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
        return backend

    @field_validator("quantize")
    @classmethod
    def _known_quantize(cls, quantize: str) -> str:
        if quantize not in QUANTIZE:
            raise ValueError(f"quantize must be one of {', '.join(QUANTIZE)}, got {quantize!r}")
        return quantize

    @model_validator(mode="after")
    def _backend_takes_quantize(self) -> Settings:
        check_choice(self.backend, self.quantize)
        return self

    @property
    def backend_name(self) -> str:
        """``torch``, ``onnx`` or ``onnx_int8``: what ``/v1/model`` reports."""
        return self.backend if self.quantize == "none" else f"{self.backend}_{self.quantize}"


def _comma_separated(value: Any) -> Any:
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return value


def load_settings(**overrides: Any) -> Settings:
    """Settings from ``CLAIMLENS_*`` variables, ``overrides`` (e.g. CLI flags) winning.

    A bad value is a ``ValueError`` that names the variable (or the override) it came from.

    >>> load_settings(model_dir="models/quickstart", backend="onnx").backend
    'onnx'
    """
    try:
        return Settings(**overrides)
    except ValidationError as err:
        raise ValueError("; ".join(_explain(e, overrides) for e in err.errors())) from None


def _explain(error: Any, overrides: dict[str, Any]) -> str:
    message = str(error["msg"]).removeprefix("Value error, ")
    if not error["loc"]:
        return message
    field = str(error["loc"][0])
    name = next((n for n, (variable, _) in _ALIASES.items() if field in (n, variable)), None)
    if name is not None:
        variable, flag = _ALIASES[name]
        where = name if name in overrides else variable
        if error["type"] == "missing":
            return f"set {variable} (or claimlens serve {flag}) to a model directory"
    else:
        where = field if field in overrides else f"{PREFIX}{field.upper()}"
    # Our own checks say what they got; pydantic's type and range checks do not.
    quiet = field in SECRET_FIELDS or "input" not in error or error["type"] == "value_error"
    given = "" if quiet else f" (got {error['input']!r})"
    return f"{where}: {message}{given}"
