"""The metrics the multimodal sentiment literature reports (MulT, MMSA, DREAM): CMU-MOSI / MOSEI and IEMOCAP.

For sentiment scores in [-3, 3] (MOSI / MOSEI regression), from predicted and true scores:

- ``mae``: mean absolute error; ``corr``: Pearson's r.
- ``acc2_has0`` / ``f1_has0``: binary accuracy and weighted F1 of "non-negative vs negative" over all samples
  (score >= 0 is class 1), as MMSA's ``Has0`` metrics;
- ``acc2_non0`` / ``f1_non0``: the same for "positive vs negative" over the samples whose true score is not 0
  (score > 0 is class 1), as MulT's and MMSA's ``Non0`` metrics;
- ``acc7``: 7-class accuracy of the rounded clipped scores, ``round(clip(s, -3, 3))`` with round-half-to-even
  (NumPy's and PyTorch's rounding, as the reference code uses).

For class predictions (IEMOCAP's four emotions, or the binary / 7-class tasks of
:mod:`simmlm.datasets.seqfeatures.loader`): :func:`weighted_f1`, the support-weighted mean of the per-class F1
(scikit-learn's ``average="weighted"``), next to :func:`simmlm.metrics.accuracy`.
"""

from __future__ import annotations

import torch
from torch import Tensor


def acc7_class(score: Tensor) -> Tensor:
    """A sentiment score's Acc-7 class, ``round(clip(s, -3, 3)) + 3`` in 0..6 (round half to even)."""
    return score.clamp(-3, 3).round().long() + 3


def predicted_class(logits: Tensor) -> Tensor:
    """The class a prediction names: the arg-max of class logits ``[..., K]``, or for one output (a regression's
    score) its Acc-7 class, so that DREAM's game on a sentiment score asks whether a modality shifts the seven-point
    reading (PSS) and whether it makes it right (PAS)."""
    return logits.argmax(-1) if logits.shape[-1] > 1 else acc7_class(logits[..., 0])


def weighted_f1(predicted: Tensor, target: Tensor) -> Tensor:
    """Support-weighted mean over the true classes of the per-class F1 (a class never predicted nor present: 0)."""
    if predicted.shape != target.shape or predicted.ndim != 1 or len(target) == 0:
        raise ValueError(
            f"predicted and target must be equal-length 1-D, got {tuple(predicted.shape)}, {tuple(target.shape)}"
        )
    classes = torch.unique(torch.cat([predicted, target]))
    hits = (predicted.unsqueeze(1) == classes) & (target.unsqueeze(1) == classes)  # [N, K]
    true_positive = hits.sum(0).double()
    predicted_count = (predicted.unsqueeze(1) == classes).sum(0).double()
    support = (target.unsqueeze(1) == classes).sum(0).double()
    denominator = predicted_count + support
    f1 = torch.where(denominator > 0, 2 * true_positive / denominator.clamp(min=1), torch.zeros_like(denominator))
    return (f1 * support).sum() / support.sum()


def sentiment_scores(predicted: Tensor, target: Tensor) -> dict[str, float]:
    """MAE, Pearson r, Acc-2 and weighted F1 under both conventions, and Acc-7 (see the module docstring)."""
    if predicted.shape != target.shape or predicted.ndim != 1 or len(target) < 2:
        raise ValueError(f"need two equal-length 1-D score vectors of >= 2 samples, got {tuple(predicted.shape)}")
    p, t = predicted.double(), target.double()
    centred_p, centred_t = p - p.mean(), t - t.mean()
    corr = (centred_p * centred_t).sum() / (centred_p.norm() * centred_t.norm())
    non0 = t != 0
    scores = {
        "mae": (p - t).abs().mean().item(),
        "corr": corr.item(),
        "acc2_has0": ((p >= 0) == (t >= 0)).double().mean().item(),
        "f1_has0": weighted_f1((p >= 0).long(), (t >= 0).long()).item(),
        "acc7": (acc7_class(p) == acc7_class(t)).double().mean().item(),
    }
    if non0.any():
        scores["acc2_non0"] = ((p[non0] > 0) == (t[non0] > 0)).double().mean().item()
        scores["f1_non0"] = weighted_f1((p[non0] > 0).long(), (t[non0] > 0).long()).item()
    return scores
