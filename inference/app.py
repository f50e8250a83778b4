"""The HTTP API: its schemas, routes and error handlers, and the app factory.

Run it with ``claimlens serve --model DIR [--speakers DIR]`` or, reading the environment
only, ``CLAIMLENS_MODEL=DIR uvicorn --factory inference.app:app_from_env``. The model (and
the speaker model, when one is configured) is loaded in the lifespan, before the first
request is accepted: a model that cannot load fails the start-up (uvicorn exits non-zero)
instead of serving 503s forever.
"""

import logging
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr, field_validator, model_validator
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from inference.batching import BatcherClosed, MicroBatcher, QueueFull
from inference.inputs import Context, ContextLike
from inference.labels import LABELS
from inference.middleware import (
    ApiKeyAuth,
    BodyGuard,
    RequestIdMiddleware,
    current_request_id,
    error_response,
)
from inference.model import ModelInfo
from inference.page import PAGE_PATHS, page_router
from inference.predict import Classifier, Prediction, split_article
from inference.sentences import Sentence
from inference.settings import Settings, load_settings
from inference.speakers import Attribution, SpeakerExtractor, read_speaker_config

log = logging.getLogger("claimlens.server")

#: Builds the classifier from a model directory (tests pass their own).
Loader = Callable[[str], Classifier]
#: Builds the speaker extractor from a speaker model directory.
SpeakerLoader = Callable[[str], SpeakerExtractor]


class ModelLoadError(RuntimeError):
    """The model could not be loaded, so the server does not start."""


# ---------------------------------------------------------------- schemas


class SpanOut(BaseModel):
    segment: str = Field(description='"sentence" or "context": whose text start and end index')
    start: int
    end: int
    text: str
    score: float = Field(description="how much the word raised (+) or lowered (-) the label's probability")


class ExplanationOut(BaseModel):
    label: str
    score: float
    baseline_score: float = Field(description="the label's probability with every word blanked")
    context_share: float = Field(description="the context's part of all attribution, 0 to 1")
    delta: float = Field(description="the word scores' sum minus (score - baseline_score): 0 if exact")
    spans: list[SpanOut] = Field(description="every word the model read, in reading order")
    method: str
    steps: int


class PredictionOut(BaseModel):
    label: str
    score: float
    scores: dict[str, float]
    truncated: bool = Field(description="the sentence was longer than the model reads; its end was cut")
    explanation: ExplanationOut | None = Field(
        None, description='why this label (integrated gradients); only with "explain": true'
    )


class ArticleSpanOut(BaseModel):
    text: str
    start: int = Field(description="offset in the article: text == article[start:end]")
    end: int


class SentenceOut(PredictionOut):
    sentence: str
    start: int
    end: int
    # Null for `other` sentences, where no speaker or cue was found, and without a speaker model.
    speaker: ArticleSpanOut | None = Field(None, description="who made the assertion")
    cue: ArticleSpanOut | None = Field(None, description='the words that report it ("said", "denied")')
    speaker_type: Literal["official", "non_official"] | None = None
    speaker_in_previous: bool | None = Field(
        None, description="the speaker stands in the previous sentence (or its quotation goes on here)"
    )
    antecedent: ArticleSpanOut | None = Field(
        None, description='the earlier speaker a pointing-back speaker ("they", "the official") stands for'
    )


class ClassifyOut(BaseModel):
    model: str
    predictions: list[PredictionOut]


class AnalyzeOut(BaseModel):
    model: str
    sentences: list[SentenceOut]


class SpeakerModelOut(BaseModel):
    name: str
    base_model: str
    max_length: int


class ModelOut(BaseModel):
    name: str
    labels: list[str]
    base_model: str
    context: bool
    context_before: int = Field(description="with context: how many previous sentences it reads")
    context_after: int = Field(description="with context: 1 when it reads the next sentence too")
    max_length: int
    backend: str
    config_digest: str
    metrics: dict[str, Any]
    speaker_model: SpeakerModelOut | None = Field(
        None, description="the speaker model /v1/analyze uses; null: none is loaded"
    )


class HealthOut(BaseModel):
    status: str = Field(description='"ok", or "loading" until the model (and speaker model) is ready')


