"""The two training stages of SimMLM (Sec. 3.3) as Lightning modules.

Both keep, in memory, the weights that score best on the validation split and restore them when training
ends (selection on validation data only; the test split is never seen here). That memory (and the MoFe sums)
is the modules' ``extra state``: it goes into every Lightning checkpoint, so a resumed stage selects exactly
as an uninterrupted one, and it travels back from ``ddp_spawn`` workers with the weights. Under DDP every
rank scores the whole validation split and rank 0's decision is broadcast, so all ranks keep the same epoch.
"""

from __future__ import annotations

import copy
from typing import Any

import lightning as L
import torch
from torch import Tensor

from simmlm.data.augment import AugmentSpec, augment_inputs
from simmlm.data.base import Batch, IndexedBatch
from simmlm.engine.tasks import ClassificationTask, Task
from simmlm.losses.gate import gate_kl_to_uniform
from simmlm.losses.mofe import mean_terms, mofe_terms
from simmlm.methods.base import ExpertMixture, outputs_for_subsets
from simmlm.subsets import all_subsets, sample_nested_pairs


def _rank_zero_says(module: L.LightningModule, decision: bool) -> bool:
    """Rank 0's ``decision`` on every rank (identical inputs should agree anyway; this makes sure)."""
    if module.trainer.world_size == 1:
        return decision
    return bool(module.trainer.strategy.broadcast(decision, src=0))


class ExpertStage(L.LightningModule):
    """Stage 1, independent learning: every expert trains on its own modality with the task loss.

    Experts share nothing, so they train side by side in one loop; each sample trains only the experts of
    the modalities it has. Each expert's best epoch on validation (samples having its modality) is kept
    separately.
    """

    def __init__(
        self,
        model: ExpertMixture,
        val_set: Any,
        lr: float,
        weight_decay: float,
        augment: dict[str, AugmentSpec],
        task: Task | None = None,
    ) -> None:
        super().__init__()
        self.model, self.val_set, self.lr, self.weight_decay, self.augment = model, val_set, lr, weight_decay, augment
        self.task = task or ClassificationTask()
        self.best: dict[str, tuple[tuple[float, float], int, dict[str, Tensor]]] = {}

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        inputs, mask, target = batch
        # masks were validated once by the dataset: no per-step checks (each would be a device sync)
        logits = self.model.expert_logits(augment_inputs(inputs, self.augment), mask, validate_args=False)
        losses = [
            self.task.loss(logits[mask[:, m], m], target[mask[:, m]]).mean()
            for m in range(mask.shape[1])
            if mask[:, m].any()
        ]
        loss = torch.stack(losses).sum()
        self.log("stage1/loss", loss, prog_bar=True, on_step=False, on_epoch=True, batch_size=len(target))
        return loss

    def on_train_epoch_end(self) -> None:
        # A modality alone is its expert's output (its weight is 1), so these are the experts' own scores.
        singletons = [1 << m for m in range(len(self.model.modalities))]
        scores = self.task.scores(self.model, self.val_set, singletons)
        for name, score in zip(self.model.modalities, scores, strict=True):
            if score is None:  # no validation sample has this modality: the expert keeps its last epoch
                continue
            if _rank_zero_says(self, name not in self.best or score > self.best[name][0]):
                state = copy.deepcopy(self.model.experts[name].state_dict())
                self.best[name] = (score, self.current_epoch + 1, state)
            self.log(f"stage1/val_score_{name}", score[0], prog_bar=True)

    def on_fit_end(self) -> None:
        for name, (_, _, state) in self.best.items():
            self.model.experts[name].load_state_dict(state)

    def selected(self) -> dict[str, Any]:
        return {name: {"epoch": epoch, "val_score": score[0]} for name, (score, epoch, _) in self.best.items()}

    def get_extra_state(self) -> dict[str, Any]:
        return {"best": self.best}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.best = {name: (tuple(score), epoch, weights) for name, (score, epoch, weights) in state["best"].items()}

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.model.experts.parameters(), lr=self.lr, weight_decay=self.weight_decay)


