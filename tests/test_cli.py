"""The `claimlens` commands, run as a user would (real subprocesses, real model directory)."""

import json
import subprocess
import sys

from tests.conftest import ROOT


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