class ErrorOut(BaseModel):
    error: str = Field(description="what was wrong, in words")
    request_id: str | None = Field(None, description="on 500s: quote it when reporting the problem")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _ClassifyRules(_Strict):
    """What ``/v1/classify`` checks beyond its fields' limits (set per app in ``prediction_router``)."""

    sentences: list[StrictStr]
    contexts: list[StrictStr | None] | None = None
    contexts_after: list[StrictStr | None] | None = None

    @model_validator(mode="after")
    def _one_context_per_sentence(self) -> Self:
        for name in ("contexts", "contexts_after"):
            given = getattr(self, name)
            if given is not None and len(given) != len(self.sentences):
                where = "" if name == "contexts" else f"{name}: "
                raise ValueError(
                    f"{where}got {len(given)} contexts for {len(self.sentences)} sentences; give one per sentence"
                )
        return self

    def windows(self) -> list[ContextLike] | None:
        """Each sentence's context as given: the before-part alone, or with its after-part."""
        if self.contexts_after is None:
            return list(self.contexts) if self.contexts is not None else None
        before = self.contexts or [None] * len(self.sentences)
        return [Context.of(b, a) for b, a in zip(before, self.contexts_after, strict=True)]

    @field_validator("sentences")
    @classmethod
    def _not_blank(cls, sentences: list[str]) -> list[str]:
        blank = [i for i, s in enumerate(sentences) if not s.strip()]
        if blank:
            raise ValueError(f"sentences {blank[:5]} are blank")
        return sentences


_ERRORS = {
    400: "the body is not valid UTF-8",
    401: "missing or wrong API key (when keys are configured)",
    413: "the body is larger than the server accepts",
    422: "invalid request: the message says which field and why",
    500: "unexpected error; the answer carries a request id",
    503: "a model is not loaded yet, the server is busy or shutting down (see Retry-After)",
}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for the error statuses a route can answer."""
    return {status: {"model": ErrorOut, "description": _ERRORS[status]} for status in statuses}


# ---------------------------------------------------------------- the loaded model


@dataclass(frozen=True)
class ServedModel:
    """The loaded classifier behind its micro-batcher, as the routes see it (``app.state.model``)."""

    classifier: Classifier
    batcher: MicroBatcher
    timeout_s: float

    @property
    def info(self) -> ModelInfo:
        return self.classifier.info

    async def predict(self, texts: list[str], contexts: Sequence[ContextLike] | None = None) -> list[Prediction]:
        """The batcher's answer, or the 503 that says why there is none."""
        try:
            return await self.batcher.predict_async(texts, contexts, self.timeout_s)
        except QueueFull:
            raise HTTPException(503, "the server is busy; retry shortly", {"Retry-After": "1"}) from None
        except BatcherClosed:
            raise HTTPException(503, "the server is shutting down", {"Retry-After": "5"}) from None
        except TimeoutError:
            raise HTTPException(503, "the request timed out in the queue", {"Retry-After": "1"}) from None


@dataclass(frozen=True)
class ServedSpeakers:
    """The loaded speaker model (``app.state.speakers``) and what its folder says about it."""

    extractor: SpeakerExtractor
    info: SpeakerModelOut
    # One article at a time: concurrent forward passes would only fight over the same cores.
    lock: threading.Lock = field(default_factory=threading.Lock, compare=False, repr=False)

    def _extract(self, sentences: list[Sentence], labels: list[str]) -> list[Attribution | None]:
        with self.lock:
            return self.extractor.extract(sentences, labels)

    async def extract(self, sentences: list[Sentence], labels: list[str]) -> list[Attribution | None]:
        """Each sentence's attribution (None for ``other`` and where none was found), off the loop."""
        return await run_in_threadpool(self._extract, sentences, labels)


def default_loader(settings: Settings) -> Loader:
    """``Classifier.load`` with the settings' backend, quantisation and threads."""
    return partial(
        Classifier.load, backend=settings.backend, quantize=settings.quantize, threads=settings.threads
    )


