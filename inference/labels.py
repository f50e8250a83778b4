"""The one label set of the project, as defined in ``data/LABEL_GUIDE.md``."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

LABELS: tuple[str, ...] = ("claim", "denial", "official_statement", "other")
LABEL2ID: dict[str, int] = {label: i for i, label in enumerate(LABELS)}
ID2LABEL: dict[int, str] = dict(enumerate(LABELS))


def check_label(label: object, where: str = "") -> str:
    """Return ``label`` if it is one of :data:`LABELS`, else raise ``ValueError``."""
    if not isinstance(label, str) or label not in LABEL2ID:
        prefix = f"{where}: " if where else ""
        raise ValueError(f"{prefix}unknown label {label!r}; expected one of {', '.join(LABELS)}")
    return label


def check_id2label(id2label: Mapping[int | str, str], where: str) -> tuple[str, ...]:
    """The model's labels in its own output order; ``ValueError`` unless they are the code's labels.

    The order may differ from :data:`LABELS` (the model folder says which output is which);
    the set may not.
    """
    try:
        found = {int(k): v for k, v in id2label.items()}
    except (TypeError, ValueError):
        raise ValueError(f"{where}: id2label keys must be integers") from None
    labels = tuple(found[i] for i in sorted(found))
    if sorted(found) != list(range(len(found))) or sorted(labels) != sorted(LABELS):
        raise ValueError(
            f"{where}: the model's labels {dict(sorted(found.items()))} differ from the code's "
            f"{ID2LABEL}; retrain the model or use a matching version of claimlens"
        )
    return labels


def label_counts(labels: Iterable[str]) -> dict[str, int]:
    """Count each label, every label present (zero when absent)."""
    counts = dict.fromkeys(LABELS, 0)
    for label in labels:
        counts[check_label(label)] += 1
    return counts
