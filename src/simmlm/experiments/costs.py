"""What extra subsets and MoFe cost: wall-clock ratios of the operations DMoME repeats, measured in one run.

``simmlm costs`` prints, for a few modality counts, how long evaluating every non-empty subset takes relative to one
full-modality forward pass, and how long a MoFe training step (x+ and x- from one expert pass) takes relative to a
plain full-modality training step. Timings are medians over repeats on synthetic inputs; run it on an idle machine.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from simmlm.losses.mofe import mofe_terms
from simmlm.methods import DMoME, ExpertMixture, create_method
from simmlm.subsets import all_subsets, bits_to_mask, sample_nested_pairs

#: (name, modality shapes, expert kind): the settings of the gate issue's measurements.
SETTINGS: dict[str, tuple[dict[str, tuple[int, ...]], str]] = {
    "M=2 (avMNIST shapes, LeNet-5)": ({"image": (1, 28, 28), "audio": (1, 20, 20)}, "lenet"),
    "M=4 (LeNet-5)": ({f"m{k}": (1, 20, 20) for k in range(4)}, "lenet"),
    "M=6 (MLP, multi-view MNIST shapes)": (
        {"pixels": (49,), "pca": (12,), "profiles": (28,), "dct": (10,), "morphology": (6,), "moments": (7,)},
        "mlp",
    ),
}


@dataclass
class Costs:
    setting: str
    subsets: int
    all_subsets_ratio: float  # every non-empty subset / one full-modality forward pass
    mofe_step_ratio: float  # a MoFe training step / a plain full-modality training step


def _median_seconds(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(
    shapes: dict[str, tuple[int, ...]], expert: str, batch: int = 450, repeats: int = 20, setting: str = ""
) -> Costs:
    """The two cost ratios of simmlm (DMoME) for inputs of ``shapes`` and a batch of ``batch`` samples."""
    torch.manual_seed(0)
    model = create_method("simmlm", input_shapes=shapes, num_classes=10, expert=expert)
    assert isinstance(model, DMoME)
    inputs = {name: torch.randn(batch, *shape) for name, shape in shapes.items()}
    full = torch.ones(batch, len(shapes), dtype=torch.bool)
    target = torch.randint(0, 10, (batch,))
    codes = all_subsets(len(shapes))
    masks = [bits_to_mask(torch.full((batch,), code, dtype=torch.long), len(shapes)) for code in codes]
    model.eval()
    with torch.no_grad():
        forward = _median_seconds(lambda: model(inputs, full), repeats)
        every = _median_seconds(lambda: model.forward_subsets(inputs, full, masks), repeats)
    model.train()

    def plain_step() -> None:
        model.zero_grad()
        F.cross_entropy(model(inputs, full).logits, target).backward()

    def mofe_step() -> None:
        model.zero_grad()
        minus, plus = sample_nested_pairs(full)
        out_plus, out_minus = model.forward_subsets(inputs, full, [plus, minus], validate_args=False)
        mofe_terms(out_plus.logits, out_minus.logits, target, 0.1).total.backward()

    plain = _median_seconds(plain_step, repeats)
    mofe = _median_seconds(mofe_step, repeats)
    return Costs(setting, len(codes), every / forward, mofe / plain)


def engine_overhead(data_dir: str | None, epochs: int) -> tuple[float, float]:
    """Seconds of ``epochs`` stage-1 epochs of the avMNIST experts (``configs/avmnist.yaml``) through the engine
    (Lightning, as ``simmlm benchmark`` trains them) and through a bare PyTorch loop doing the same work: the same
    model and initial weights, batches, augmentation, loss and optimiser, and after every epoch each expert scored
    on validation and the better one copied. Data loading is outside both timings."""
    import copy

    from simmlm.data.augment import augment_inputs
    from simmlm.engine.config import load_config
    from simmlm.engine.runs import build_model
    from simmlm.engine.tasks import task_for
    from simmlm.engine.train import quiet_lightning, stage_one

    cfg = load_config("avmnist", {"data.data_dir": data_dir, "train.stage1.epochs": epochs})
    task = task_for(cfg)
    splits = task.load_splits()
    model = build_model(cfg, task.input_shapes(splits), splits.num_classes)
    assert isinstance(model, ExpertMixture)  # simmlm's experts
    initial = copy.deepcopy(model.state_dict())
    quiet_lightning()
    start = time.perf_counter()
    stage_one(cfg, splits, model, task, progress=False, cache=None, store=None)
    engine = time.perf_counter() - start

    model.load_state_dict(initial)
    t = cfg.train
    loader = task.train_loader(splits.train, t.batch_size, seed=0)
    optimiser = torch.optim.Adam(model.experts.parameters(), lr=t.stage1.lr, weight_decay=t.stage1.weight_decay)
    singletons = [1 << m for m in range(len(splits.modalities))]
    best: dict[str, tuple[tuple[float, float], dict[str, torch.Tensor]]] = {}
    start = time.perf_counter()
    for epoch in range(epochs):
        loader.sampler.set_epoch(epoch)  # type: ignore[attr-defined]
        model.train()
        for inputs, mask, target in loader:
            logits = model.expert_logits(augment_inputs(inputs, t.augment), mask, validate_args=False)
            losses = [
                F.cross_entropy(logits[mask[:, m], m], target[mask[:, m]])
                for m in range(mask.shape[1])
                if mask[:, m].any()
            ]
            optimiser.zero_grad()
            torch.stack(losses).sum().backward()
            optimiser.step()
        for name, score in zip(splits.modalities, task.scores(model, splits.val, singletons), strict=True):
            if score is not None and (name not in best or score > best[name][0]):
                best[name] = (score, copy.deepcopy(model.experts[name].state_dict()))
    return engine, time.perf_counter() - start
