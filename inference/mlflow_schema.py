"""The MLflow signature of the logged model: what columns go in and come out."""

from __future__ import annotations

from mlflow.models import ModelSignature
from mlflow.types.schema import ColSpec, Schema

from inference.labels import LABELS

# Explicit, not inferred from an example: an inferred text-only schema makes MLflow drop
# the context columns before predict sees them, so a context model would read no context.
# A context comes as text (context: the sentence(s) before; context_after: the next one) or
# as a place (doc, idx), from which the pyfunc finds the model's own window.
SIGNATURE = ModelSignature(
    inputs=Schema(
        [
            ColSpec("string", "text"),
            ColSpec("string", "context", required=False),
            ColSpec("string", "context_after", required=False),
            ColSpec("string", "doc", required=False),
            ColSpec("long", "idx", required=False),
        ]
    ),
    outputs=Schema(
        [
            ColSpec("string", "label"),
            ColSpec("double", "score"),
            *(ColSpec("double", f"score_{label}") for label in LABELS),
            ColSpec("boolean", "truncated"),
        ]
    ),
)
