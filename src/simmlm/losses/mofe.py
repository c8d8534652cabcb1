"""More-vs-Fewer (MoFe) ranking loss, SimMLM eqs. 3-4.

``l_MoFe = max(0, l(o+, y) - l(o-, y))`` (eq. 3) per sample, for nested subsets ``S- ⊂ S+`` of one
sample's modalities, and ``L = l(o+, y) + l(o-, y) + lambda * l_MoFe`` (eq. 4).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from torch import Tensor, nn

PerSampleLoss = Callable[[Tensor, Tensor], Tensor]


def per_sample_cross_entropy(logits: Tensor, target: Tensor) -> Tensor:
    """Cross-entropy without reduction: ``[B]``."""
    return F.cross_entropy(logits, target, reduction="none")


@dataclass
class MoFeTerms:
    """The parts of eq. 4 (batch means) and how often the hinge was active."""

    total: Tensor
    task_plus: Tensor
    task_minus: Tensor
    hinge: Tensor
    active_fraction: Tensor


def mean_terms(terms: list[MoFeTerms]) -> MoFeTerms:
    """The mean of several pairs' terms (one pair: that pair's terms, unchanged)."""
    if len(terms) == 1:
        return terms[0]
    return MoFeTerms(**{f.name: torch.stack([getattr(t, f.name) for t in terms]).mean() for f in fields(MoFeTerms)})


def _mofe_kernel(loss_plus: Tensor, loss_minus: Tensor, lam: float, same: Tensor | None = None) -> MoFeTerms:
    if loss_plus.shape != loss_minus.shape or loss_plus.ndim != 1:
        raise ValueError(
            f"per-sample losses must be two [B] tensors, got {tuple(loss_plus.shape)} and {tuple(loss_minus.shape)}"
        )
    if lam < 0:
        raise ValueError(f"MoFe lambda must be >= 0, got {lam}")
    gap = loss_plus - loss_minus
    if same is not None:  # S- = S+ (one available modality): one task loss, not two, and no ranking to enforce
        # (with one shared view the gap is 0 anyway; with two independently augmented views it is not)
        gap = gap.masked_fill(same, 0.0)
        loss_minus = loss_minus.masked_fill(same, 0.0)
    hinge = gap.clamp(min=0)
    task_plus, task_minus = loss_plus.mean(), loss_minus.mean()
    return MoFeTerms(
        total=task_plus + task_minus + lam * hinge.mean(),
        task_plus=task_plus,
        task_minus=task_minus,
        hinge=hinge.mean(),
        active_fraction=(gap > 0).float().mean(),
    )


def mofe_terms(
    logits_plus: Tensor,
    logits_minus: Tensor,
    target: Tensor,
    lam: float = 0.1,
    task_loss: PerSampleLoss = per_sample_cross_entropy,
    same: Tensor | None = None,
) -> MoFeTerms:
    """All parts of eq. 4; ``task_loss`` must return one loss per sample (``[B]``). ``same`` (``[B]`` bool) marks the
    samples whose pair is degenerate (``S- = S+``, a sample with one modality): their task loss counts once."""
    return _mofe_kernel(task_loss(logits_plus, target), task_loss(logits_minus, target), lam, same)


def mofe_loss(
    logits_plus: Tensor,
    logits_minus: Tensor,
    target: Tensor,
    lam: float = 0.1,
    task_loss: PerSampleLoss = per_sample_cross_entropy,
) -> Tensor:
    """SimMLM eq. 4: ``mean l(o+) + mean l(o-) + lam * mean max(0, l(o+) - l(o-))`` (per-sample hinge).

    Args:
        logits_plus: outputs ``o+`` with more modalities (``S+``).
        logits_minus: outputs ``o-`` of the same samples with fewer modalities (``S- ⊂ S+``).
        target: targets for ``task_loss``.
        lam: MoFe coefficient lambda (0.1 in the paper).
        task_loss: per-sample task loss (default cross-entropy).
    """
    return mofe_terms(logits_plus, logits_minus, target, lam, task_loss).total


class MoFeLoss(nn.Module):
    """Module form of :func:`mofe_loss` (same kernel); ``forward`` returns the eq. 4 total."""

    def __init__(self, lam: float = 0.1, task_loss: PerSampleLoss = per_sample_cross_entropy) -> None:
        super().__init__()
        if lam < 0:
            raise ValueError(f"MoFe lambda must be >= 0, got {lam}")
        self.lam = lam
        self.task_loss = task_loss

    def terms(self, logits_plus: Tensor, logits_minus: Tensor, target: Tensor) -> MoFeTerms:
        return mofe_terms(logits_plus, logits_minus, target, self.lam, self.task_loss)

    def forward(self, logits_plus: Tensor, logits_minus: Tensor, target: Tensor) -> Tensor:
        return self.terms(logits_plus, logits_minus, target).total
