import json

import pytest

from inference.inputs import Context
from inference.records import read_labelled
from inference.standoff import document_sentences, read_standoff
from tests.conftest import SAMPLE, SHARED, polnear_root
from training.config import DataConfig
from training.data import encode, load_splits
from training.modeling import tiny_tokenizer


def write_jsonl(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def rows(doc="d1"):
    return [{"doc": doc, "idx": i, "text": t, "label": label} for i, (t, label) in enumerate(SAMPLE)]


def test_reads_rows_with_context(tmp_path):
    examples = read_labelled(write_jsonl(tmp_path / "a.jsonl", rows()))
    assert [e.label for e in examples] == [label for _, label in SAMPLE]
    # Readers give each sentence its neighbours, as wide as any window; a model reads its own part.
    assert examples[0].context == Context((), (SAMPLE[1][0],))
    assert examples[1].context == Context((SAMPLE[0][0],), (SAMPLE[2][0],))
    assert examples[3].context == Context(tuple(t for t, _ in SAMPLE[:3]), ())


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"doc": "d", "idx": 9, "text": "x", "label": "rumour"}, "unknown label 'rumour'"),
        ({"doc": "d", "idx": 9, "text": "   ", "label": "claim"}, "empty text"),
        ({"doc": "d", "idx": 9, "label": "claim"}, "missing column 'text'"),
        ({"doc": "d", "idx": 9, "text": "x"}, "missing column 'label'"),
        ({"doc": "d", "idx": "x", "text": "x", "label": "claim"}, "idx must be an integer"),
        ("{not json", "invalid JSON"),
        ({"doc": "d1", "idx": 0, "text": "again", "label": "claim"}, "duplicate sentence"),
    ],
)
def test_bad_rows_name_file_and_line(tmp_path, row, message):
    path = write_jsonl(tmp_path / "bad.jsonl", [*rows(), row])
    with pytest.raises(ValueError, match=f"bad.jsonl:5: .*{message}"):
        read_labelled(path)


def test_csv_rows_and_errors(tmp_path):
    good = tmp_path / "ok.csv"
    good.write_text("text,label\nPolice said so.,official_statement\n")
    assert read_labelled(good)[0].label == "official_statement"
    bad = tmp_path / "bad.csv"
    bad.write_text("text,label\nPolice said so.,official_statement\nHmm,maybe\n")
    with pytest.raises(ValueError, match=r"bad\.csv:3: unknown label 'maybe'"):
        read_labelled(bad)


def test_split_problems_are_reported_before_training(tmp_path):
    train = write_jsonl(tmp_path / "train.jsonl", rows()[:3])
    dev = write_jsonl(tmp_path / "dev.jsonl", rows("d2"))
    with pytest.raises(ValueError, match=r"train split \(.*train\.jsonl\) has no examples of other"):
        load_splits(DataConfig(train=[{"path": str(train)}], dev=[{"path": str(dev)}]))
    full = write_jsonl(tmp_path / "full.jsonl", rows("d9"))
    short_dev = write_jsonl(tmp_path / "short_dev.jsonl", rows("d3")[1:])
    with pytest.raises(ValueError, match=r"dev split \(.*short_dev\.jsonl\) has no examples of claim"):
        load_splits(DataConfig(train=[{"path": str(full)}], dev=[{"path": str(short_dev)}]))
    train = write_jsonl(tmp_path / "train.jsonl", rows())
    with pytest.raises(ValueError, match="documents in both train and dev"):
        load_splits(DataConfig(train=[{"path": str(train)}], dev=[{"path": str(train)}]))
    with pytest.raises(ValueError, match="does not exist"):
        load_splits(DataConfig(train=[{"path": str(tmp_path / "nope.jsonl")}], dev=[{"path": str(dev)}]))


