"""Classifying sentences and whole articles with a trained model."""

from __future__ import annotations

import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from inference.backends import Backend, OnnxBackend, TorchBackend, check_choice, onnx_path
from inference.calibration import softmax
from inference.explain import Explainer, Explanation
from inference.inputs import Context, ContextLike, Encoded, InputBuilder, context_windows
from inference.labels import LABELS
from inference.model import ModelInfo, load_model_dir, load_tokenizer_and_info
from inference.sentences import Sentence, split_sentences
from inference.speakers import Attribution, SpeakerExtractor


@dataclass(frozen=True)
class Prediction:
    """One sentence's label, its probability, and the probability of every label.

    ``truncated`` is true when the sentence had more tokens than the model reads
    (``max_length``), so that only its beginning was classified. Scores are calibrated:
    ``softmax(logits / T)`` with the model folder's temperature ``T`` (1 if it has none).
    ``explanation`` is there only when asked for (``explain=True``).
    """

    label: str
    score: float
    scores: dict[str, float]
    truncated: bool = False
    explanation: Explanation | None = None


@dataclass(frozen=True)
class SentencePrediction:
    """A sentence of an article with its offsets and its prediction.

    ``attribution`` (speaker, cue, speaker type, in article offsets) is there only when a
    speaker model was given and the sentence is a claim, denial or official_statement whose
    speaker or cue it found.
    """

    sentence: str
    start: int
    end: int
    label: str
    score: float
    scores: dict[str, float]
    truncated: bool = False
    explanation: Explanation | None = None
    attribution: Attribution | None = None


def _check_texts(texts: object, name: str = "texts") -> list[str]:
    if isinstance(texts, str) or not isinstance(texts, Sequence):
        raise ValueError(f"{name} must be a list of strings, got {type(texts).__name__}")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise ValueError(f"{name}[{i}] must be a string, got {type(text).__name__}")
        if not text.strip():
            raise ValueError(f"{name}[{i}] is empty")
    return list(texts)


