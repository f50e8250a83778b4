"""The real server, its model held at a gate the test controls: for the shutdown test.

python tests/slow_server.py MODEL_DIR PORT ENTERED_FD RELEASE_FD

Each forward pass first writes one byte to ENTERED_FD (the request is inside the model),
then waits for one byte on RELEASE_FD: the test decides when the in-flight request ends.
"""

import os
import sys

from inference.predict import Classifier
from inference.server import run_server
from inference.settings import Settings


class Gated(Classifier):
    entered_fd = -1
    release_fd = -1

    def predict(self, texts, contexts=None):
        os.write(self.entered_fd, b"1")
        os.read(self.release_fd, 1)
        return super().predict(texts, contexts)


def load(path: str) -> Classifier:
    clf = Classifier.load(path)
    gated = Gated(clf.backend, clf.tokenizer, clf.info)
    gated.entered_fd, gated.release_fd = int(sys.argv[3]), int(sys.argv[4])
    return gated


if __name__ == "__main__":
    settings = Settings(model_dir=sys.argv[1], shutdown_timeout_s=10.0)
    run_server(settings, port=int(sys.argv[2]), log_level="info", loader=load)