def load_model(settings: Settings, loader: Loader) -> ServedModel:
    """Load the classifier and start its batcher; ``ModelLoadError`` says why it could not load."""
    try:
        classifier = loader(settings.model_dir)
    except Exception as err:
        log.error("cannot load the model in %s: %s", settings.model_dir, err)
        raise ModelLoadError(f"cannot load the model in {settings.model_dir}: {err}") from err
    # batch_wait_ms=0: micro-batching off, yet requests still queue, so the queue limit holds.
    max_batch = settings.max_batch if settings.batch_wait_ms > 0 else 1
    batcher = MicroBatcher(classifier, settings.batch_wait_ms, max_batch, settings.max_queue)
    log.info("model %s loaded (%s)", settings.model_dir, classifier.backend.name)
    return ServedModel(classifier, batcher, settings.request_timeout_s)


def load_speakers(settings: Settings, loader: SpeakerLoader) -> ServedSpeakers | None:
    """The configured speaker model (None without one); ``ModelLoadError`` says why it could not load."""
    path = settings.speaker_model_dir
    if path is None:
        return None
    try:
        extractor = loader(path)
        info = SpeakerModelOut.model_validate(read_speaker_config(Path(path)))
    except Exception as err:
        log.error("cannot load the speaker model in %s: %s", path, err)
        raise ModelLoadError(f"cannot load the speaker model in {path}: {err}") from err
    log.info("speaker model %s loaded", path)
    return ServedSpeakers(extractor, info)


def load_models(
    settings: Settings, loader: Loader, speaker_loader: SpeakerLoader
) -> tuple[ServedModel, ServedSpeakers | None]:
    """The classifier, then the speaker model; if the second cannot load, the first is stopped."""
    model = load_model(settings, loader)
    try:
        return model, load_speakers(settings, speaker_loader)
    except BaseException:
        model.batcher.close(settings.shutdown_timeout_s)
        raise


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Load the models before the first request; stop the batcher after the last one."""
    settings: Settings = app.state.settings
    try:
        model, speakers = await run_in_threadpool(
            load_models, settings, app.state.loader, app.state.speaker_loader
        )
    except ModelLoadError as err:
        app.state.startup_error = str(err)  # for run_server's last word
        raise
    app.state.speakers = speakers
    app.state.model = model  # last: /health says ok only once both are in place
    try:
        yield
    finally:
        await run_in_threadpool(model.batcher.close, settings.shutdown_timeout_s)
        app.state.model = None
        app.state.speakers = None


async def served_model(request: Request) -> ServedModel:
    """The dependency every model route takes: 503 until the lifespan has loaded the model."""
    model: ServedModel | None = request.app.state.model
    if model is None:
        raise HTTPException(503, "the model is not loaded yet", {"Retry-After": "5"})
    return model


ReadyModel = Annotated[ServedModel, Depends(served_model)]


async def served_speakers(request: Request) -> ServedSpeakers | None:
    """The speaker model ``/v1/analyze`` takes: None when none is configured, 503 until it is loaded."""
    speakers: ServedSpeakers | None = request.app.state.speakers
    if speakers is None and request.app.state.settings.speaker_model_dir is not None:
        raise HTTPException(503, "the speaker model is not loaded yet", {"Retry-After": "5"})
    return speakers


ReadySpeakers = Annotated[ServedSpeakers | None, Depends(served_speakers)]


# ---------------------------------------------------------------- routes

status_router = APIRouter()


@status_router.get(
    "/health",
    response_model=HealthOut,
    responses={503: {"model": HealthOut, "description": "a model is not loaded yet"}},
)
async def health(request: Request, response: Response) -> HealthOut:
    """Open to all (no API key): 200 once the model (and the speaker model, if any) is loaded."""
    if request.app.state.model is None:
        response.status_code = 503
        return HealthOut(status="loading")
    return HealthOut(status="ok")


@status_router.get("/v1/model", response_model=ModelOut, responses=errors(401, 500, 503))
async def model_info(request: Request, model: ReadyModel, speakers: ReadySpeakers) -> ModelOut:
    """The served model: its name, labels, settings, backend and metrics; and the speaker model."""
    info = model.info
    return ModelOut(
        name=info.name,
        labels=list(LABELS),
        base_model=info.base_model,
        context=info.context,
        context_before=info.context_before,
        context_after=info.context_after,
        max_length=info.max_length,
        backend=request.app.state.settings.backend_name,
        config_digest=info.config_digest,
        metrics={k: info.metrics.get(k) for k in ("best_epoch", "dev", "test")},
        speaker_model=speakers.info if speakers else None,
    )


def _out(p: Prediction) -> dict[str, Any]:
    return {"label": p.label, "score": p.score, "scores": p.scores, "truncated": p.truncated}


_UNATTRIBUTED = dict.fromkeys(("speaker", "cue", "speaker_type", "speaker_in_previous", "antecedent"))


async def _attributions(
    speakers: ServedSpeakers | None, sentences: list[Sentence], predictions: list[Prediction]
) -> list[dict[str, Any]]:
    """Each sentence's speaker, cue, speaker type, ``speaker_in_previous`` and antecedent, or nulls."""
    found = (
        await speakers.extract(sentences, [p.label for p in predictions])
        if speakers
        else [None] * len(sentences)
    )
    return [asdict(a) if a else dict(_UNATTRIBUTED) for a in found]


