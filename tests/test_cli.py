"""The `claimlens` commands, run as a user would (real subprocesses, real model directory)."""

import json
import subprocess
import sys

import pytest

from inference.predict import Classifier
from tests.conftest import ROOT, SAMPLE, SPEAKER_ARTICLE


def run(*args, stdin=None):
    return subprocess.run(
        [sys.executable, "-m", "inference", *map(str, args)],
        capture_output=True,
        text=True,
        input=stdin,
        timeout=120,
    )


def test_predict_texts_to_stdout(tiny_model_dir):
    proc = run("predict", "--model", tiny_model_dir, "Police said so.", "Rebels denied it.")
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["id"] for r in rows] == [0, 1]
    assert all(
        set(r) == {"id", "label", "score", "scores", "truncated"} and len(r["scores"]) == 4 for r in rows
    )


def test_predict_jsonl_in_and_out(tiny_model_dir, tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text(
        "".join(
            json.dumps(r) + "\n"
            for r in [
                {"id": "a", "text": "Police said two were held.", "doc": "d1"},
                {"id": "b", "text": "The group denied it.", "doc": "d1"},
                {"id": "c", "text": "It rained."},
            ]
        )
    )
    out = tmp_path / "out.jsonl"
    proc = run("predict", "--model", tiny_model_dir, "--input", src, "--output", out)
    assert proc.returncode == 0, proc.stderr
    assert [json.loads(line)["id"] for line in out.read_text().splitlines()] == ["a", "b", "c"]


def test_predict_bad_input_is_a_clear_error_and_writes_nothing(tiny_model_dir, tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text('{"id": 1, "text": "fine"}\n{"id": 2}\n')
    out = tmp_path / "out.jsonl"
    out.write_text("previous results\n")
    proc = run("predict", "--model", tiny_model_dir, "--input", src, "--output", out)
    assert proc.returncode == 2
    assert "in.jsonl:2" in proc.stderr and "Traceback" not in proc.stderr
    assert out.read_text() == "previous results\n"
    assert run("predict", "--model", tiny_model_dir).returncode == 2


def test_analyze_formats(tiny_model_dir):
    text = 'Rebels Claim Town\n"We hold it," a commander said. Police denied it.'
    table = run("analyze", "--model", tiny_model_dir, "--color", "always", "-", stdin=text)
    assert table.returncode == 0 and "\033[" in table.stdout and len(table.stdout.splitlines()) == 3
    plain = run("analyze", "--model", tiny_model_dir, "-", stdin=text)
    assert "\033[" not in plain.stdout
    rows = [
        json.loads(line)
        for line in run(
            "analyze", "--model", tiny_model_dir, "--format", "jsonl", "-", stdin=text
        ).stdout.splitlines()
    ]
    assert [text[r["start"] : r["end"]] for r in rows] == [r["sentence"] for r in rows]
    csv_out = run(
        "analyze", "--model", tiny_model_dir, "--format", "csv", "-", stdin=text
    ).stdout.splitlines()
    assert csv_out[0] == "start,end,label,score,sentence" and len(csv_out) == 4
    assert run("analyze", "--model", tiny_model_dir, "/no/such/file.txt").returncode == 2


def test_evaluate_prints_the_table(tiny_model_dir, tmp_path):
    out = tmp_path / "metrics.json"
    proc = run(
        "evaluate", "--model", tiny_model_dir, "--data", ROOT / "data" / "corpus" / "dev.jsonl", "--json", out
    )
    assert proc.returncode == 0, proc.stderr
    assert "macro-F1" in proc.stdout and "confusion matrix" in proc.stdout
    metrics = json.loads(out.read_text())
    assert metrics["n"] == len((ROOT / "data" / "corpus" / "dev.jsonl").read_text().splitlines())


def _context_rows() -> list[dict]:
    t0, t1, t2, t3 = (t for t, _ in SAMPLE)
    return [
        {"id": "a", "text": t0, "doc": "d1", "idx": 0},
        {"id": "b", "text": t1, "doc": "d1", "idx": 1},
        {"id": "c", "text": t2, "doc": "d1", "idx": 2},
        {"id": "n", "text": t1},  # b's sentence without a document: no context
        {"id": "p", "text": t0, "doc": 7},
        {"id": "q", "text": t3, "doc": "7"},  # the same document as p: p is its context
    ]


def _predict_file(model_dir, tmp_path, rows, name):
    src = tmp_path / f"{name}.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    proc = run("predict", "--model", model_dir, "--input", src)
    assert proc.returncode == 0, proc.stderr
    return {r["id"]: r for r in map(json.loads, proc.stdout.splitlines())}


def test_predict_reads_each_doc_in_idx_order_with_its_previous_sentence(sharp_context_model_dir, tmp_path):
    rows = _context_rows()
    in_order = _predict_file(sharp_context_model_dir, tmp_path, rows, "in_order")
    # d1 given backwards and interleaved; doc 7 has no idx, so its file order is its reading order.
    shuffled_rows = [rows[i] for i in (2, 4, 0, 3, 1, 5)]
    shuffled = _predict_file(sharp_context_model_dir, tmp_path, shuffled_rows, "shuffled")
    assert list(shuffled) == [r["id"] for r in shuffled_rows]
    assert {k: shuffled[k] for k in in_order} == in_order

    clf = Classifier.load(sharp_context_model_dir)
    texts = [r["text"] for r in rows]
    contexts = [None, texts[0], texts[1], None, None, texts[4]]
    for row, expected in zip(rows, clf.predict(texts, contexts), strict=True):
        got = in_order[row["id"]]
        assert got["label"] == expected.label, row["id"]
        assert got["scores"] == pytest.approx(expected.scores, abs=1e-5), row["id"]
    # The context is read: the same sentence scores differently with and without it.
    assert in_order["b"]["scores"] != pytest.approx(in_order["n"]["scores"], abs=1e-3)
    alone = clf.predict([texts[5]])[0]
    assert in_order["q"]["scores"] != pytest.approx(alone.scores, abs=1e-3)  # 7 and "7": one doc


def test_predict_refuses_an_unhashable_doc_with_file_and_line(sharp_context_model_dir, tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text('{"text": "Police said so.", "doc": "d1"}\n{"text": "It rained.", "doc": ["d1"]}\n')
    proc = run("predict", "--model", sharp_context_model_dir, "--input", src)
    assert proc.returncode == 2
    assert "in.jsonl:2: doc must be a string or an integer, got list" in proc.stderr
    assert "Traceback" not in proc.stderr


COMMANDER = {"text": "Commander Zorblatov", "start": 0, "end": 19}
SAID = {"text": "said", "start": 20, "end": 24}


def test_analyze_with_speakers(official_model_dir, tiny_speaker_model_dir):
    def analyze(*args):
        command = ["analyze", "--model", official_model_dir, "--speakers", tiny_speaker_model_dir, *args]
        proc = run(*command, "-", stdin=SPEAKER_ARTICLE)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    rows = [json.loads(line) for line in analyze("--format", "jsonl").splitlines()]
    assert [(r["speaker"], r["cue"], r["speaker_type"], r["speaker_in_previous"]) for r in rows] == [
        (COMMANDER, SAID, "official", False),
        (COMMANDER, SAID, "official", True),  # named in the previous sentence
        (None, None, None, None),
    ]
    assert all(r["antecedent"] is None for r in rows)
    for r in rows[:2]:
        assert SPEAKER_ARTICLE[r["speaker"]["start"] : r["speaker"]["end"]] == r["speaker"]["text"]
    table = [line.split("who:")[-1].strip() for line in analyze("--color", "never").splitlines()]
    assert len(table) == 5  # three sentences, two of them with a "who:" line
    assert table[1] == 'Commander Zorblatov (official), cue "said"'
    assert table[3] == 'Commander Zorblatov (official; in the previous sentence), cue "said"'
    csv_out = analyze("--format", "csv").splitlines()
    header = "start,end,label,score,speaker,speaker_type,speaker_in_previous,antecedent,cue,sentence"
    assert csv_out[0] == header
    assert csv_out[1].split(",")[4:9] == ["Commander Zorblatov", "official", "false", "", "said"]
    assert csv_out[3].split(",")[4:9] == ["", "", "", "", ""]
    # Without --speakers nothing changes: no speaker fields at all.
    plain = run("analyze", "--model", official_model_dir, "--format", "jsonl", "-", stdin=SPEAKER_ARTICLE)
    assert all("speaker" not in json.loads(line) for line in plain.stdout.splitlines())


def test_analyze_refuses_a_label_model_as_speakers(tiny_model_dir):
    proc = run(
        "analyze", "--model", tiny_model_dir, "--speakers", tiny_model_dir, "-", stdin="Police said so."
    )
    assert proc.returncode == 2
    assert "claimlens analyze: error:" in proc.stderr and "is not a speaker model" in proc.stderr
    assert "Traceback" not in proc.stderr
