"""The real server whose model takes ``delay`` seconds per call: for the shutdown test.

python tests/slow_server.py MODEL_DIR PORT DELAY
"""

import sys
import time

from inference.app import Settings, run_server
from inference.predict import Classifier


class Slow(Classifier):
    delay = 0.0

    def predict(self, texts, contexts=None):
        time.sleep(self.delay)
        return super().predict(texts, contexts)


def load(path: str) -> Classifier:
    clf = Classifier.load(path)
    slow = Slow(clf.backend, clf.tokenizer, clf.info)
    slow.delay = float(sys.argv[3])
    return slow


if __name__ == "__main__":
    settings = Settings(model_dir=sys.argv[1], shutdown_timeout_s=10.0)
    run_server(settings, port=int(sys.argv[2]), log_level="info", loader=load)
