"""The unlabelled pool (training/pool.py) and the per-row dataset readers it adds to inference/standoff.py."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import pytest

from inference.standoff import document_sentences, document_text, table_documents
from tests.conftest import ROOT, SHARED, pool_root
from training.annotation import split_of
from training.pool import KEYS, SOURCES, build_pool, fair_shares, main, read_pool, with_text

DATA = SHARED / "datasets"
needs_shared = pytest.mark.skipif(not DATA.is_dir(), reason="needs ../shared/datasets")


def standoff(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def gold_rows(root: Path, dataset: str, doc: str) -> list[dict[str, object]]:
    """Every sentence of a document as gold stand-off rows (label and all)."""
    return [
        {"dataset": dataset, "doc": doc, "idx": i, "start": s.start, "end": s.end, "label": "other"}
        for i, s in enumerate(document_sentences(root, dataset, doc))
    ]


def train_docs(dataset: str, docs: list[str]) -> list[str]:
    return [d for d in docs if split_of(dataset, d) == "train"]


@pytest.fixture
def fake(tmp_path: Path) -> dict[str, object]:
    """A made-up data root, a gold-train story, and a train-split story listed in gold dev."""
    root = pool_root(tmp_path)
    stories = train_docs("polnear", [f"train/story{i}" for i in range(8)])
    assert len(stories) >= 3  # the hash split is fixed: these names give enough train stories
    gold_doc, dev_doc = stories[0], stories[1]
    test_doc = train_docs("newsdiscourse", [f"train/Politics/Reuters_{i}" for i in range(8)])[0]
    return {
        "root": root,
        "gold_doc": gold_doc,
        "dev_doc": dev_doc,
        "test_doc": test_doc,
        "train": standoff(tmp_path / "train.jsonl", gold_rows(root, "polnear", gold_doc)),
        "dev": standoff(tmp_path / "dev.jsonl", gold_rows(root, "polnear", dev_doc)),
        "test": standoff(tmp_path / "test.jsonl", gold_rows(root, "newsdiscourse", test_doc)),
    }


def run_pool(fake: dict[str, object], out: Path, *extra: str) -> list[dict[str, object]]:
    code = main(
        [
            "--data-root", str(fake["root"]), "--out", str(out), "--gold-train", str(fake["train"]),
            "--exclude", str(fake["dev"]), str(fake["test"]), *extra,
        ]
    )  # fmt: skip
    assert code == 0
    return [json.loads(line) for line in out.read_text().splitlines()]


def test_the_pool_is_train_articles_only_without_text_and_holds_all_gold_train_sentences(
    fake, tmp_path, capsys
):
    rows = run_pool(fake, tmp_path / "pool.jsonl")
    printed = capsys.readouterr().out
    assert all(list(r) == list(KEYS) for r in rows)  # stand-off only: no text, no label
    docs = {(r["dataset"], r["doc"]) for r in rows}
    assert all(split_of(d, doc) == "train" for d, doc in docs)
    assert ("polnear", fake["dev_doc"]) not in docs and ("newsdiscourse", fake["test_doc"]) not in docs
    assert {d for d, _ in docs} == set(SOURCES)  # every source is represented
    gold = [r for r in rows if r["doc"] == fake["gold_doc"]]
    # story: two sentences, "Reuters." (one word), 320 words of 1,600 characters, one more sentence.
    assert [r["idx"] for r in gold] == [0, 1, 4]
    sentences = with_text(rows, fake["root"])
    assert all(len(s.text.split()) >= 3 and len(s.text) <= 1500 for s in sentences)
    assert not any("(APPLAUSE)" in s.text for s in sentences)
    # The context is the document's own previous sentence, also where that one is not in the pool.
    third = next(s for s in sentences if s.doc == fake["gold_doc"] and s.idx == 4)
    assert third.context is not None and third.context.startswith("word word")
    assert "polnear" in printed and f"{len(rows):>9}" in printed
    assert run_pool(fake, tmp_path / "again.jsonl") == rows  # the same seed draws the same pool


def test_the_cap_keeps_gold_train_and_shares_the_rest_between_sources(fake, tmp_path):
    gold = len([r for r in run_pool(fake, tmp_path / "all.jsonl") if r["doc"] == fake["gold_doc"]])
    rows = run_pool(fake, tmp_path / "capped.jsonl", "--max-sentences", str(gold + 18), "--seed", "3")
    assert len(rows) <= gold + 18
    assert sum(r["doc"] == fake["gold_doc"] for r in rows) == gold
    per_source = Counter(r["dataset"] for r in rows if r["doc"] != fake["gold_doc"])
    # 18 / 6 = 3 each, in whole documents (polnear and newsdiscourse documents have 3 sentences).
    assert set(per_source) == set(SOURCES) and max(per_source.values()) <= 3
    with pytest.raises(ValueError, match="below the gold-train sentences"):
        build_pool(fake["root"], fake["train"], [fake["dev"]], max_sentences=1)


def test_a_gold_train_article_may_not_be_held_out(fake):
    with pytest.raises(ValueError, match="gold-train documents outside"):
        build_pool(fake["root"], fake["train"], [fake["train"]])


def test_fair_shares_give_what_a_small_source_cannot_use_to_the_others():
    assert fair_shares({"a": 10, "b": 100, "c": 100}, 90) == {"a": 10, "b": 40, "c": 40}
    assert fair_shares({"a": 1, "b": 1}, 10) == {"a": 1, "b": 1}
    assert sum(fair_shares({"a": 5, "b": 5, "c": 5}, 7).values()) == 7


def test_read_pool_refuses_duplicates_and_stale_offsets(fake, tmp_path):
    row = {"dataset": "polnear", "doc": fake["gold_doc"], "idx": 0, "start": 0, "end": 10}
    with pytest.raises(ValueError, match="duplicate sentence"):
        read_pool(standoff(tmp_path / "dupe.jsonl", [row, row]))
    with pytest.raises(ValueError, match="no longer matches the sentence splitter"):
        with_text([row], fake["root"])


def test_row_readers_on_made_up_files(tmp_path):
    root = pool_root(tmp_path, n=2)
    liar = table_documents(root, "liar", "train")
    assert liar == ["train/100", "train/101"]
    assert [s.text for s in document_sentences(root, "liar", "train/101")] == [
        'Says the governor cut 1 "good" jobs.',  # quotes are text in these tab-separated files
        "He denied it later.",
    ]
    emergent = table_documents(root, "emergent", "url-versions-2015-06-14-clean-train")
    assert document_text(root, "emergent", emergent[1]) == "Analysts say Apple will sell 1 million watches"
    assert table_documents(root, "clef2019", "training/20160101_debate")[-1] == "training/20160101_debate/3"
    with pytest.raises(ValueError, match="row 'train/7' not found"):
        document_text(root, "liar", "train/7")
    with pytest.raises(ValueError, match=r"liar file .* not found"):
        table_documents(root, "liar", "valid")


@needs_shared
def test_row_readers_return_the_files_own_rows():
    """Known rows, checked against the raw files read here independently of the readers."""
    liar_line = (DATA / "liar" / "train.tsv").read_text(encoding="utf-8").splitlines()[1].split("\t")
    sentences = document_sentences(DATA, "liar", f"train/{liar_line[0].removesuffix('.json')}")
    assert [(s.start, s.end) for s in sentences] == [(0, 35), (36, 141)]
    assert " ".join(s.text for s in sentences) == liar_line[2]
    with (DATA / "emergent" / "url-versions-2015-06-14-clean-train.csv").open(newline="") as f:
        first = next(csv.DictReader(f))
    doc = f"url-versions-2015-06-14-clean-train/{first['articleId']}"
    assert [s.text for s in document_sentences(DATA, "emergent", doc)] == [first["articleHeadline"]]
    clef = DATA / "clef2019_checkthat_task1" / "training" / "20160209_msnbc_dem.tsv"
    line = clef.read_text(encoding="utf-8").splitlines()[2].split("\t")
    assert line[0] == "3"
    assert document_text(DATA, "clef2019", "training/20160209_msnbc_dem/3") == line[2]
    assert len(table_documents(DATA, "liar", "train")) == 10269
    assert len(table_documents(DATA, "emergent", "url-versions-2015-06-14-clean-train")) == 2071


@needs_shared
def test_the_committed_pool_is_stand_off_over_train_articles_only():
    pool = ROOT / "data" / "pool" / "pool.jsonl"
    rows = read_pool(pool)
    assert 35_000 <= len(rows) <= 40_000 and all(list(r) == list(KEYS) for r in rows)
    docs = {(str(r["dataset"]), str(r["doc"])) for r in rows}
    held_out = set()
    for split in ("dev", "test"):
        for line in (ROOT / "data" / "gold" / f"{split}.jsonl").read_text().splitlines():
            row = json.loads(line)
            held_out.add((row["dataset"], row["doc"]))
    assert not docs & held_out
    assert all(split_of(d, doc) == "train" for d, doc in docs)
    assert {d for d, _ in docs} == set(SOURCES)
    # The row datasets' official train files only.
    assert all(doc.startswith("url-versions-2015-06-14-clean-train/") for d, doc in docs if d == "emergent")
    assert all(doc.startswith("train/") for d, doc in docs if d == "liar")
    assert all(doc.startswith("training/") for d, doc in docs if d == "clef2019")
    gold_train = {
        (json.loads(line)["dataset"], json.loads(line)["doc"])
        for line in (ROOT / "data" / "gold" / "train.jsonl").read_text().splitlines()
    }
    assert gold_train <= docs
    assert len(with_text(rows, DATA)) == len(rows)  # every offset still lands on its sentence
