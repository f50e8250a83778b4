"""Slow: train the real quickstart model and check it against the seed article (`make test-slow`)."""

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT, SHARED, train_cli


@pytest.mark.slow
@pytest.mark.real_weights
@pytest.mark.skipif(not (SHARED / "LABELS.md").is_file(), reason="needs ../shared")
def test_quickstart_trains_and_labels_the_seed_article(tmp_path):
    train = train_cli(
        tmp_path, "quickstart", f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}", timeout=1800
    )
    assert train.returncode == 0, train.stderr[-3000:]
    metrics = json.loads((tmp_path / "models" / "quickstart" / "metrics.json").read_text())
    assert metrics["test"]["macro_f1"] > 0.75  # the corpus test split
    seed = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "seed_article.py"),
            "--model",
            "models/quickstart",
            "--labels-md",
            str(SHARED / "LABELS.md"),
            "--seed-article",
            str(SHARED / "seed_article.txt"),
            "--out",
            str(tmp_path),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert seed.returncode == 0, seed.stderr[-2000:]
    result = json.loads((tmp_path / "seed_article_quickstart.json").read_text())
    assert result["agree"] >= 10, result