class CooperativeStage(L.LightningModule):
    """Stage 2, cooperative learning: experts + gate with ``l(o+) + l(o-) + lambda * MoFe`` (eq. 4).

    Each sample draws its own nested pair ``S- ⊂ S+`` within its available modalities. With
    ``views="shared"`` both outputs come from one augmented view and every expert runs once; with
    ``"independent"`` (as in the authors' code) ``x+`` and ``x-`` are two independently augmented views.
    The best epoch is chosen by the mean validation score (accuracy, or Dice) over every modality subset, each
    subset over the validation samples that have all of its modalities.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        val_set: Any,
        lr: float,
        weight_decay: float,
        augment: dict[str, AugmentSpec],
        mofe_lambda: float,
        views: str = "shared",
        task: Task | None = None,
        gate_shrinkage: float = 0.0,
        pairs_per_sample: int = 1,
        phase: str = "stage2",
        expert_lr_scale: float = 1.0,
    ) -> None:
        super().__init__()
        self.phase = phase  # the prefix of logged values: "stage2", or "train" for a method trained in one stage
        self.task = task or ClassificationTask()
        self.model, self.val_set, self.lr, self.weight_decay = model, val_set, lr, weight_decay
        self.augment, self.mofe_lambda, self.views = augment, mofe_lambda, views
        self.gate_shrinkage, self.pairs_per_sample = gate_shrinkage, pairs_per_sample
        self.expert_lr_scale = expert_lr_scale
        self.best: tuple[tuple[float, float], int, dict[str, Tensor]] | None = None
        self.mofe_sums: Tensor | None = None  # [hinge, active fraction] summed over steps, kept on the device
        self.steps = 0

    def training_step(self, batch: Batch | IndexedBatch, batch_idx: int) -> Tensor:
        inputs, mask, target = batch[0], batch[1], batch[2]
        index = batch[3] if len(batch) > 3 else None  # loaders built with_index add the batch's row indices
        # the dataset validated every mask: no checks (each would be a device sync)
        pairs = [sample_nested_pairs(mask, validate_args=False) for _ in range(self.pairs_per_sample)]
        minus, plus = [m for m, _ in pairs], [p for _, p in pairs]
        view = augment_inputs(inputs, self.augment)
        if self.views == "shared":  # every expert runs once for all the pairs
            outs = outputs_for_subsets(
                self.model, view, mask, [s for m, p in pairs for s in (p, m)], target, index, False
            )
            out_plus, out_minus = outs[0::2], outs[1::2]
        else:
            out_plus = outputs_for_subsets(self.model, view, mask, plus, target, index, False)
            second = augment_inputs(inputs, self.augment)
            out_minus = outputs_for_subsets(self.model, second, mask, minus, target, index, False)
        terms = mean_terms(
            [
                mofe_terms(o_plus.logits, o_minus.logits, target, self.mofe_lambda, self.task.loss, (m == p).all(1))
                for o_plus, o_minus, m, p in zip(out_plus, out_minus, minus, plus, strict=True)
            ]
        )
        scale = 1.0 / len(pairs)  # auxiliary losses are averaged over the pairs too (one pair: unchanged)
        aux = [
            loss if len(pairs) == 1 else scale * loss
            for out in (*out_plus, *out_minus)
            for loss in out.aux_losses.values()
        ]
        if self.gate_shrinkage > 0:  # pull the gate toward the plain mean of the available experts
            for out, subset in zip((*out_plus, *out_minus), (*plus, *minus), strict=True):
                if out.gate_weights is not None:
                    kl = gate_kl_to_uniform(out.gate_weights, subset).mean()
                    aux.append(scale * self.gate_shrinkage * kl)
        loss = terms.total + (torch.stack(aux).sum() if aux else 0.0)
        # Summed on the device (no host sync per step), in float64 like the Python floats they replace.
        step = torch.stack([terms.hinge.detach(), terms.active_fraction.detach()])
        step = step.to(torch.float32 if step.device.type == "mps" else torch.float64)  # MPS has no float64
        self.mofe_sums = step if self.mofe_sums is None else self.mofe_sums.to(step) + step
        self.steps += 1
        n = len(target)
        self.log(f"{self.phase}/loss", loss, prog_bar=True, on_step=False, on_epoch=True, batch_size=n)
        self.log(f"{self.phase}/mofe_active", terms.active_fraction, on_step=False, on_epoch=True, batch_size=n)
        return loss

    def on_train_epoch_end(self) -> None:
        subset_scores = self.task.scores(self.model, self.val_set, all_subsets(len(self.val_set.modalities)))
        scores = [s for s in subset_scores if s is not None]  # subsets no validation sample has are skipped
        score = (sum(s[0] for s in scores) / len(scores), sum(s[1] for s in scores) / len(scores))
        if _rank_zero_says(self, self.best is None or score > self.best[0]):
            self.best = (score, self.current_epoch + 1, copy.deepcopy(self.model.state_dict()))
        self.log(f"{self.phase}/val_mean_score", score[0], prog_bar=True)

    def on_fit_end(self) -> None:
        if self.best is not None:
            self.model.load_state_dict(self.best[2])
        if self.trainer.world_size > 1:  # every rank saw its own shard: average the MoFe sums over ranks
            hinge, active = self._sums()
            sums = torch.tensor([hinge, active, float(self.steps)], device=self.device)
            hinge, active, steps = self.trainer.strategy.reduce(sums, reduce_op="mean").tolist()
            self.mofe_sums, self.steps = torch.tensor([hinge, active], dtype=torch.float64), round(steps)

    def _sums(self) -> tuple[float, float]:
        """The summed hinge and active fraction as Python floats."""
        if self.mofe_sums is None:
            return 0.0, 0.0
        hinge, active = self.mofe_sums.tolist()
        return hinge, active

    def get_extra_state(self) -> dict[str, Any]:
        return {"best": self.best, "mofe_sums": [*self._sums(), self.steps]}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        best = state["best"]
        self.best = None if best is None else (tuple(best[0]), best[1], best[2])
        hinge, active, self.steps = state["mofe_sums"]
        self.mofe_sums = torch.tensor([hinge, active], dtype=torch.float64)  # moved to the device at the next step

    def selected(self) -> dict[str, Any]:
        if self.best is None:
            return {}
        return {"epoch": self.best[1], "val_mean_score": self.best[0][0]}

    def mofe_stats(self) -> dict[str, float]:
        """Mean hinge ``max(0, l+ - l-)`` and fraction of samples where it was active, over all of stage 2."""
        steps, (hinge, active) = max(self.steps, 1), self._sums()
        return {"hinge_mean": hinge / steps, "active_fraction": active / steps}

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """Adam; with ``expert_lr_scale`` other than 1 the experts in a group of their own at ``lr`` times it (the
        gate and everything else at ``lr``); a model without ``experts`` has one rate."""
        experts = getattr(self.model, "experts", None)
        if self.expert_lr_scale == 1.0 or not isinstance(experts, torch.nn.Module):
            return torch.optim.Adam(self.model.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        own = {id(p) for p in experts.parameters()}
        groups: list[dict[str, Any]] = [
            {"params": list(experts.parameters()), "lr": self.lr * self.expert_lr_scale},
            {"params": [p for p in self.model.parameters() if id(p) not in own]},
        ]
        return torch.optim.Adam(groups, lr=self.lr, weight_decay=self.weight_decay)