class Classifier:
    """A loaded model; reusable, and safe to call from several threads.

    ``backend`` runs the forward pass: a ``PreTrainedModel`` (run by PyTorch) or any
    ``inference.backends.Backend``, such as an ONNX Runtime session.

    >>> clf = Classifier.load("models/quickstart", backend="onnx", quantize="int8")  # doctest: +SKIP
    >>> clf.predict(["Police denied the report."])[0].label  # doctest: +SKIP
    'denial'
    """

    def __init__(
        self,
        backend: PreTrainedModel | Backend,
        tokenizer: PreTrainedTokenizerBase,
        info: ModelInfo,
        batch_size: int = 64,
    ) -> None:
        self.backend: Backend = TorchBackend(backend) if isinstance(backend, PreTrainedModel) else backend
        self.tokenizer = tokenizer
        self.info = info
        self.batch_size = batch_size
        self.inputs = InputBuilder(tokenizer, info.max_length, info.context, info.window)
        self.temperature = info.temperature
        # Fast tokenizers are not re-entrant; one lock keeps concurrent callers correct.
        self._lock = threading.Lock()
        self._explainer: Explainer | None = None  # built on the first explain()
        self._explainer_lock = threading.Lock()

    @classmethod
    def load(
        cls,
        path: str | Path,
        batch_size: int = 64,
        backend: str = "torch",
        quantize: str = "none",
        threads: int | None = None,
    ) -> Classifier:
        """Load a model directory; ``backend="onnx"`` uses its exported ``model[.int8].onnx``."""
        check_choice(backend, quantize)
        if threads is not None and threads < 1:
            raise ValueError(f"threads must be at least 1, got {threads}")
        if threads:
            torch.set_num_threads(threads)
        if backend == "torch":
            model, tokenizer, info = load_model_dir(path)
            return cls(model, tokenizer, info, batch_size=batch_size)
        tokenizer, info = load_tokenizer_and_info(path)
        onnx = OnnxBackend(onnx_path(Path(path), quantize), threads)
        return cls(onnx, tokenizer, info, batch_size=batch_size)

    def contexts(
        self,
        texts: Sequence[str],
        docs: Sequence[object] | None = None,
        idx: Sequence[object | None] | None = None,
    ) -> list[Context]:
        """Each text's context as this model reads it (its window, ``info.window``), from doc ids
        and positions as :func:`inference.inputs.context_windows` takes them.

        >>> clf.contexts(["He denied it.", "Rebels said so."], docs=[1, 1], idx=[1, 0])[0]  # doctest: +SKIP
        Context(before=('Rebels said so.',), after=())
        """
        return context_windows(texts, docs, idx, self.info.window)

    def predict(
        self,
        texts: Sequence[str],
        contexts: Sequence[ContextLike] | None = None,
        explain: bool = False,
        progress: bool | None = False,
    ) -> list[Prediction]:
        """Label each text; ``contexts[i]`` is what surrounds ``texts[i]`` in its document.

        A context is None (none), a string (the sentence(s) before, already joined: read as
        given) or a :class:`~inference.inputs.Context` (the neighbours, as :meth:`contexts` or
        :func:`~inference.inputs.context_windows` give them: the model reads its own window).
        Results keep the input order; batches are formed from inputs of similar length.
        A model trained without context ignores ``contexts``. ``explain=True`` adds each
        prediction's :class:`~inference.explain.Explanation` (see :meth:`explain`; slower).
        ``progress`` shows a bar with rate and ETA on stderr (None: only on a terminal).

        >>> clf.predict(["He denied it."], ["Rebels said they took the town."])[0].label  # doctest: +SKIP
        'denial'
        """
        texts = _check_texts(texts)
        contexts = _check_contexts(contexts, len(texts))
        logits, truncated = self._logits(texts, contexts, progress)
        probs = softmax(logits, self.temperature)
        results = [self._prediction(row, cut) for row, cut in zip(probs.tolist(), truncated, strict=True)]
        if not explain:
            return results
        explanations = self.explain(texts, contexts, [p.label for p in results])
        return [replace(p, explanation=e) for p, e in zip(results, explanations, strict=True)]

    def logits(
        self,
        texts: Sequence[str],
        contexts: Sequence[ContextLike] | None = None,
        progress: bool | None = False,
    ) -> np.ndarray:
        """The raw, uncalibrated logits: one row per text in input order, columns in ``LABELS`` order.

        >>> clf.logits(["Police denied the report."]).shape  # doctest: +SKIP
        (1, 4)
        """
        texts = _check_texts(texts)
        logits, _ = self._logits(texts, _check_contexts(contexts, len(texts)), progress)
        return logits[:, [self.info.labels.index(label) for label in LABELS]]

    def explain(
        self,
        texts: Sequence[str],
        contexts: Sequence[ContextLike] | None = None,
        labels: Sequence[str] | None = None,
    ) -> list[Explanation]:
        """Why each text got its label: its words (and its context's) scored by integrated gradients.

        ``labels[i]`` is the label to explain (default: the predicted one). Explaining needs the
        PyTorch weights: an ONNX classifier loads the folder's ``model.safetensors`` the first time.
        A model whose window holds the next sentence cannot be explained yet (``ValueError``).

        >>> clf.explain(["Police denied the report."])[0].top(1)[0].text  # doctest: +SKIP
        'denied'
        """
        texts = _check_texts(texts)
        contexts = _check_contexts(contexts, len(texts))
        if labels is None:
            labels = [p.label for p in self.predict(texts, contexts)]
        elif isinstance(labels, str) or len(labels) != len(texts):
            raise ValueError(f"labels must be a list of one label per text ({len(texts)})")
        if self.info.window.after:
            raise ValueError(
                "explanations read one context segment; this model also reads the next sentence"
            )
        # The explainer reads a context string as given: hand it this model's window, joined.
        joined = [self.info.window.parts(c)[0] or None for c in contexts]
        return self._explainer_for().explain(texts, joined, labels)

    def _explainer_for(self) -> Explainer:
        with self._explainer_lock:
            if self._explainer is None:
                model = (
                    self.backend.model if isinstance(self.backend, TorchBackend) else self._torch_weights()
                )
                self._explainer = Explainer(model, self.tokenizer, self.info, self.temperature)
            return self._explainer

    def _torch_weights(self) -> PreTrainedModel:
        """The PyTorch weights beside an exported model, for explanations."""
        if not self.info.path or not (Path(self.info.path) / "model.safetensors").is_file():
            raise ValueError(
                f"explanations need the PyTorch weights (model.safetensors) of the model in {self.info.path or '?'}"
            )
        model, _, _ = load_model_dir(self.info.path)
        return model

    def _logits(
        self, texts: list[str], contexts: list[ContextLike], progress: bool | None
    ) -> tuple[np.ndarray, list[bool]]:
        """Logits in input order (columns: the folder's label order) and each input's truncated flag."""
        with self._lock:
            encoded = self.inputs(texts, contexts)
            logits = np.zeros((len(texts), len(self.info.labels)), dtype=np.float32)
            # disable=None: tqdm's own "only when stderr is a terminal".
            disable = None if progress is None else not progress
            with tqdm(total=len(texts), unit="sentence", file=sys.stderr, disable=disable) as bar:
                for batch in self._batches([len(e.input_ids) for e in encoded]):
                    logits[batch] = self._forward([encoded[i] for i in batch])
                    bar.update(len(batch))
        return logits, [e.truncated for e in encoded]

    def _prediction(self, row: list[float], truncated: bool) -> Prediction:
        # The folder's own label order says which output is which; scores follow LABELS.
        by_label = dict(zip(self.info.labels, row, strict=True))
        best = max(LABELS, key=by_label.__getitem__)
        scores = {label: round(by_label[label], 6) for label in LABELS}
        return Prediction(best, scores[best], scores, truncated)

    def _batches(self, lengths: list[int]) -> list[list[int]]:
        """Indices by length (tokens), cut into batches of at most ``batch_size`` whose inputs
        are of similar length: a batch is padded to its longest input, and padding is wasted work."""
        order = sorted(range(len(lengths)), key=lengths.__getitem__)
        batches: list[list[int]] = []
        for i in order:
            if (
                batches
                and len(batches[-1]) < self.batch_size
                and lengths[i] <= 1.3 * lengths[batches[-1][0]] + 4
            ):
                batches[-1].append(i)
            else:
                batches.append([i])
        return batches

    def _forward(self, encoded: list[Encoded]) -> np.ndarray:
        arrays = self.inputs.batch(encoded)
        return self.backend({n: arrays[n] for n in self.backend.input_names})

    def analyze(
        self,
        text: str,
        explain: bool = False,
        speakers: SpeakerExtractor | str | Path | None = None,
    ) -> list[SentencePrediction]:
        """Split an article into sentences and label each, its neighbours (:meth:`contexts`) as context.

        ``speakers`` (a ``SpeakerExtractor`` or a speaker model directory, loaded once and
        cached) adds each claim, denial and official_statement's ``attribution``: who said it
        and the words that report it, in the article's offsets.

        >>> s = clf.analyze("Police said three men were held.", speakers="models/speakers")[0]  # doctest: +SKIP
        >>> s.label, s.attribution.speaker.text, s.attribution.cue.text  # doctest: +SKIP
        ('official_statement', 'Police', 'said')
        """
        extractor = speaker_extractor(speakers)  # a bad folder fails before any sentence is read
        sentences = split_article(text)
        contexts = self.contexts([s.text for s in sentences])
        predictions = self.predict([s.text for s in sentences], contexts, explain=explain)
        found: list[Attribution | None] = (
            extractor.extract(sentences, [p.label for p in predictions])
            if extractor is not None
            else [None] * len(sentences)
        )
        return [
            SentencePrediction(
                s.text, s.start, s.end, p.label, p.score, p.scores, p.truncated, p.explanation, a
            )
            for s, p, a in zip(sentences, predictions, found, strict=True)
        ]


