"""The teacher's weights are assembled from their part packages, or refused with a clear message."""

import pytest

from training import weights


def test_a_missing_part_package_names_the_package_and_the_extra(monkeypatch, tmp_path):
    monkeypatch.setenv("CLAIMLENS_CACHE", str(tmp_path))
    monkeypatch.setattr(weights, "MPNET_PARTS", ("claimlens-no-such-part-package",))
    with pytest.raises(ValueError, match=r"claimlens-no-such-part-package is not installed.*\[teacher\]"):
        weights.mpnet_folder()
    assert not (tmp_path / weights.MPNET_FOLDER).exists()  # nothing half-unpacked is left behind


def test_a_damaged_zip_is_refused_by_its_digest(monkeypatch, tmp_path):
    piece = tmp_path / "piece.zip.001"
    piece.write_bytes(b"not the mpnet zip")
    monkeypatch.setenv("CLAIMLENS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(weights, "MPNET_PARTS", ("fake",))
    monkeypatch.setattr(weights, "_part_file", lambda package: piece)
    with pytest.raises(ValueError, match="sha256"):
        weights.mpnet_folder()
    assert not (tmp_path / "cache" / weights.MPNET_FOLDER).exists()


def test_modeling_resolves_mpnet_through_the_assembler(monkeypatch, tmp_path):
    from training.modeling import resolve_base

    monkeypatch.setattr("training.modeling.mpnet_folder", lambda: tmp_path)
    assert resolve_base("mpnet") == tmp_path
