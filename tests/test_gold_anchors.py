import json

import pytest

from benchmarks.gold_anchors import anchor_problems, main
from inference.standoff import document_sentences
from tests.conftest import ROOT, SHARED, polnear_root

TEXT = 'Headline\n\n"Is it true?" Smith said. Police denied it.\n'


def write_rows(path, spans):
    rows = [
        {"dataset": "polnear", "doc": "train/story", "idx": i, "start": a, "end": b, "label": "other"}
        for i, (a, b) in enumerate(spans)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_rows_from_an_older_splitter_are_reported(tmp_path):
    root = polnear_root(tmp_path, {"story": TEXT})
    spans = [(s.start, s.end) for s in document_sentences(root, "polnear", "train/story")]
    assert len(spans) == 3  # the closing quote and "Smith said." stay one sentence
    assert anchor_problems(write_rows(tmp_path / "good.jsonl", spans), root) == []
    quote, attribution = (spans[1][0], TEXT.index(" Smith")), (TEXT.index("Smith"), spans[1][1])
    old = write_rows(tmp_path / "old.jsonl", [spans[0], quote, attribution, spans[2]])
    problems = anchor_problems(old, root)
    assert any("4 gold rows, splitter gives 3 sentences" in p for p in problems)
    assert any(f"idx 1 span {quote[0]}-{quote[1]}" in p for p in problems)
    assert all(p.startswith("old.jsonl: polnear:train/story") for p in problems)


def test_main_exits_non_zero_on_a_mismatch_and_a_missing_root_is_a_clear_error(tmp_path, capsys):
    root = polnear_root(tmp_path, {"story": TEXT})
    spans = [(s.start, s.end) for s in document_sentences(root, "polnear", "train/story")]
    gold = tmp_path / "gold"
    gold.mkdir()
    for split in ("train", "dev", "test"):
        write_rows(gold / f"{split}.jsonl", spans)
    assert main(["--gold-dir", str(gold), "--data-root", str(root)]) == 0
    write_rows(gold / "dev.jsonl", spans[::-1])
    assert main(["--gold-dir", str(gold), "--data-root", str(root)]) == 1
    assert "dev.jsonl: polnear:train/story: idx 0 span" in capsys.readouterr().out
    assert main(["--gold-dir", str(gold), "--data-root", str(tmp_path / "nowhere")]) == 2
    with pytest.raises(ValueError, match=r"data root .* does not exist"):
        anchor_problems(gold / "dev.jsonl", tmp_path / "nowhere")


@pytest.mark.skipif(not (SHARED / "datasets").is_dir(), reason="needs ../shared/datasets")
@pytest.mark.parametrize("split", ["train", "dev", "test"])
def test_committed_gold_is_anchored_to_the_current_splitter(split):
    assert anchor_problems(ROOT / "data" / "gold" / f"{split}.jsonl", SHARED / "datasets") == []


def test_build_gold_reproduces_the_committed_gold_byte_for_byte(tmp_path):
    """Rebuilding from first-pass parts applies every later record (adjudication, re-anchoring,
    the candidates ruling), so it cannot silently undo them."""
    import shutil

    from training.annotation import build_gold

    gold = ROOT / "data" / "gold"
    copy = tmp_path / "gold"
    shutil.copytree(gold, copy)
    for split in ("train", "dev", "test"):
        (copy / f"{split}.jsonl").unlink()
    build_gold(copy)
    for split in ("train", "dev", "test"):
        assert (copy / f"{split}.jsonl").read_bytes() == (gold / f"{split}.jsonl").read_bytes(), split
