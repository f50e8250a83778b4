import re

import pytest

from inference.labels import ID2LABEL, LABELS, check_id2label, check_label, label_counts
from tests.conftest import ROOT, SHARED


def test_label_tuple_is_the_contract():
    assert LABELS == ("claim", "denial", "official_statement", "other")
    guide = (ROOT / "data" / "LABEL_GUIDE.md").read_text()
    table_labels = re.findall(r"^\| `(\w+)` \|", guide, flags=re.MULTILINE)
    assert tuple(table_labels) == LABELS


@pytest.mark.skipif(not (SHARED / "LABELS.md").is_file(), reason="needs ../shared/LABELS.md")
def test_project_guide_says_what_the_shared_contract_says():
    shared = (SHARED / "LABELS.md").read_text().strip()
    guide = (ROOT / "data" / "LABEL_GUIDE.md").read_text()
    # The project guide is the contract verbatim plus rulings that come after it.
    assert guide.startswith(shared)
    assert "## Project rulings" in guide[len(shared) :]


def test_check_label_rejects_unknown():
    assert check_label("denial") == "denial"
    with pytest.raises(ValueError, match="unknown label 'rumour'"):
        check_label("rumour", "f.jsonl:3")


def test_id2label_mismatch_is_refused():
    check_id2label({str(k): v for k, v in ID2LABEL.items()}, "model")
    with pytest.raises(ValueError, match="differ from the code"):
        check_id2label({0: "claim", 1: "other"}, "model")


def test_label_counts_lists_every_label():
    assert label_counts(["claim", "claim"]) == {"claim": 2, "denial": 0, "official_statement": 0, "other": 0}


def test_inference_never_imports_training():
    import subprocess
    import sys

    code = (
        "import sys, inference, inference.app, inference.cli, inference.standoff, inference.evaluate;"
        "print(sorted(m for m in sys.modules if m == 'training' or m.startswith('training.')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.strip() == "[]"
