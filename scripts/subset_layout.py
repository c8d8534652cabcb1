"""What another memory layout would buy the 63 subsets of ``simmlm costs``' six-modality setting.

``simmlm costs`` finds every subset of six modalities at 2-8x one full pass, above the 1.5x the project aimed for.
The committed code (``GatingNetwork.subset_logits``, ``ExpertMixture.mix_subsets``) does the per-subset work as
products batched over the samples (``einsum``), with copies between layouts. This script times, next to it, the
same mathematics laid out for large matrix products, as a reference for whoever takes the target up:

- every subset's gate pre-activation in one product ``C @ D`` (``C``: the 63 subsets' 0/1 rows, ``D``: each
  modality's present-minus-absent term for every sample and hidden unit), valid when each subset is the same for
  all samples (evaluation) and intersected with what a sample has;
- the head's last layer computed transposed, so the gate logits come out modality-major and the softmax runs along
  the leading axis without copies;
- the mixing as six multiply-adds over ``[subsets, batch, classes]``.

It rounds differently in the last bits (it prints the largest difference), so adopting it would change the
committed results of every benchmark it is used on; it is not part of the library. Run it on an idle machine::

    python scripts/subset_layout.py --rounds 3
"""

# ruff: noqa: I001  (simmlm is imported before torch: portable mode sets the environment torch reads)
from __future__ import annotations

import argparse

import simmlm  # noqa: F401  (before torch: the reproducibility mode's environment)
import torch
from torch import Tensor

from simmlm.experiments.costs import SETTINGS, _median_seconds
from simmlm.methods import DMoME, create_method
from simmlm.portable import configure_torch
from simmlm.subsets import all_subsets, bits_to_mask


def matrix_layout(model: DMoME, inputs: dict[str, Tensor], available: Tensor, codes: Tensor) -> Tensor:
    """Logits ``[S, B, T]`` of the subsets ``codes`` (``[S, M]`` 0/1 rows) of ``available``, in the layout above."""
    expert_logits, gate_inputs = model.encode(inputs, available)
    gate = model.gate
    last = gate.head[2]
    assert isinstance(last, torch.nn.Linear)
    base, change = gate.first_layer_terms(gate_inputs)  # [1, H], [B, M, H]
    batch, modalities, _ = change.shape
    terms = change.movedim(1, 0).reshape(modalities, -1)  # [M, B*H]; 0 where a modality is zero-filled
    base = base.repeat(1, batch)  # [1, B*H]
    hidden = torch.addmm(base, codes, terms).relu_().view(len(codes) * batch, -1)  # [S*B, H]
    logits = torch.addmm(last.bias[:, None], last.weight, hidden.T).view(modalities, len(codes), batch)
    keep = codes.bool().T[:, :, None] & available.T[:, None, :]  # [M, S, B]
    weights = torch.softmax(logits.masked_fill_(~keep, float("-inf")), 0)
    outputs = torch.where(available.unsqueeze(-1), expert_logits, 0.0)  # [B, M, T]
    mixed = weights[0, :, :, None] * outputs[:, 0]
    for m in range(1, modalities):
        mixed.addcmul_(weights[m, :, :, None], outputs[:, m])
    return mixed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=450)
    parser.add_argument("--repeats", type=int, default=50, help="timed calls per operation (the median is kept)")
    parser.add_argument("--rounds", type=int, default=3, help="times to measure all three, one after the other")
    args = parser.parse_args()
    configure_torch()
    shapes, expert = SETTINGS["M=6 (MLP, multi-view MNIST shapes)"]
    torch.manual_seed(0)
    model = create_method("simmlm", input_shapes=shapes, num_classes=10, expert=expert).eval()
    assert isinstance(model, DMoME)
    inputs = {name: torch.randn(args.batch, *shape) for name, shape in shapes.items()}
    full = torch.ones(args.batch, len(shapes), dtype=torch.bool)
    subset_codes = all_subsets(len(shapes))
    masks = [bits_to_mask(torch.full((args.batch,), code, dtype=torch.long), len(shapes)) for code in subset_codes]
    codes = torch.stack([m[0] for m in masks]).float()
    with torch.no_grad():
        committed = torch.stack([out.logits for out in model.forward_subsets(inputs, full, masks)])
        difference = (committed - matrix_layout(model, inputs, full, codes)).abs().max().item()
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}, 63 subsets")
        print(f"largest difference in the logits from the committed code: {difference:.2e}")
        for _ in range(args.rounds):
            one = _median_seconds(lambda: model(inputs, full), args.repeats)
            now = _median_seconds(lambda: model.forward_subsets(inputs, full, masks), args.repeats)
            other = _median_seconds(lambda: matrix_layout(model, inputs, full, codes), args.repeats)
            print(
                f"one full pass {one * 1e3:.2f} ms; all subsets: committed code {now / one:.2f}x, "
                f"matrix layout {other / one:.2f}x"
            )


if __name__ == "__main__":
    main()
