"""Losses; each docstring names the paper's equation."""

from simmlm.losses.mofe import MoFeLoss, MoFeTerms, mofe_loss, mofe_terms, per_sample_cross_entropy

__all__ = ["MoFeLoss", "MoFeTerms", "mofe_loss", "mofe_terms", "per_sample_cross_entropy"]