def _check_contexts(contexts: object, n: int) -> list[ContextLike]:
    if contexts is None:
        return [None] * n
    if isinstance(contexts, str) or not isinstance(contexts, Sequence):
        raise ValueError(f"contexts must be a list of strings, Contexts or None, got {type(contexts).__name__}")
    if len(contexts) != n:
        raise ValueError(f"got {len(contexts)} contexts for {n} texts")
    for i, context in enumerate(contexts):
        if context is not None and not isinstance(context, str | Context):
            raise ValueError(f"contexts[{i}] must be a string, a Context or None, got {type(context).__name__}")
    return [c or None for c in contexts]


def split_article(text: str) -> list[Sentence]:
    """The sentences of an article; ``ValueError`` when it is not a string or has none."""
    if not isinstance(text, str):
        raise ValueError(f"text must be a string, got {type(text).__name__}")
    if not text.strip():
        raise ValueError("text is empty")
    sentences = split_sentences(text)
    if not sentences:
        raise ValueError("text has no sentences")
    return sentences


@lru_cache(maxsize=4)
def _cached(path: str) -> Classifier:
    return Classifier.load(path)


def _classifier(model: str | Path | Classifier) -> Classifier:
    if isinstance(model, Classifier):
        return model
    return _cached(str(Path(model).resolve()))


