"""The MLflow pyfunc wrapper ("models from code"): a logged model directory behind ``predict``."""

from __future__ import annotations

import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel, PythonModelContext

from inference.labels import LABELS
from inference.predict import Classifier


class ClaimLensModel(PythonModel):
    """Input: a DataFrame with ``text`` and an optional ``context`` (the previous sentence, or
    null); output: ``label``, ``score``, ``score_<label>`` for every label, and ``truncated``."""

    def load_context(self, context: PythonModelContext) -> None:
        self.classifier = Classifier.load(context.artifacts["model_dir"])

    # No type hints here on purpose: MLflow would try to derive a schema from them.
    def predict(self, context, model_input, params=None):
        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        if "text" not in frame.columns:
            raise ValueError("model input needs a 'text' column")
        contexts = None
        if "context" in frame.columns:
            # Missing values arrive as None or NaN; both mean "no previous sentence".
            contexts = [c if isinstance(c, str) and c else None for c in frame["context"]]
        predictions = self.classifier.predict(list(frame["text"]), contexts)
        return pd.DataFrame(
            {
                "label": [p.label for p in predictions],
                "score": [p.score for p in predictions],
                **{f"score_{label}": [p.scores[label] for p in predictions] for label in LABELS},
                "truncated": [p.truncated for p in predictions],
            }
        )


mlflow.models.set_model(ClaimLensModel())