# About 1.5 s of CPU each for MiniLM on 2 cores (benchmarks/explain.py): one request may not
# hold the explainer for minutes.
MAX_EXPLAINED_SENTENCES = 64


def _check_explain(asked: bool, n: int) -> None:
    if asked and n > MAX_EXPLAINED_SENTENCES:
        raise HTTPException(
            422, f"invalid request: explain covers at most {MAX_EXPLAINED_SENTENCES} sentences, got {n}"
        )


async def _explanations(
    model: ServedModel,
    asked: bool,
    texts: list[str],
    contexts: Sequence[ContextLike] | None,
    predictions: list[Prediction],
) -> list[dict[str, Any]]:
    """``{"explanation": ...}`` for each prediction when asked, else ``{}`` (the field is left out)."""
    if not asked:
        return [{} for _ in predictions]
    labels = [p.label for p in predictions]
    # Gradients, outside the micro-batcher: an explanation costs about 20 forward passes.
    found = await run_in_threadpool(model.classifier.explain, texts, contexts, labels)
    return [{"explanation": asdict(e)} for e in found]


CONTEXTS = (
    'the sentence before each sentence (null or "": none), one per sentence; for a model that reads more '
    "(/v1/model context_before) the sentences before, joined with a space; read only by a context model"
)
AFTER = (
    'the sentence after each sentence (null or "": none), one per sentence; read only by a model whose '
    "window holds the next sentence (/v1/model context_after 1)"
)


def prediction_router(settings: Settings) -> APIRouter:
    """``/v1/classify`` and ``/v1/analyze``, their bodies limited as ``settings`` say."""
    Sentence = Annotated[StrictStr, Field(min_length=1, max_length=settings.max_sentence_chars)]
    # A sentence's worth even for a window of several: the model reads only their nearest tokens.
    ContextText = Annotated[StrictStr, Field(max_length=settings.max_sentence_chars)]
    most = settings.max_sentences

    class ClassifyIn(_ClassifyRules):
        sentences: list[Sentence] = Field(min_length=1, max_length=settings.max_sentences)
        contexts: list[ContextText | None] | None = Field(None, max_length=most, description=CONTEXTS)
        contexts_after: list[ContextText | None] | None = Field(None, max_length=most, description=AFTER)
        explain: StrictBool = Field(False, description="add each prediction's explanation (slower)")

    class AnalyzeIn(_Strict):
        text: StrictStr = Field(min_length=1, max_length=settings.max_text_chars)
        explain: StrictBool = Field(False, description="add each sentence's explanation (slower)")

    router = APIRouter()
    failures = errors(400, 401, 413, 422, 500, 503)

    # exclude_none (exclude_unset for analyze, whose speaker fields are null when none was found):
    # an unasked-for explanation is left out, not sent as null.
    @router.post(
        "/v1/classify", response_model=ClassifyOut, responses=failures, response_model_exclude_none=True
    )
    async def classify(body: ClassifyIn, model: ReadyModel) -> ClassifyOut:
        """Label each sentence, in input order; ``contexts`` feed a context model."""
        _check_explain(body.explain, len(body.sentences))
        contexts = body.windows()
        predictions = await model.predict(body.sentences, contexts)
        extra = await _explanations(model, body.explain, body.sentences, contexts, predictions)
        rows = [_out(p) | e for p, e in zip(predictions, extra, strict=True)]
        return ClassifyOut.model_validate({"model": model.info.name, "predictions": rows})

    @router.post(
        "/v1/analyze", response_model=AnalyzeOut, responses=failures, response_model_exclude_unset=True
    )
    async def analyze(body: AnalyzeIn, model: ReadyModel, speakers: ReadySpeakers) -> AnalyzeOut:
        """Split an article into sentences and label each, its neighbours (the model's window) as
        its context; with a speaker model, give each claim, denial and official_statement its
        speaker and cue."""
        sentences = await run_in_threadpool(split_article, body.text)  # up to 100k chars: off the loop
        if len(sentences) > settings.max_sentences:
            raise HTTPException(
                422, f"invalid request: text has {len(sentences)} sentences; at most {settings.max_sentences}"
            )
        _check_explain(body.explain, len(sentences))
        texts = [s.text for s in sentences]
        contexts = model.classifier.contexts(texts)
        predictions = await model.predict(texts, contexts)
        extra = await _explanations(model, body.explain, texts, contexts, predictions)
        who = await _attributions(speakers, sentences, predictions)
        rows = [
            {"sentence": s.text, "start": s.start, "end": s.end, **_out(p), **w, **e}
            for s, p, w, e in zip(sentences, predictions, who, extra, strict=True)
        ]
        return AnalyzeOut.model_validate({"model": model.info.name, "sentences": rows})

    return router


