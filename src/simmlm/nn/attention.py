"""Cross-modal attention blocks: DREAM's modality enhancement (its eqs. 5-9)."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class CrossModalEnhancer(nn.Module):
    """DREAM's eqs. 5-9 for one target modality: global + pairwise cross-modal attention, residual and LayerNorm."""

    def __init__(self, num_modalities: int, dim: int, heads: int) -> None:
        super().__init__()
        self.global_attention = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.pair_attention = nn.ModuleList(
            nn.MultiheadAttention(dim, heads, batch_first=True) for _ in range(num_modalities - 1)
        )
        self.norm = nn.LayerNorm(dim)

    def forward(self, target: Tensor, others: list[Tensor], others_present: list[Tensor]) -> Tensor:
        """``LN(x + I_g + sum_k I_k)``; absent modalities are left out of the keys and their ``I_k`` is zero."""
        own = torch.zeros(target.shape[:2], dtype=torch.bool, device=target.device)  # never padded
        pads = [
            ~present[:, None].expand(-1, other.shape[1]) for other, present in zip(others, others_present, strict=True)
        ]
        keys = torch.cat([target, *others], dim=1)
        padding = torch.cat([own, *pads], dim=1)
        total = target + self.global_attention(target, keys, keys, key_padding_mask=padding, need_weights=False)[0]
        for attention, other, pad, present in zip(self.pair_attention, others, pads, others_present, strict=True):
            pair = torch.cat([target, other], dim=1)
            interaction = attention(target, pair, pair, key_padding_mask=torch.cat([own, pad], 1), need_weights=False)[
                0
            ]
            total = total + torch.where(present[:, None, None], interaction, interaction.new_zeros(()))
        return self.norm(total)