@lru_cache(maxsize=4)
def _cached_speakers(path: str) -> SpeakerExtractor:
    return SpeakerExtractor.load(path)


def speaker_extractor(speakers: SpeakerExtractor | str | Path | None) -> SpeakerExtractor | None:
    """``speakers`` itself, the speaker model in a directory (loaded once, then cached), or None.

    A directory that is not a speaker model is a ``ValueError`` that says so.

    >>> speaker_extractor("models/speakers") is speaker_extractor("models/speakers")  # doctest: +SKIP
    True
    """
    if speakers is None or isinstance(speakers, SpeakerExtractor):
        return speakers
    if not isinstance(speakers, str | Path) or not str(speakers):
        raise ValueError(
            f"speakers must be a SpeakerExtractor or a speaker model directory, got {speakers!r}"
        )
    return _cached_speakers(str(Path(speakers).resolve()))


def predict(
    texts: Sequence[str],
    model: str | Path | Classifier,
    contexts: Sequence[ContextLike] | None = None,
    explain: bool = False,
) -> list[Prediction]:
    """Label sentences with a model directory (loaded once, then cached) or a ``Classifier``.

    ``contexts[i]``, read by a context model, is what surrounds ``texts[i]``: a string (the
    sentence(s) before it, joined) or a :class:`~inference.inputs.Context` of its neighbours,
    of which the model reads its own window; :func:`inference.inputs.context_windows` builds
    them from doc ids.

    >>> predict(["Police said three men were arrested."], model="models/quickstart")[0].label  # doctest: +SKIP
    'official_statement'
    """
    return _classifier(model).predict(texts, contexts, explain=explain)


def analyze(
    text: str,
    model: str | Path | Classifier,
    explain: bool = False,
    speakers: SpeakerExtractor | str | Path | None = None,
) -> list[SentencePrediction]:
    """Split an article into sentences and label each (see :meth:`Classifier.analyze`).

    ``model`` and ``speakers`` may be directories: each is loaded once, then cached.

    >>> first = analyze("Police said three men were held.", "models/default", speakers="models/speakers")[0]  # doctest: +SKIP
    >>> first.attribution.speaker  # doctest: +SKIP
    Span(text='Police', start=0, end=6)
    """
    return _classifier(model).analyze(text, explain=explain, speakers=speakers)