# ---------------------------------------------------------------- errors


async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
    problems = []
    for e in exc.errors():
        where = ".".join(str(p) for p in e.get("loc", ()) if p != "body") or "body"
        problems.append(f"{where}: {e.get('msg', 'invalid')}")
    return error_response(422, "invalid request: " + "; ".join(problems))


async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
    return error_response(exc.status_code, str(exc.detail), exc.headers)


async def _bad_value(request: Request, exc: ValueError) -> JSONResponse:
    return error_response(422, f"invalid request: {exc}")


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    # The details stay in the log; the client gets an id to quote, never a trace or a path.
    # This handler answers outside the middleware, so it sets the id header itself.
    request_id = current_request_id()
    log.exception("unexpected error on %s (request id %s)", request.url.path, request_id)
    return JSONResponse(
        {"error": "internal error", "request_id": request_id},
        status_code=500,
        headers={"X-Request-ID": request_id},
    )


ERROR_HANDLERS: tuple[tuple[type[Exception], Callable[..., Any]], ...] = (
    (RequestValidationError, _invalid),
    (HTTPException, _http_error),
    (ValueError, _bad_value),
    (Exception, _unexpected),
)


# ---------------------------------------------------------------- the app


def _add_middleware(app: FastAPI, settings: Settings) -> None:
    # Added innermost first. Ids go outermost, so that 401s and 413s carry one; keys are
    # checked before any body is read.
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type", "X-Request-ID"],
        )
    app.add_middleware(BodyGuard, max_bytes=settings.max_body_bytes)
    if settings.api_keys:
        # The page and its files hold no data and a browser cannot send a key when it navigates.
        app.add_middleware(ApiKeyAuth, api_keys=settings.api_keys, open_paths=("/health", *PAGE_PATHS))
    app.add_middleware(RequestIdMiddleware)


def create_app(
    settings: Settings, loader: Loader | None = None, speaker_loader: SpeakerLoader | None = None
) -> FastAPI:
    """Build the app; its lifespan loads the model (with ``loader``, default ``Classifier.load``)
    and the speaker model of ``settings.speaker_model_dir`` (``speaker_loader``, default
    ``SpeakerExtractor.load``).

    >>> app = create_app(Settings(model_dir="models/quickstart", backend="onnx", quantize="int8"))
    >>> sorted(route.path for route in app.routes if route.path.startswith("/v1"))
    ['/v1/analyze', '/v1/classify', '/v1/model']
    """
    app = FastAPI(
        title="claimlens",
        summary="Label news sentences as claim, denial, official_statement or other.",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.loader = loader or default_loader(settings)
    app.state.speaker_loader = speaker_loader or SpeakerExtractor.load
    app.state.model = None
    app.state.speakers = None
    app.include_router(status_router)
    app.include_router(prediction_router(settings))
    app.include_router(page_router())
    for exc_class, handler in ERROR_HANDLERS:
        app.exception_handler(exc_class)(handler)
    _add_middleware(app, settings)
    return app


def app_from_env() -> FastAPI:
    """The uvicorn factory: settings come from ``CLAIMLENS_*`` environment variables."""
    return create_app(load_settings())