def test_encode_pairs_context_as_second_segment(tmp_path):
    examples = read_labelled(write_jsonl(tmp_path / "a.jsonl", rows()))
    tokenizer = tiny_tokenizer([t for t, _ in SAMPLE])
    single = encode(examples, tokenizer, max_length=64, context=False)
    paired = encode(examples, tokenizer, max_length=64, context=True)
    assert single["labels"] == [0, 1, 2, 3]
    assert len(paired[1]["input_ids"]) > len(single[1]["input_ids"])
    assert 1 in paired[1]["token_type_ids"] and 1 not in single[1]["token_type_ids"]


def test_standoff_rebuilds_text_from_a_data_root(tmp_path):
    root = polnear_root(
        tmp_path, {"story": 'Headline\n\nPolice said two men were held. "It is false," he said.\n'}
    )
    sentences = document_sentences(root, "polnear", "train/story")
    assert [s.text for s in sentences] == [
        "Headline",
        "Police said two men were held.",
        '"It is false," he said.',
    ]
    gold = write_jsonl(
        tmp_path / "gold.jsonl",
        [
            {
                "dataset": "polnear",
                "doc": "train/story",
                "idx": i,
                "start": s.start,
                "end": s.end,
                "label": label,
            }
            for i, (s, label) in enumerate(
                zip(sentences, ["other", "official_statement", "denial"], strict=True)
            )
        ],
    )
    examples = read_standoff(gold, root)
    assert [e.text for e in examples] == [s.text for s in sentences]
    assert examples[2].context.previous == "Police said two men were held."
    with pytest.raises(ValueError, match=r"data root .* does not exist"):
        read_standoff(gold, tmp_path / "elsewhere")
    empty_root = tmp_path / "empty"
    empty_root.mkdir()
    with pytest.raises(ValueError, match="document 'train/story' not found"):
        read_standoff(gold, empty_root)


@pytest.mark.skipif(not (SHARED / "datasets").is_dir(), reason="needs ../shared/datasets")
def test_committed_gold_resolves_against_the_shared_data():
    from tests.conftest import ROOT

    docs = {}
    for split in ("train", "dev", "test"):
        examples = read_standoff(ROOT / "data" / "gold" / f"{split}.jsonl", SHARED / "datasets")
        assert len(examples) > 500 and all(e.text.strip() for e in examples)
        docs[split] = {e.doc for e in examples}
    # Split by article: no article in two splits.
    assert (
        not (docs["train"] & docs["dev"])
        and not (docs["train"] & docs["test"])
        and not (docs["dev"] & docs["test"])
    )


@pytest.mark.skipif(not (SHARED / "datasets").is_dir(), reason="needs ../shared/datasets")
def test_no_shared_dataset_text_is_copied_into_the_repo():
    import re

    from tests.conftest import ROOT

    seen = set()
    for f in (SHARED / "datasets").rglob("*"):
        if f.suffix in (".txt", ".csv", ".tsv", ".jsonl"):
            for part in re.split(r"(?<=[.!?])\s+|\n", f.read_text(errors="ignore")):
                part = " ".join(part.split())
                if len(part) > 40:
                    seen.add(part)
    copied = []
    for f in (ROOT / "data").rglob("*.jsonl"):
        for line in f.read_text().splitlines():
            text = json.loads(line).get("text")
            if isinstance(text, str) and " ".join(text.split()) in seen:
                copied.append((f.name, text[:60]))
    assert copied == []


@pytest.mark.parametrize(
    "first", ["inference.records", "inference.standoff"], ids=["records-first", "standoff-first"]
)
def test_records_and_standoff_import_in_either_order_without_a_cycle(first):
    import subprocess
    import sys

    from tests.conftest import ROOT

    second = {"inference.records": "inference.standoff", "inference.standoff": "inference.records"}[first]
    # A fresh interpreter: in this one both modules are already imported.
    code = (
        f"import {first}, {second}, inference.readers, inference.records as r; "
        "assert not hasattr(r, 'load_examples'), 'load_examples lives in inference/readers.py'"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
