"""Error analysis: per-class accuracy tables and test-view score averaging."""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import torch


def per_class_accuracy(
    predictions,
    labels,
    class_names: Sequence[str],
    groups: Sequence[str] | Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """One row per class: ``n``, ``correct``, ``accuracy`` and the class it is most often mistaken
    for (``confused_with``); ``groups`` (one per class, or a name -> group mapping) adds a ``group``
    column, e.g. the synthetic families. ``accuracy_by_group`` rolls the table up."""
    pred = np.asarray(torch.as_tensor(predictions).cpu()).ravel()
    true = np.asarray(torch.as_tensor(labels).cpu()).ravel()
    if pred.shape != true.shape:
        raise ValueError(f"per_class_accuracy: {pred.size} predictions for {true.size} labels")
    k = len(class_names)
    for name, values in (("prediction", pred), ("label", true)):
        if values.size and (values.min() < 0 or values.max() >= k):
            raise ValueError(f"per_class_accuracy: a {name} is outside 0..{k - 1} ({k} classes)")
    confusion = pd.crosstab(
        pd.Categorical(true, categories=range(k)), pd.Categorical(pred, categories=range(k)), dropna=False
    ).to_numpy()
    n = confusion.sum(1)
    correct = np.diag(confusion)
    wrong = confusion - np.diag(correct)
    table = pd.DataFrame(
        {
            "class": list(class_names),
            "n": n,
            "correct": correct,
            "accuracy": np.divide(correct, n, out=np.full(k, np.nan), where=n > 0),
            "confused_with": [class_names[int(row.argmax())] if row.any() else "" for row in wrong],
        }
    )
    if groups is not None:
        group = [groups[c] for c in class_names] if isinstance(groups, Mapping) else list(groups)
        table.insert(1, "group", group)
    return table


def accuracy_by_group(table: pd.DataFrame) -> pd.DataFrame:
    """A ``per_class_accuracy`` table summed per group (accuracy over all clips of the group)."""
    out = table.groupby("group", sort=False)[["n", "correct"]].sum()
    out["accuracy"] = out["correct"] / out["n"]
    return out.reset_index()


def average_views(scores, video_index, reduce: str = "mean") -> tuple[torch.Tensor, torch.Tensor]:
    """Average (``reduce="max"``: the maximum of) per-view class scores over the views of each video
    (the paper averages softmax scores of its 30 test views). Returns (video ids, sorted; their scores)."""
    scores = torch.as_tensor(scores, dtype=torch.float64)
    video_index = torch.as_tensor(video_index, dtype=torch.long)
    ids, inverse = torch.unique(video_index, return_inverse=True)
    if reduce == "max":
        out = torch.full((len(ids), scores.shape[1]), -torch.inf, dtype=scores.dtype)
        return ids, out.scatter_reduce_(0, inverse[:, None].expand_as(scores), scores, "amax")
    sums = torch.zeros(len(ids), scores.shape[1], dtype=scores.dtype).index_add_(0, inverse, scores)
    counts = torch.bincount(inverse, minlength=len(ids)).unsqueeze(1)
    return ids, sums / counts


# Test-view ensembles (data.ensemble): what is taken of each view's logits, and how views are combined.
ENSEMBLE_RULES = {
    "mean_softmax": ("softmax", "mean"),  # the paper
    "mean_logits": ("logits", "mean"),
    "max_softmax": ("softmax", "max"),
}
ENSEMBLES = tuple(ENSEMBLE_RULES)


def view_scores(logits: torch.Tensor, rule: str = "mean_softmax") -> torch.Tensor:
    """The per-view scores ``rule`` combines (``ensemble_views``)."""
    return logits.softmax(dim=1) if ENSEMBLE_RULES[rule][0] == "softmax" else logits


def ensemble_views(scores, video_index, rule: str = "mean_softmax") -> tuple[torch.Tensor, torch.Tensor]:
    """One score per video from its views' ``view_scores``: (video ids, sorted; their scores)."""
    return average_views(scores, video_index, reduce=ENSEMBLE_RULES[rule][1])
