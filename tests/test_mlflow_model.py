"""A context model logged through MlflowTracker, reloaded in a fresh interpreter, reads its contexts."""

import json
from pathlib import Path

import pytest
import torch

from inference.labels import LABELS
from inference.predict import Classifier
from tests.conftest import ROOT, SAMPLE, run_python

TEXTS = [t for t, _ in SAMPLE] + [
    "The ministry said the police denied the report. " * 6,  # longer than max_length 32: truncated
    "Police said three men were arrested.",
]
# Some rows without a previous sentence, one with a context too long to fit beside its sentence.
CONTEXTS = [None, TEXTS[0], TEXTS[1], None, TEXTS[2], TEXTS[1] * 5]
REGISTERED = "claimlens-ctx-test"

LOG = """
import sys
from pathlib import Path
from training.config import TrackingConfig
from training.tracking import tracking_run

uri, model_dir, example = sys.argv[1], Path(sys.argv[2]), sys.argv[3:]
config = TrackingConfig(uri=uri, experiment="ctx", registered_model={registered!r})
with tracking_run(config, "ctx") as tracker:
    tracker.log_model(model_dir, input_example=example)
"""

RELOAD = """
import json, sys
import mlflow, pandas as pd, torch

uri, threads, texts, contexts = sys.argv[1], int(sys.argv[2]), *json.loads(sys.argv[3])
torch.set_num_threads(threads)  # the test process's count, so that sums run in the same order
mlflow.set_tracking_uri(uri)
model = mlflow.pyfunc.load_model("models:/{registered}/1")
info = mlflow.models.get_model_info("models:/{registered}/1")
with_context = model.predict(pd.DataFrame({{"text": texts, "context": contexts}}))
text_only = model.predict(pd.DataFrame({{"text": texts}}))
print(json.dumps({{
    "with_context": with_context.to_dict(orient="records"),
    "text_only": text_only.to_dict(orient="records"),
    "inputs": info.signature.inputs.to_dict(),
    "outputs": info.signature.outputs.to_dict(),
    "inference_from": sys.modules["inference"].__file__,
}}))
"""


@pytest.fixture(scope="module")
def reloaded(sharp_context_model_dir, tmp_path_factory) -> dict:
    # Logged in a subprocess too: mlflow.set_tracking_uri/set_experiment are process-wide and
    # leak into the environment, which would reach later tests' trainings.
    store = tmp_path_factory.mktemp("mlflow-store")
    uri = f"sqlite:///{store / 'mlflow.db'}"
    log_args = [uri, str(sharp_context_model_dir), *TEXTS[:3]]
    run_python(LOG.format(registered=REGISTERED), log_args, store, str(ROOT))
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    payload = json.dumps([TEXTS, CONTEXTS])
    out = run_python(
        RELOAD.format(registered=REGISTERED), [uri, str(torch.get_num_threads()), payload], elsewhere, ""
    )
    result = json.loads(out.strip().splitlines()[-1])
    result["store"] = store
    return result


def _as_rows(predictions) -> list[dict]:
    return [
        {
            "label": p.label,
            "score": p.score,
            **{f"score_{label}": p.scores[label] for label in LABELS},
            "truncated": p.truncated,
        }
        for p in predictions
    ]


def test_the_sharp_model_scores_differ_with_and_without_context(sharp_context_model_dir):
    clf = Classifier.load(sharp_context_model_dir)
    with_context, without = clf.predict(TEXTS, CONTEXTS), clf.predict(TEXTS)
    changed = [
        a.scores != pytest.approx(b.scores, abs=1e-3) for a, b in zip(with_context, without, strict=True)
    ]
    # Every row with a context scores differently, so dropping the column cannot go unseen;
    # but the sentence that fills max_length on its own leaves no room for one.
    assert changed == [c is not None for c in CONTEXTS[:4]] + [False, True]


def test_reloaded_model_matches_the_classifier_exactly_with_contexts(reloaded, sharp_context_model_dir):
    expected = _as_rows(Classifier.load(sharp_context_model_dir).predict(TEXTS, CONTEXTS))
    assert reloaded["with_context"] == expected
    assert [r["truncated"] for r in expected] == [False, False, False, False, True, False]


def test_reloaded_model_without_the_context_column_reads_no_context(reloaded, sharp_context_model_dir):
    expected = _as_rows(Classifier.load(sharp_context_model_dir).predict(TEXTS))
    assert reloaded["text_only"] == expected
    assert reloaded["text_only"] != reloaded["with_context"]


def test_the_logged_code_is_what_was_loaded(reloaded):
    # Not the checkout's inference package (installed editable): the copy logged with the model.
    where = Path(reloaded["inference_from"]).resolve()
    assert where.is_relative_to(reloaded["store"].resolve()), where
    assert not where.is_relative_to(ROOT)


def test_logged_signature_names_optional_context_and_every_output(reloaded):
    inputs = [(c["name"], c["type"], c.get("required", True)) for c in reloaded["inputs"]]
    assert inputs == [
        ("text", "string", True),
        ("context", "string", False),
        ("context_after", "string", False),  # the next sentence, for a window that reads it
        ("doc", "string", False),  # or the sentence's place, from which the pyfunc finds its window
        ("idx", "long", False),
    ]
    outputs = [(c["name"], c["type"]) for c in reloaded["outputs"]]
    assert outputs == [
        ("label", "string"),
        ("score", "double"),
        *((f"score_{label}", "double") for label in LABELS),
        ("truncated", "boolean"),
    ]
