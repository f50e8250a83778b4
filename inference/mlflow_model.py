"""The MLflow pyfunc wrapper ("models from code"): a logged model directory behind ``predict``."""

from __future__ import annotations

import math

import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel, PythonModelContext

from inference.inputs import Context, ContextLike
from inference.labels import LABELS
from inference.predict import Classifier

CONTEXT_COLUMNS = ("context", "context_after")
DOC_COLUMNS = ("doc", "idx")


class ClaimLensModel(PythonModel):
    """Input: a DataFrame with ``text`` and, for a context model, either its context as text
    (``context``: the sentence(s) before, joined; ``context_after``: the next sentence; null:
    none) or its place (``doc`` and optional ``idx``), from which each sentence's context is
    found as the logged model's own window reads it. Output: ``label``, ``score``,
    ``score_<label>`` for every label, and ``truncated``."""

    def load_context(self, context: PythonModelContext) -> None:
        self.classifier = Classifier.load(context.artifacts["model_dir"])

    # No type hints here on purpose: MLflow would try to derive a schema from them.
    def predict(self, context, model_input, params=None):
        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        if "text" not in frame.columns:
            raise ValueError("model input needs a 'text' column")
        predictions = self.classifier.predict(list(frame["text"]), self._contexts(frame))
        return pd.DataFrame(
            {
                "label": [p.label for p in predictions],
                "score": [p.score for p in predictions],
                **{f"score_{label}": [p.scores[label] for p in predictions] for label in LABELS},
                "truncated": [p.truncated for p in predictions],
            }
        )

    def _contexts(self, frame: pd.DataFrame) -> list[ContextLike] | None:
        given = [c for c in CONTEXT_COLUMNS if c in frame.columns]
        if "doc" in frame.columns:
            if given:
                raise ValueError("give the context as text (context, context_after) or doc and idx, not both")
            idx = [_cell(v) for v in frame["idx"]] if "idx" in frame.columns else None
            return list(self.classifier.contexts(list(frame["text"]), [_cell(v) for v in frame["doc"]], idx))
        if not given:
            return None
        before = [_text(v) for v in frame["context"]] if "context" in frame.columns else [None] * len(frame)
        if "context_after" not in frame.columns:
            return list(before)
        return [Context.of(b, _text(a)) for b, a in zip(before, frame["context_after"], strict=True)]


def _text(value: object) -> str | None:
    # Missing values arrive as None or NaN; both mean "no such sentence".
    return value if isinstance(value, str) and value else None


def _cell(value: object) -> object:
    """A doc or idx cell as Python: NaN (pandas' missing) is None, a whole float an int."""
    if isinstance(value, float):
        return None if math.isnan(value) else int(value) if value.is_integer() else value
    return value.item() if hasattr(value, "item") else value


mlflow.models.set_model(ClaimLensModel())
