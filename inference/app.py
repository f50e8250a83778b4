"""The HTTP endpoint: an app factory whose lifespan loads the model.

Run it with ``claimlens serve --model DIR`` or, reading the environment only,
``CLAIMLENS_MODEL=DIR uvicorn --factory inference.app:app_from_env``.
"""

import logging
import os
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictStr, field_validator
from starlette.exceptions import HTTPException

from inference.labels import LABELS
from inference.model import check_model_dir, read_info
from inference.predict import Classifier

log = logging.getLogger("claimlens.server")


@dataclass(frozen=True)
class Settings:
    """Server limits; every one is checked before the model sees a request."""

    model_dir: str
    max_sentences: int = 256
    max_sentence_chars: int = 2_000
    max_text_chars: int = 100_000
    max_body_bytes: int = 1_000_000

    @classmethod
    def from_env(cls) -> "Settings":
        model = os.environ.get("CLAIMLENS_MODEL")
        if not model:
            raise ValueError("set CLAIMLENS_MODEL to a model directory")
        ints = {
            name: int(os.environ[f"CLAIMLENS_{name.upper()}"])
            for name in ("max_sentences", "max_sentence_chars", "max_text_chars", "max_body_bytes")
            if f"CLAIMLENS_{name.upper()}" in os.environ
        }
        return cls(model_dir=model, **ints)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PredictionOut(BaseModel):
    label: str
    score: float
    scores: dict[str, float]


class SentenceOut(PredictionOut):
    sentence: str
    start: int
    end: int


class ModelOut(BaseModel):
    name: str
    labels: list[str]
    base_model: str
    context: bool
    max_length: int
    config_digest: str
    metrics: dict[str, Any]


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def create_app(settings: Settings, loader: Callable[[str], Classifier] = Classifier.load) -> FastAPI:
    """Build the app; the model directory is checked at start-up and loaded in the background.

    >>> app = create_app(Settings(model_dir="models/quickstart"))  # doctest: +SKIP
    """

    NonEmpty = Annotated[StrictStr, Field(min_length=1, max_length=settings.max_sentence_chars)]

    class ClassifyIn(_Strict):
        sentences: list[NonEmpty] = Field(min_length=1, max_length=settings.max_sentences)

        @field_validator("sentences")
        @classmethod
        def _not_blank(cls, sentences: list[str]) -> list[str]:
            blank = [i for i, s in enumerate(sentences) if not s.strip()]
            if blank:
                raise ValueError(f"sentences {blank[:5]} are blank")
            return sentences

    class ClassifyOut(BaseModel):
        model: str
        predictions: list[PredictionOut]

    class AnalyzeIn(_Strict):
        text: StrictStr = Field(min_length=1, max_length=settings.max_text_chars)

    class AnalyzeOut(BaseModel):
        model: str
        sentences: list[SentenceOut]

    state: dict[str, Any] = {"classifier": None, "error": None}

    def load() -> None:
        try:
            state["classifier"] = loader(settings.model_dir)
            log.info("model %s loaded", settings.model_dir)
        except Exception as err:  # reported by /health rather than lost in a thread
            log.exception("loading the model failed")
            state["error"] = str(err)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        check_model_dir(Path(settings.model_dir))  # fail fast on a wrong path
        state["info"] = read_info(Path(settings.model_dir))
        threading.Thread(target=load, name="model-loader", daemon=True).start()
        yield

    app = FastAPI(
        title="claimlens",
        summary="Label news sentences as claim, denial, official_statement or other.",
        version="0.1.0",
        lifespan=lifespan,
    )

    def classifier() -> Classifier:
        clf = state["classifier"]
        if clf is None:
            raise HTTPException(
                503, "the model is still loading" if not state["error"] else "the model failed to load"
            )
        return clf

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for e in exc.errors():
            where = ".".join(str(p) for p in e.get("loc", ()) if p != "body") or "body"
            problems.append(f"{where}: {e.get('msg', 'invalid')}")
        return JSONResponse({"error": "invalid request: " + "; ".join(problems)}, status_code=422)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return _error(exc.status_code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(ValueError)
    async def bad_value(request: Request, exc: ValueError) -> JSONResponse:
        return _error(422, f"invalid request: {exc}")

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s", request.url.path)
        return _error(500, "internal error")

    @app.middleware("http")
    async def limit_body(request: Request, call_next: Any) -> Any:
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > settings.max_body_bytes):
            return _error(413, f"request body over {settings.max_body_bytes} bytes")
        return await call_next(request)

    @app.get("/health")
    def health() -> JSONResponse:
        if state["classifier"] is not None:
            return JSONResponse({"status": "ok"})
        if state["error"]:
            return JSONResponse({"status": "error", "error": "the model failed to load"}, status_code=503)
        return JSONResponse({"status": "loading"}, status_code=503)

    @app.get("/v1/model", response_model=ModelOut)
    def model_info() -> ModelOut:
        info = state["info"]
        return ModelOut(
            name=info.name,
            labels=list(LABELS),
            base_model=info.base_model,
            context=info.context,
            max_length=info.max_length,
            config_digest=info.config_digest,
            metrics={k: info.metrics.get(k) for k in ("best_epoch", "dev", "test")},
        )

    @app.post("/v1/classify", response_model=ClassifyOut)
    def classify(body: ClassifyIn) -> ClassifyOut:
        clf = classifier()
        predictions = clf.predict(body.sentences)
        return ClassifyOut(
            model=clf.info.name,
            predictions=[PredictionOut(label=p.label, score=p.score, scores=p.scores) for p in predictions],
        )

    @app.post("/v1/analyze", response_model=AnalyzeOut)
    def analyze(body: AnalyzeIn) -> AnalyzeOut:
        clf = classifier()
        if not body.text.strip():
            raise HTTPException(422, "invalid request: text: has no sentences")
        result = clf.analyze(body.text)
        return AnalyzeOut(
            model=clf.info.name,
            sentences=[
                SentenceOut(
                    sentence=s.sentence,
                    start=s.start,
                    end=s.end,
                    label=s.label,
                    score=s.score,
                    scores=s.scores,
                )
                for s in result
            ],
        )

    return app


def app_from_env() -> FastAPI:
    """The uvicorn factory: settings come from ``CLAIMLENS_*`` environment variables."""
    return create_app(Settings.from_env())
