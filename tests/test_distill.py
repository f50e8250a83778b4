"""Distillation: the teacher's soft-label file, the student's loss, and a tiny distilled training end to end."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from inference.labels import LABELS
from inference.model import read_info
from inference.predict import Classifier
from inference.standoff import document_sentences
from tests.conftest import ROOT, pool_root, train_cli
from training.config import DistillConfig, load_config
from training.data import encode, load_splits
from training.distill import NO_LABEL, NO_SOFT, SOFT, StudentLoss, kl_term
from training.distributed import RECORD_ENV
from training.modeling import tiny_tokenizer
from training.pool import KEYS, build_pool, with_text, write_rows
from training.soft_labels import main as soft_labels_main
from training.soft_labels import meta_path

TINY = ROOT / "configs" / "tiny.yaml"
# configs/tiny.yaml trained with train.threads=1 by the code before distillation existed (commit
# 59bdfb8, torch 2.13.0 CPU): digests (training.distributed.digest) of the weights after the first
# optimizer step and after each epoch. One thread, because a different thread count sums in another
# order and changes the last bits. Re-record only for a deliberate change of the plain training.
PLAIN_DIGESTS_CPU = "Intel(R) Xeon(R) Processor+vnni"
PLAIN_DIGESTS = {
    "first_step": "e1f2332f64390a4e79688757a5dab77ac9f04ca832ddad19ffb3d604ac620b15",
    "epoch_1": "d7e9855a75dfef0f088ef59711c27578eb639d9943a34e9665f1a946b5c0333c",
    "epoch_2": "f967e6dd63da141fc77fcfcfe5245e7ba47e553528d798dc6d0d727479e47b1a",
}


@pytest.fixture
def pool(tmp_path: Path) -> dict[str, Path]:
    """A made-up data root and its whole pool (no gold articles: every document is fair game)."""
    root = pool_root(tmp_path)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    rows, _ = build_pool(root, empty, [empty])
    write_rows(rows, tmp_path / "pool.jsonl")
    return {"root": root, "pool": tmp_path / "pool.jsonl"}


def label(pool: dict[str, Path], teacher: Path, out: Path, *extra: str) -> int:
    argv = ["--teacher", str(teacher), "--pool", str(pool["pool"]), "--out", str(out)]
    try:
        return soft_labels_main([*argv, "--data-root", str(pool["root"]), *extra])
    except SystemExit as exit_info:  # argparse's parser.exit on a refusal
        return int(exit_info.code or 0)


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_soft_labels_are_the_teachers_calibrated_scores_with_context(pool, sharp_context_model_dir, tmp_path):
    out = tmp_path / "teacher_probs.jsonl"
    assert label(pool, sharp_context_model_dir, out, "--chunk", "7") == 0
    rows, pool_rows = lines(out), lines(pool["pool"])
    assert [{k: r[k] for k in KEYS} for r in rows] == pool_rows and all(
        list(r) == [*KEYS, "probs"] for r in rows
    )
    meta = json.loads(meta_path(out).read_text())
    info = read_info(sharp_context_model_dir)
    assert meta["teacher_config_digest"] == info.config_digest and meta["labels"] == list(LABELS)
    assert meta["rows"] == len(rows) and meta["teacher"] == str(sharp_context_model_dir)
    sentences = with_text(pool_rows, pool["root"])
    clf = Classifier.load(sharp_context_model_dir)
    with_context = clf.predict([s.text for s in sentences], [s.context for s in sentences])
    without = clf.predict([s.text for s in sentences])
    for row, expected in zip(rows, with_context, strict=True):
        assert row["probs"] == pytest.approx(expected.scores, abs=2e-6)
        assert math.isclose(sum(row["probs"].values()), 1.0, abs_tol=1e-5)
    # The sharpened model reads the context: the file follows the scores with it, not without.
    assert any(r["probs"] != pytest.approx(w.scores, abs=1e-3) for r, w in zip(rows, without, strict=True))
    assert label(pool, sharp_context_model_dir, out) == 2  # no overwriting a labelling by accident


def test_resume_keeps_every_complete_row_and_adds_the_rest_once(
    pool, tiny_context_model_dir, tiny_model_dir, tmp_path, capsys
):
    full = tmp_path / "full.jsonl"
    assert label(pool, tiny_context_model_dir, full, "--chunk", "5") == 0
    killed = tmp_path / "killed.jsonl"
    meta_path(killed).write_text(meta_path(full).read_text())
    data = full.read_bytes()
    cut = [i for i, byte in enumerate(data) if byte == ord("\n")][9] + 1  # ten whole rows...
    killed.write_bytes(data[: cut + 25])  # ...and a torn eleventh, as a kill mid-write leaves it
    assert label(pool, tiny_context_model_dir, killed, "--chunk", "5", "--resume") == 0
    assert "resuming after 10 of" in capsys.readouterr().err
    resumed, expected = lines(killed), lines(full)
    assert [{k: r[k] for k in KEYS} for r in resumed] == [{k: r[k] for k in KEYS} for r in expected]
    assert killed.read_bytes()[:cut] == data[:cut]  # nothing already written was rewritten
    for got, want in zip(resumed, expected, strict=True):
        assert got["probs"] == pytest.approx(want["probs"], abs=2e-6)
    # Another teacher's rows are not spliced onto these.
    assert label(pool, tiny_model_dir, killed, "--resume") == 2
    assert "labelled differently" in capsys.readouterr().err


def test_kl_is_zero_for_the_teachers_own_distribution_and_positive_otherwise():
    teacher = torch.tensor([[0.7, 0.1, 0.15, 0.05], [0.25, 0.25, 0.25, 0.25]])
    same = (teacher.log() + 3.0).requires_grad_()  # logits are the log-probabilities up to a constant
    assert kl_term(same, teacher, 2.0).item() == pytest.approx(0.0, abs=1e-6)
    student = torch.tensor([[0.0, 2.0, 0.0, 0.0], [1.0, 0.0, 0.0, -1.0]], requires_grad=True)
    loss = kl_term(student, teacher, 2.0)
    assert loss.item() > 0.01
    loss.backward()
    assert student.grad is not None and student.grad.abs().sum() > 0 and torch.isfinite(student.grad).all()
    # By hand: T^2 * mean over rows of sum p_T (log p_T - log q_T), with p_T = softmax(log p / T).
    p_t = F.softmax(teacher.log() / 2.0, dim=-1)
    q_t = F.softmax(student.detach() / 2.0, dim=-1)
    by_hand = 4.0 * (p_t * (p_t.log() - q_t.log())).sum(-1).mean()
    assert loss.item() == pytest.approx(by_hand.item(), rel=1e-5)
    # A probability the file rounded to 0 still gives a finite target.
    assert torch.isfinite(kl_term(student, torch.tensor([[1.0, 0.0, 0.0, 0.0]] * 2), 2.0))


def test_the_student_loss_mixes_gold_and_teacher_rows_and_is_plain_ce_without_teacher():
    weights = torch.tensor([0.5, 2.0, 1.0, 1.5])
    logits = torch.randn(3, 4, generator=torch.Generator().manual_seed(0), requires_grad=True)
    labels = torch.tensor([1, NO_LABEL, 2])
    teacher = torch.tensor([[NO_SOFT] * 4, [0.1, 0.6, 0.2, 0.1], [0.2, 0.2, 0.5, 0.1]])
    plain = StudentLoss(weights)
    gold_only = torch.tensor([1, 0, 2])
    assert torch.equal(plain(logits, gold_only), torch.nn.CrossEntropyLoss(weight=weights)(logits, gold_only))
    loss_fn = StudentLoss(weights, DistillConfig(soft_labels="p.jsonl", weight=0.3, temperature=2.0))
    loss = loss_fn(logits, labels, teacher)
    ce = F.cross_entropy(logits[[0, 2]], labels[[0, 2]], weight=weights)  # rows with a gold label
    kl = kl_term(logits[[1, 2]], teacher[[1, 2]], 2.0)  # rows with a teacher target (row 2: both)
    assert loss.item() == pytest.approx((0.7 * ce + 0.3 * kl).item(), rel=1e-6)
    loss.backward()
    assert logits.grad is not None and (logits.grad.abs().sum(-1) > 0).all()  # every row teaches
    only_pool = loss_fn(logits[[1]], labels[[1]], teacher[[1]])  # no gold row: no NaN from an empty CE
    assert only_pool.item() == pytest.approx((0.3 * kl_term(logits[[1]], teacher[[1]], 2.0)).item())


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("distill.weight=1.5", "distill.weight: Input should be less than or equal to 1"),
        ("distill.weight=-0.1", "distill.weight: Input should be greater than or equal to 0"),
        ("distill.temperature=0", "distill.temperature: Input should be greater than 0"),
        ("train.aux_weight=0.3", "cannot be combined with train.aux_weight"),
    ],
)
def test_a_bad_distill_section_is_refused_by_name(override, message):
    with pytest.raises(ValueError, match=message):
        load_config(TINY, ["distill.soft_labels=x.jsonl", override])


def test_unusable_soft_labels_fail_before_training(pool, tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)  # the tiny config's corpus paths are relative to the repository
    missing = load_config(
        TINY, ["distill.soft_labels=nowhere/teacher_probs.jsonl", f"data.root={pool['root']}"]
    )
    with pytest.raises(ValueError, match=r"distill.soft_labels: nowhere/teacher_probs.jsonl does not exist"):
        load_splits(missing.data, missing.distill)
    out = tmp_path / "probs.jsonl"
    assert label(pool, tiny_model_dir, out) == 0
    config = load_config(TINY, [f"distill.soft_labels={out}", f"data.root={pool['root']}"])
    assert len(load_splits(config.data, config.distill).soft) == len(lines(out))
    out.write_text("".join(line + "\n" for line in out.read_text().splitlines()[:-3]))
    with pytest.raises(ValueError, match="is partial"):
        load_splits(config.data, config.distill)


def test_soft_labels_for_a_dev_document_are_refused(pool, tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    out = tmp_path / "probs.jsonl"
    assert label(pool, tiny_model_dir, out) == 0
    first = lines(out)[0]
    dev = tmp_path / "dev.jsonl"
    dev.write_text(json.dumps({k: first[k] for k in KEYS} | {"label": "claim"}) + "\n")
    config = load_config(
        TINY,
        [
            f"distill.soft_labels={out}",
            f"data.root={pool['root']}",
            f"data.dev=[{{path: {dev}, kind: standoff}}]",
        ],
    )
    with pytest.raises(ValueError, match="soft labels for dev/test documents"):
        load_splits(config.data, config.distill)


def test_a_gold_train_sentence_in_the_pool_carries_both_targets(pool, tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    out = tmp_path / "probs.jsonl"
    assert label(pool, tiny_model_dir, out) == 0
    teacher = {(f"{r['dataset']}:{r['doc']}", r["idx"]): r["probs"] for r in lines(out)}
    sentences = document_sentences(pool["root"], "polnear", "train/story0")
    gold = [
        {
            "dataset": "polnear",
            "doc": "train/story0",
            "idx": i,
            "start": s.start,
            "end": s.end,
            "label": "denial",
        }
        for i, s in enumerate(sentences)
    ]
    gold_file = tmp_path / "gold.jsonl"
    gold_file.write_text("".join(json.dumps(r) + "\n" for r in gold))
    train = (
        f"data.train=[{{path: data/corpus/train.jsonl, limit: 400}}, {{path: {gold_file}, kind: standoff}}]"
    )
    config = load_config(TINY, [f"distill.soft_labels={out}", f"data.root={pool['root']}", train])
    splits = load_splits(config.data, config.distill)
    both = [e for e in splits.train if (e.doc, e.idx) in teacher]
    assert [e.idx for e in both] == [0, 1, 4]  # the pool skipped the one-word and the 1,600-character ones
    assert splits.soft_sizes() == {"soft": len(teacher), "soft_only": len(teacher) - 3}
    tokenizer = tiny_tokenizer([e.text for e in splits.train])
    ds = encode(splits.train, tokenizer, 32, context=False, soft=splits.soft)
    assert len(ds) == len(splits.train) + len(teacher) - 3
    rows = {(e.doc, e.idx): ds[i] for i, e in enumerate(splits.train)}
    for e in both:
        row = rows[(e.doc, e.idx)]
        assert row["labels"] == LABELS.index("denial")
        assert row[SOFT] == pytest.approx([teacher[(e.doc, e.idx)][k] for k in LABELS])
    assert all(ds[i][SOFT] == [NO_SOFT] * 4 for i, e in enumerate(splits.train) if e not in both)
    assert all(ds[i]["labels"] == NO_LABEL for i in range(len(splits.train), len(ds)))
    # A gold span that is no longer the pool's sentence (an older splitter) is refused.
    gold[1]["end"] -= 3
    gold_file.write_text("".join(json.dumps(r) + "\n" for r in gold))
    with pytest.raises(ValueError, match="soft-labelled sentences differ from the gold ones"):
        load_splits(config.data, config.distill)


def _cpu() -> str:
    """The CPU's model name, with "+vnni" where it has AVX-512 VNNI (it changes torch's kernels)."""
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    names = [line.partition(":")[2].strip() for line in info.splitlines() if line.startswith("model name")]
    return (names[0] if names else "unknown") + ("+vnni" if "avx512_vnni" in info else "")


@pytest.mark.skipif(
    _cpu() != PLAIN_DIGESTS_CPU,
    reason=f"the digests were recorded on {PLAIN_DIGESTS_CPU}; another CPU's SIMD sums round differently",
)
def test_without_a_distill_section_training_is_bit_identical_to_before(tmp_path, monkeypatch):
    assert "distill" not in load_config(TINY).model_dump() and "distill" not in load_config(TINY).to_yaml()
    monkeypatch.setenv(RECORD_ENV, str(tmp_path / "record"))
    proc = train_cli(tmp_path, "tiny", "tracking.enabled=false", "train.threads=1")
    assert proc.returncode == 0, proc.stderr[-2000:]
    record = json.loads((tmp_path / "record" / "rank-0.json").read_text())
    assert record["digests"] == PLAIN_DIGESTS


def test_a_tiny_distilled_training_runs_logs_and_saves_a_loadable_model(
    pool, tiny_model_dir, tmp_path, monkeypatch
):
    out = tmp_path / "probs.jsonl"
    assert label(pool, tiny_model_dir, out) == 0
    work = tmp_path / "work"
    work.mkdir()
    uri = f"sqlite:///{work / 'mlflow.db'}"
    monkeypatch.setenv(RECORD_ENV, str(work / "record"))
    overrides = [f"distill.soft_labels={out}", f"data.root={pool['root']}", f"tracking.uri={uri}"]
    proc = train_cli(
        work, "tiny", *overrides, "distill.weight=0.7", "train.threads=1", "tracking.log_model=false"
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    model_dir = work / "models" / "tiny"
    predictions = Classifier.load(model_dir).predict(["Police said three men were arrested."])
    assert predictions[0].label in LABELS
    record = json.loads((work / "record" / "rank-0.json").read_text())
    assert record["digests"]["epoch_2"] != PLAIN_DIGESTS["epoch_2"]  # the teacher's rows changed the weights

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    (run,) = client.search_runs([client.get_experiment_by_name("claimlens-tiny").experiment_id])
    params = run.data.params
    assert (params["distill.weight"], params["distill.temperature"]) == ("0.7", "2.0")
    assert params["distill.soft_labels"] == str(out)
    assert params["data_size_soft"] == params["data_size_soft_only"] == str(len(lines(out)))
    assert params["soft_labels.teacher_name"] == "unit" and run.info.status == "FINISHED"
    assert "dev_macro_f1" in run.data.metrics
