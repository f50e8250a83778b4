"""The HTTP endpoint: an app factory whose lifespan loads the model.

Run it with ``claimlens serve --model DIR`` or, reading the environment only,
``CLAIMLENS_MODEL=DIR uvicorn --factory inference.app:app_from_env``.
"""

import asyncio
import hmac
import logging
import os
import re
import threading
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Self

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictStr, field_validator, model_validator
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from inference.backends import check_choice
from inference.batching import BatcherClosed, MicroBatcher, QueueFull
from inference.labels import LABELS
from inference.model import check_model_dir, read_info
from inference.predict import Classifier, Prediction, split_article

log = logging.getLogger("claimlens.server")


@dataclass(frozen=True)
class Settings:
    """How the server runs; every limit is checked before the model sees a request.

    ``api_keys``: when any are set, every route but ``/health`` needs ``Authorization:
    Bearer <key>``. ``cors_origins``: browser origins allowed to call the API (none by
    default). ``batch_wait_ms``: how long the micro-batcher waits to gather concurrent
    requests (0 turns micro-batching off).
    """

    model_dir: str
    backend: str = "torch"
    quantize: str = "none"
    threads: int | None = None
    max_sentences: int = 256
    max_sentence_chars: int = 2_000
    max_text_chars: int = 100_000
    max_body_bytes: int = 1_000_000
    batch_wait_ms: float = 3.0
    max_batch: int = 64
    max_queue: int = 64
    request_timeout_s: float = 30.0
    shutdown_timeout_s: float = 20.0
    api_keys: tuple[str, ...] = field(default=(), repr=False)  # never printed or logged
    cors_origins: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        check_choice(self.backend, self.quantize)
        for name in ("max_sentences", "max_sentence_chars", "max_text_chars", "max_body_bytes", "max_batch"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.max_queue < 1 or self.batch_wait_ms < 0 or self.request_timeout_s <= 0:
            raise ValueError("max_queue must be >= 1, batch_wait_ms >= 0 and request_timeout_s > 0")
        if any(len(key) < 16 or not key.isprintable() or " " in key for key in self.api_keys):
            raise ValueError("API keys must be at least 16 printable characters without spaces")

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> "Settings":
        """Read ``CLAIMLENS_MODEL`` and the optional ``CLAIMLENS_<SETTING>`` variables.

        ``CLAIMLENS_API_KEYS`` and ``CLAIMLENS_CORS_ORIGINS`` are comma-separated;
        ``CLAIMLENS_API_KEYS_FILE`` names a file of keys, one per line.
        """
        env = dict(os.environ if env is None else env)
        model = env.get("CLAIMLENS_MODEL")
        if not model:
            raise ValueError("set CLAIMLENS_MODEL to a model directory")
        values: dict[str, Any] = {}
        for name, kind in (
            ("backend", str),
            ("quantize", str),
            ("threads", int),
            ("max_sentences", int),
            ("max_sentence_chars", int),
            ("max_text_chars", int),
            ("max_body_bytes", int),
            ("batch_wait_ms", float),
            ("max_batch", int),
            ("max_queue", int),
            ("request_timeout_s", float),
            ("shutdown_timeout_s", float),
        ):
            raw = env.get(f"CLAIMLENS_{name.upper()}")
            if raw is not None:
                try:
                    values[name] = kind(raw)
                except ValueError:
                    what = "an integer" if kind is int else "a number"
                    raise ValueError(f"CLAIMLENS_{name.upper()} must be {what}, got {raw!r}") from None
        for name in ("api_keys", "cors_origins"):
            raw = env.get(f"CLAIMLENS_{name.upper()}", "")
            values[name] = tuple(part.strip() for part in raw.split(",") if part.strip())
        if env.get("CLAIMLENS_API_KEYS_FILE"):  # one key per line; keeps keys out of the environment
            keys = Path(env["CLAIMLENS_API_KEYS_FILE"]).read_text(encoding="utf-8").split()
            values["api_keys"] = (*values["api_keys"], *keys)
        return cls(model_dir=model, **values)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PredictionOut(BaseModel):
    label: str
    score: float
    scores: dict[str, float]
    truncated: bool = Field(description="the sentence was longer than the model reads; its end was cut")


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
    backend: str
    config_digest: str
    metrics: dict[str, Any]


class ErrorOut(BaseModel):
    error: str = Field(description="what was wrong, in words")
    request_id: str | None = Field(None, description="on 500s: quote it when reporting the problem")


def _responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    text = {
        400: "the body is not valid UTF-8",
        401: "missing or wrong API key (when keys are configured)",
        413: "the body is larger than the server accepts",
        422: "invalid request: the message says which field and why",
        500: "unexpected error; the answer carries a request id",
        503: "the model is loading, the server is busy or shutting down (see Retry-After)",
    }
    return {status: {"model": ErrorOut, "description": text[status]} for status in statuses}


def _error(status: int, message: str, headers: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status, headers=headers)


class BodyGuard:
    """Reads a request body up to ``max_bytes`` before the app sees it: 413 past the limit
    (with or without a Content-Length header) and 400 when it is not UTF-8."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            await _error(413, f"request body over {self.max_bytes} bytes")(scope, receive, send)
            return
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_bytes:
                await _error(413, f"request body over {self.max_bytes} bytes")(scope, receive, send)
                return
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        try:
            body.decode("utf-8")
        except UnicodeDecodeError as err:
            await _error(400, f"request body is not valid UTF-8 (byte {err.start})")(scope, receive, send)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


class RequestGuard:
    """Gives every request an id (``X-Request-ID``, kept if the client sent a sane one) and,
    when API keys are configured, answers 401 to any route but ``/health`` without a valid key.

    Pure ASGI rather than ``@app.middleware``: it runs on every request, and the decorator's
    per-request task and stream cost more than the check itself.
    """

    def __init__(self, app: ASGIApp, api_keys: tuple[str, ...]) -> None:
        self.app = app
        self.api_keys = api_keys

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        given = headers.get(b"x-request-id", b"").decode("latin-1")
        request_id = given if _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
            await send(message)

        if (
            self.api_keys
            and scope["path"] != "/health"
            and scope["method"] != "OPTIONS"
            and not _authorised(headers.get(b"authorization", b"").decode("latin-1"), self.api_keys)
        ):
            response = _error(401, "missing or wrong API key", {"WWW-Authenticate": "Bearer"})
            await response(scope, receive, send_with_id)
            return
        await self.app(scope, receive, send_with_id)


def _authorised(header: str | None, keys: tuple[str, ...]) -> bool:
    scheme, _, token = (header or "").partition(" ")
    matched = False
    for key in keys:  # every key is compared, in constant time, so timing reveals nothing
        matched |= hmac.compare_digest(token.strip().encode(), key.encode())
    return scheme.lower() == "bearer" and matched


def create_app(settings: Settings, loader: Callable[[str], Classifier] | None = None) -> FastAPI:
    """Build the app; the model directory is checked at start-up and loaded in the background.

    >>> app = create_app(Settings(model_dir="models/quickstart", backend="onnx", quantize="int8"))  # doctest: +SKIP
    """
    if loader is None:

        def loader(path: str) -> Classifier:
            return Classifier.load(
                path, backend=settings.backend, quantize=settings.quantize, threads=settings.threads
            )

    NonEmpty = Annotated[StrictStr, Field(min_length=1, max_length=settings.max_sentence_chars)]

    Context = Annotated[StrictStr, Field(max_length=settings.max_sentence_chars)]

    class ClassifyIn(_Strict):
        sentences: list[NonEmpty] = Field(min_length=1, max_length=settings.max_sentences)
        contexts: list[Context | None] | None = Field(
            default=None,
            max_length=settings.max_sentences,
            description='the sentence before each sentence (null or "": none), one per sentence; '
            "read only by a model trained with context",
        )

        @model_validator(mode="after")
        def _one_context_per_sentence(self) -> Self:
            if self.contexts is not None and len(self.contexts) != len(self.sentences):
                raise ValueError(
                    f"got {len(self.contexts)} contexts for {len(self.sentences)} sentences; give one per sentence"
                )
            return self

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

    state: dict[str, Any] = {"classifier": None, "batcher": None, "error": None}

    def load() -> None:
        try:
            clf = loader(settings.model_dir)
            if settings.batch_wait_ms > 0:
                state["batcher"] = MicroBatcher(
                    clf, settings.batch_wait_ms, settings.max_batch, settings.max_queue
                )
            state["classifier"] = clf
            log.info("model %s loaded (%s)", settings.model_dir, clf.backend.name)
        except Exception as err:  # reported by /health rather than lost in a thread
            log.exception("loading the model failed")
            state["error"] = str(err)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        check_model_dir(Path(settings.model_dir))  # fail fast on a wrong path
        state["info"] = read_info(Path(settings.model_dir))
        threading.Thread(target=load, name="model-loader", daemon=True).start()
        yield
        if state["batcher"] is not None:
            state["batcher"].close()

    app = FastAPI(
        title="claimlens",
        summary="Label news sentences as claim, denial, official_statement or other.",
        version="0.1.0",
        lifespan=lifespan,
    )

    async def run(
        texts: list[str], contexts: list[str | None] | None = None
    ) -> tuple[Classifier, list[Prediction]]:
        clf = state["classifier"]
        if clf is None:
            raise HTTPException(
                503, "the model is still loading" if not state["error"] else "the model failed to load"
            )
        batcher: MicroBatcher | None = state["batcher"]
        if batcher is None:  # the model runs in a worker thread, never on the event loop
            return clf, await run_in_threadpool(clf.predict, texts, contexts)
        # The batcher's thread runs the model; this request only waits, so it needs no thread.
        try:
            future = batcher.submit(texts, contexts)
            return clf, await asyncio.wait_for(asyncio.wrap_future(future), settings.request_timeout_s)
        except QueueFull:
            raise HTTPException(503, "the server is busy; retry shortly", {"Retry-After": "1"}) from None
        except BatcherClosed:
            raise HTTPException(503, "the server is shutting down", {"Retry-After": "5"}) from None
        except TimeoutError:
            raise HTTPException(503, "the request timed out in the queue", {"Retry-After": "1"}) from None

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
        # The details stay in the log; the client gets an id to quote, never a trace or a path.
        request_id = getattr(request.state, "request_id", uuid.uuid4().hex)
        log.exception("unexpected error on %s (request id %s)", request.url.path, request_id)
        return _error(500, "internal error", {"X-Request-ID": request_id}, request_id=request_id)

    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type", "X-Request-ID"],
        )
    app.add_middleware(BodyGuard, max_bytes=settings.max_body_bytes)
    app.add_middleware(RequestGuard, api_keys=settings.api_keys)  # outermost: before any body is read

    @app.get("/health", responses={503: {"description": "the model is loading or failed to load"}})
    def health() -> JSONResponse:
        if state["classifier"] is not None:
            return JSONResponse({"status": "ok"})
        if state["error"]:
            return JSONResponse({"status": "error", "error": "the model failed to load"}, status_code=503)
        return JSONResponse({"status": "loading"}, status_code=503)

    @app.get("/v1/model", response_model=ModelOut, responses=_responses(401))
    def model_info() -> ModelOut:
        info = state["info"]
        return ModelOut(
            name=info.name,
            labels=list(LABELS),
            base_model=info.base_model,
            context=info.context,
            max_length=info.max_length,
            backend=settings.backend
            if settings.quantize == "none"
            else f"{settings.backend}_{settings.quantize}",
            config_digest=info.config_digest,
            metrics={k: info.metrics.get(k) for k in ("best_epoch", "dev", "test")},
        )

    @app.post("/v1/classify", response_model=ClassifyOut, responses=_responses(400, 401, 413, 422, 500, 503))
    async def classify(body: ClassifyIn) -> ClassifyOut:
        clf, predictions = await run(body.sentences, body.contexts)
        return ClassifyOut(
            model=clf.info.name,
            predictions=[
                PredictionOut(label=p.label, score=p.score, scores=p.scores, truncated=p.truncated)
                for p in predictions
            ],
        )

    @app.post("/v1/analyze", response_model=AnalyzeOut, responses=_responses(400, 401, 413, 422, 500, 503))
    async def analyze(body: AnalyzeIn) -> AnalyzeOut:
        sentences = await run_in_threadpool(split_article, body.text)  # up to 100k chars: off the loop
        if len(sentences) > settings.max_sentences:
            raise HTTPException(
                422, f"invalid request: text has {len(sentences)} sentences; at most {settings.max_sentences}"
            )
        contexts = [None, *(s.text for s in sentences[:-1])]
        clf, predictions = await run([s.text for s in sentences], contexts)
        return AnalyzeOut(
            model=clf.info.name,
            sentences=[
                SentenceOut(
                    sentence=s.text,
                    start=s.start,
                    end=s.end,
                    label=p.label,
                    score=p.score,
                    scores=p.scores,
                    truncated=p.truncated,
                )
                for s, p in zip(sentences, predictions, strict=True)
            ],
        )

    return app


def run_server(
    settings: Settings,
    host: str = "127.0.0.1",
    port: int = 8000,
    log_level: str = "info",
    loader: Callable[[str], Classifier] | None = None,
) -> None:
    """Serve until SIGINT/SIGTERM; then stop accepting, finish in-flight requests, and exit
    within ``settings.shutdown_timeout_s``."""
    import uvicorn

    uvicorn.run(
        create_app(settings, loader),
        host=host,
        port=port,
        log_level=log_level,
        timeout_graceful_shutdown=max(1, round(settings.shutdown_timeout_s)),
    )


def app_from_env() -> FastAPI:
    """The uvicorn factory: settings come from ``CLAIMLENS_*`` environment variables."""
    return create_app(Settings.from_env())
