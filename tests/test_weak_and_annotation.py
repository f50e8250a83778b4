import json

import pytest

from inference.standoff import document_sentences
from tests.conftest import SHARED, polnear_root
from training.annotation import agreement, build_gold, merge_labels, prepare_batches, split_of
from training.weak import _combine, read_weak, rule_label


def test_rule_label_follows_the_guide_precedence():
    assert rule_label("denied", "the ministry") == "denial"
    assert rule_label("said", "police in Balkh") == "official_statement"
    assert rule_label("said", "a resident") == "claim"
    assert _combine(["claim", "official_statement"]) == "official_statement"
    assert _combine(["claim", "denial", "official_statement"]) == "denial"
    assert _combine([]) == "other"


def test_unknown_adapter_and_missing_root(tmp_path):
    with pytest.raises(ValueError, match="unknown weak adapter"):
        read_weak("wikipedia", tmp_path)
    with pytest.raises(ValueError, match="does not exist"):
        read_weak("polnear", tmp_path / "nowhere")


def make_root(tmp_path):
    return polnear_root(
        tmp_path,
        {
            "a": "Title\n\nPolice said two were held. The mayor denied it. Rain fell. It stopped.\n",
            "b": "Another\n\nA witness said it was loud. Officials disputed that. The end came. Done.\n",
        },
    )


def test_prepare_merge_build_and_agreement(tmp_path, monkeypatch):
    root = make_root(tmp_path)
    monkeypatch.setattr(
        "training.annotation.all_documents", lambda r: [("polnear", "train/a"), ("polnear", "train/b")]
    )
    batches = prepare_batches(root, tmp_path / "batches", n_batches=1, per_batch=100)
    text = batches[0].read_text()
    assert "[0] " in text and "=== ARTICLE 1 (polnear) ===" in text
    keys = batches[0].with_suffix(".keys.jsonl")
    n = len(keys.read_text().splitlines())
    labels = ["other", "official_statement", "denial", "other", "other"] * 2
    first = tmp_path / "first.jsonl"
    first.write_text("".join(json.dumps({"k": k, "label": labels[k]}) + "\n" for k in range(n)))
    rows = merge_labels(keys, first, "a")
    assert all({"dataset", "doc", "idx", "start", "end", "label", "split"} <= set(r) for r in rows)
    assert all("text" not in r for r in rows)  # stand-off: never the text
    gold = tmp_path / "gold"
    (gold / "parts").mkdir(parents=True)
    (gold / "second_pass").mkdir()
    (gold / "parts" / "x.a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    second = [dict(r, label="claim") if i == 1 else r for i, r in enumerate(rows)]
    (gold / "second_pass" / "x.b.jsonl").write_text("".join(json.dumps(r) + "\n" for r in second))
    result = agreement(gold)
    assert result["n"] == n and len(result["disagreements"]) == 1
    assert result["cohen_kappa"] < 1.0
    d = result["disagreements"][0]
    (gold / "adjudicated.jsonl").write_text(json.dumps({**d, "label": "claim"}) + "\n")
    counts = build_gold(gold)
    assert sum(sum(c.values()) for c in counts.values()) == n
    split = split_of("polnear", rows[1]["doc"])
    built = [json.loads(line) for line in (gold / f"{split}.jsonl").read_text().splitlines()]
    assert any(r["idx"] == rows[1]["idx"] and r["label"] == "claim" for r in built)
    incomplete = tmp_path / "short.jsonl"
    incomplete.write_text(json.dumps({"k": 0, "label": "other"}) + "\n")
    with pytest.raises(ValueError, match="no label for keys"):
        merge_labels(keys, incomplete, "a")


@pytest.mark.skipif(not (SHARED / "datasets").is_dir(), reason="needs ../shared/datasets")
def test_weak_adapters_read_the_shared_data():
    from pathlib import Path

    root = Path(SHARED / "datasets")
    emergent = read_weak("emergent", root)
    assert {e.label for e in emergent} <= {"claim", "denial", "official_statement"}
    assert any(e.label == "denial" for e in emergent)
    assert all(e.doc.startswith("emergent:") for e in emergent)


def test_weak_labels_never_speak_for_held_out_or_gold_documents(tmp_path):
    from training.config import DataConfig
    from training.data import load_splits

    text = "Title\n\nPolice said two were held. The mayor denied it. A witness said it rained.\n"
    # One speech attribution per document: cue "said" at 14-18, source "Police" at 7-13.
    ann = "T1\tSource 7 13\tPolice\nT2\tCue 14 18\tsaid\nE1\tAttribution:T2 Cue:T2 Source:T1\n"
    root = polnear_root(tmp_path, {"a": text, "b": text, "c": text}, {"a": ann, "b": ann, "c": ann})
    sentences = document_sentences(root, "polnear", "train/a")
    labels = ["other", "official_statement", "denial", "claim"]

    def gold(name: str, doc: str) -> str:
        path = tmp_path / f"{name}.jsonl"
        path.write_text(
            "".join(
                json.dumps(
                    {"dataset": "polnear", "doc": doc, "idx": i, "start": s.start, "end": s.end, "label": lab}
                )
                + "\n"
                for i, (s, lab) in enumerate(zip(sentences, labels, strict=True))
            )
        )
        return str(path)

    config = DataConfig(
        root=str(root),
        train=[{"path": "polnear", "kind": "weak"}, {"path": gold("train", "train/a"), "kind": "standoff"}],
        dev=[{"path": gold("dev", "train/b"), "kind": "standoff"}],
    )
    splits = load_splits(config)
    weak_docs = [e.doc for e in splits.train[: len(splits.train) - len(sentences)]]
    assert set(weak_docs) == {"polnear:train/c"}  # a has gold, b is dev
    assert splits.train[1].label == "official_statement"  # the rule: "Police" + "said"
