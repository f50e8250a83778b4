"""claimlens inference: label news sentences as claim, denial, official_statement or other."""

from inference.labels import LABELS
from inference.predict import Classifier, Prediction, SentencePrediction, analyze, predict
from inference.sentences import Sentence, split_sentences

__all__ = [
    "LABELS",
    "Classifier",
    "Prediction",
    "Sentence",
    "SentencePrediction",
    "analyze",
    "predict",
    "split_sentences",
]
