"""What the reliability-aware gate costs against simmlm's (issue 29: training within 1.5x, inference within 1.2x):
median wall-clock ratios, in one process, of inference (one full-modality pass; every subset) and of a stage-2
training step (a nested pair of subsets, MoFe loss, backward), for the settings of ``simmlm costs``. Run it on an
idle machine:

    python scripts/reliability_cost.py
"""

from __future__ import annotations

import torch

from simmlm.experiments.costs import SETTINGS, _median_seconds
from simmlm.losses.mofe import mofe_terms
from simmlm.methods import create_method
from simmlm.subsets import all_subsets, bits_to_mask, sample_nested_pairs


def times(reliability: bool, shapes: dict[str, tuple[int, ...]], expert: str, batch: int = 450) -> list[float]:
    torch.manual_seed(0)
    options = {"reliability": True} if reliability else {}
    model = create_method("simmlm", input_shapes=shapes, num_classes=10, expert=expert, **options)
    inputs = {name: torch.randn(batch, *shape) for name, shape in shapes.items()}
    full = torch.ones(batch, len(shapes), dtype=torch.bool)
    target = torch.randint(0, 10, (batch,))
    masks = [bits_to_mask(torch.full((batch,), c, dtype=torch.long), len(shapes)) for c in all_subsets(len(shapes))]
    model.eval()
    with torch.no_grad():
        one = _median_seconds(lambda: model(inputs, full), 20)
        every = _median_seconds(lambda: model.forward_subsets(inputs, full, masks), 10)
    model.train()

    def step() -> None:
        model.zero_grad()
        minus, plus = sample_nested_pairs(full)
        out_plus, out_minus = model.forward_subsets(inputs, full, [plus, minus], validate_args=False)
        mofe_terms(out_plus.logits, out_minus.logits, target, 0.1).total.backward()

    return [one, every, _median_seconds(step, 20)]


def main() -> None:
    print("| setting | one pass | every subset | stage-2 step |")
    print("|---|---|---|---|")
    for setting, (shapes, expert) in SETTINGS.items():
        plain, reliable = times(False, shapes, expert), times(True, shapes, expert)
        print(f"| {setting} | " + " | ".join(f"{r / p:.2f}x" for r, p in zip(reliable, plain, strict=True)) + " |")


if __name__ == "__main__":
    main()
