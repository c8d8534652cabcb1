"""DREAM (Dynamic modality Recognition and Enhancement for Adaptive Multimodal fusion), adapted to this harness.

1. **Contribution evaluation** (eqs. 1-4): a frozen pre-trained ``scorer`` (by default the late-fusion baseline,
   trained first by the engine) predicts every subset of each sample's available modalities; exact Shapley
   values give the Prediction Shift Score (PSS) and Prediction Accuracy Score (PAS) per sample and modality
   (:func:`simmlm.metrics.shapley_contributions`; Monte-Carlo beyond 6 modalities). During training the
   scorer's predictions for every subset of every training sample are computed once, on the un-augmented data,
   and cached (:meth:`DREAM.cache_scorer_predictions`); at evaluation the scorer runs on the actual input.
   In a benchmark the scorer is the late-fusion run of the same seed, reused rather than trained again, and the
   token encoders start from its stage-1 experts where they share an architecture (:meth:`DREAM.warm_start`),
   so DREAM then trains for stage 2's epochs, like the expert mixtures (a harness choice: the paper does not
   say how its encoders start).
2. **Enhancement** (eqs. 5-9): a modality with PSS = 0 (missing, uninformative or redundant for this sample) is
   rebuilt by cross-modal attention with itself as query: one global context ``Z_g`` (all modalities' tokens) and
   ``M - 1`` pairwise contexts ``Z_k = [x_m, x_k]``; ``x_m <- LN(x_m + I_g + sum_k I_k)``, repeated ``D = 2`` times.
   Missing modalities' tokens (the encoding of zeros) are excluded from the keys with the availability mask
   (``annotation="mask"``), or attended to like any other (``annotation="none"``).
3. **Masked fusion** (eqs. 10-11): ``h_i`` from cross-modal attention of modality ``i`` over all tokens,
   preliminary weights ``w = Linear([h_1..h_M])``, ``w' = softmax(w * (PSS + 1))``, ``H = sum_i w'_i h_i``,
   logits ``= FC(H)``. Reconstructed modalities keep a (down-weighted) share: their ``w'`` is not zero, so
   ``gate_weights`` is ``None`` (the harness reserves gate weights for fusions that exclude missing modalities).
4. **Distillation** (eq. 12): ``lambda * KL(p_PAS || softmax(w))`` with ``p_PAS = max(PAS, 0) / sum max(PAS, 0)``
   (PAS can be negative for misleading modalities; those get no target mass). Samples whose clipped PAS is all
   zero (no modality leads to a correct prediction) have no target and are left out of the mean. The direction
   is the usual distillation one: the PAS distribution is the target, ``w`` the student.

**Regression.** A score plays the game on its Acc-7 classes (:func:`~simmlm.metrics.sentiment.predicted_class`).

**Annotation.** The paper's point is that DREAM needs no annotation of which modalities are missing (its §3.4):
with ``annotation="none"`` (the method ``dream_paper``) neither DREAM nor its scorer reads the availability mask.
Both train with every modality marked present (:func:`~simmlm.data.base.without_annotation`: a missing one is the
zeros it already is), so their training subsets are drawn over all ``M`` modalities. The scorer is a late fusion
that reads no mask either (:class:`~simmlm.methods.late_fusion.UnmarkedLateFusion`, trained for this, not the
benchmark's own late-fusion run): ``ŷ(S)`` is its prediction on the input zero-filled outside ``S``, ``ŷ(∅)`` on
the all-zero input, and the game runs over all ``M`` modalities, so a present but uninformative modality can get
``PSS = 0`` and be enhanced like a missing one. Eq. 3's ``V(S) = |S|`` then credits zero-filled modalities in PAS
(the distillation target); ``pas_value="present"`` counts ``|S ∩ P|``, ``P`` the modalities the sample is given
(so DREAM then trains with the mask; its scorer still without). The default ``annotation="mask"`` (``dream``): the
scorer, the game and the enhancer's keys use the mask, ``ŷ(∅)`` is "no prediction", so every available modality
has ``PSS >= 1/|A|`` and only missing modalities are enhanced.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any, Literal, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from simmlm.data.base import TensorMultimodalDataset
from simmlm.methods.base import ModelOutput, outputs_for_subsets, validate_subsets, zero_fill
from simmlm.methods.mmp import token_encoders
from simmlm.methods.registry import create_method, get_method, register_method
from simmlm.metrics.sentiment import acc7_class, predicted_class
from simmlm.metrics.shapley import ShapleyScores, shapley_contributions
from simmlm.nn.attention import CrossModalEnhancer
from simmlm.subsets import all_subsets, bits_to_mask, mask_to_bits


class DREAM(nn.Module):
    """DREAM over per-modality token encoders and a frozen pre-trained scorer (see the module docstring).

    Args:
        encoders: modality name -> token encoder ``[B, T_m, dim]`` with a ``num_tokens`` attribute.
        scorer: the pre-trained model whose subset predictions give PSS and PAS; frozen here.
        num_classes: output classes.
        dim, heads: token size and attention heads.
        depth: ``D``, how many times enhancement is repeated (2 in the paper).
        distill_weight: ``lambda`` of the KL distillation loss.
        mc_permutations: Monte-Carlo permutations for Shapley values (``None``: exact, up to 6 modalities).
        scorer_method: registry name of the scorer, so the engine can pre-train it.
        annotation: ``"mask"``: the scorer, the Shapley game and the enhancer use the availability mask;
            ``"none"``: they see only the zero-filled inputs (the paper's setting, see the module docstring).
        pas_value: without annotation, eq. 3's ``V(S) = |S|`` (``"subset"``) or ``|S ∩ P|`` (``"present"``).
    """

    def __init__(
        self,
        encoders: dict[str, nn.Module],
        scorer: nn.Module,
        num_classes: int,
        dim: int = 32,
        heads: int = 4,
        depth: int = 2,
        distill_weight: float = 0.1,
        mc_permutations: int | None = None,
        scorer_method: str = "late_fusion",
        annotation: Literal["mask", "none"] = "mask",
        pas_value: Literal["subset", "present"] = "subset",
    ) -> None:
        super().__init__()
        if len(encoders) < 2:
            raise ValueError("DREAM needs at least two modalities")
        if annotation not in ("mask", "none") or pas_value not in ("subset", "present"):
            raise ValueError(
                f"annotation: 'mask' or 'none', pas_value: 'subset' or 'present'; got {annotation!r}, {pas_value!r}"
            )
        self.annotated = annotation == "mask"
        self.pas_present = pas_value == "present"
        #: whether training may mark missing modalities (the engine trains it without the mask otherwise)
        self.reads_annotation = self.annotated or self.pas_present
        self.scorer_method = scorer_method
        names = list(encoders)
        self.encoders = nn.ModuleDict(encoders)
        self.scorer = scorer.requires_grad_(False)
        self.enhancers = nn.ModuleList(
            nn.ModuleDict({m: CrossModalEnhancer(len(names), dim, heads) for m in names}) for _ in range(depth)
        )
        self.fusion_attention = nn.ModuleDict({m: nn.MultiheadAttention(dim, heads, batch_first=True) for m in names})
        self.summaries = nn.ModuleDict(
            {
                m: nn.Sequential(nn.Flatten(), nn.Linear(int(e.num_tokens) * dim, 2 * dim), nn.GELU())  # type: ignore[arg-type]
                for m, e in encoders.items()
            }
        )
        self.weight_head = nn.Linear(len(names) * 2 * dim, len(names))
        self.classifier = nn.Linear(2 * dim, num_classes)
        self.distill_weight = distill_weight
        self.mc_permutations = mc_permutations
        self.prediction_cache: Tensor | None = None  # [N_train, 2^M], see cache_scorer_predictions

    @property
    def modalities(self) -> list[str]:
        return list(self.encoders)

    def train(self, mode: bool = True) -> DREAM:
        super().train(mode)
        self.scorer.eval()  # frozen: no dropout, fixed statistics
        return self

    @torch.no_grad()
    def scorer_predictions(self, inputs: dict[str, Tensor], available: Tensor, validate_args: bool = True) -> Tensor:
        """The frozen scorer's predicted class ``[B, 2^M]`` for every subset code (of ``available``; for ∅: -1, or
        without annotation the prediction on the all-zero input)."""
        if not self.annotated:
            return self._unannotated_predictions(inputs, available)
        num_modalities = available.shape[1]
        codes = all_subsets(num_modalities)
        masks = []
        for code in codes:
            mask = bits_to_mask(torch.full_like(available[:, 0], code, dtype=torch.long), num_modalities) & available
            masks.append(torch.where(mask.any(1, keepdim=True), mask, available))  # placeholder rows, never read
        outputs = outputs_for_subsets(self.scorer, inputs, available, masks, validate_args=validate_args)
        table = torch.full((len(available), 2**num_modalities), -1, dtype=torch.long, device=available.device)
        for code, out in zip(codes, outputs, strict=True):
            table[:, code] = predicted_class(out.logits)
        return table

    def _unannotated_predictions(self, inputs: dict[str, Tensor], available: Tensor) -> Tensor:
        """``ŷ(S)`` = the scorer on the input zero-filled outside ``S``, every modality marked present, as the
        scorer (:class:`~simmlm.methods.late_fusion.UnmarkedLateFusion`) was trained: ``available`` is not read.
        One scorer pass per subset code, ∅ (the all-zero input) included."""
        everything = torch.ones_like(available)
        table = torch.empty(len(available), 2 ** available.shape[1], dtype=torch.long, device=available.device)
        for code in range(table.shape[1]):
            keep = bits_to_mask(torch.full_like(available[:, 0], code, dtype=torch.long), available.shape[1])
            table[:, code] = predicted_class(self.scorer(zero_fill(inputs, keep, self.modalities), everything).logits)
        return table

    @torch.no_grad()
    def warm_start(self) -> list[str]:
        """Start each token encoder's feature extractor from the scorer's trained expert of that modality where
        both have one of the same shapes (LeNet / BN-CNN features); returns the modalities started so."""
        experts = getattr(self.scorer, "experts", None)
        started = []
        for name, encoder in self.encoders.items():
            target = getattr(encoder, "features", None)
            source = getattr(experts[name], "features", None) if experts is not None else None
            if isinstance(target, nn.Module) and isinstance(source, nn.Module):
                theirs, ours = source.state_dict(), target.state_dict()
                if theirs.keys() == ours.keys() and all(theirs[k].shape == ours[k].shape for k in ours):
                    target.load_state_dict(theirs)
                    started.append(name)
        return started

    @torch.no_grad()
    def cache_scorer_predictions(self, dataset: TensorMultimodalDataset, batch_size: int = 256) -> None:
        """Predict every subset of every sample of ``dataset`` once, so training reuses them (``sample_index``).

        The engine fills this cache for the training split before training and clears it afterwards; at
        evaluation and inference the scorer runs on the actual input.
        """
        device = next(self.parameters()).device
        tables = []
        for start in range(0, len(dataset), batch_size):
            inputs, mask, _ = dataset[list(range(start, min(start + batch_size, len(dataset))))]
            tables.append(self.scorer_predictions({k: v.to(device) for k, v in inputs.items()}, mask.to(device)).cpu())
        self.prediction_cache = torch.cat(tables)

    @torch.no_grad()
    def contributions(
        self,
        inputs: dict[str, Tensor],
        available: Tensor,
        subsets: Sequence[Tensor],
        targets: Tensor | None,
        table: Tensor | None = None,
    ) -> list[ShapleyScores]:
        """PSS and PAS of every subset mask in ``subsets`` from the scorer's predictions ``table`` (or a new pass)."""
        num_modalities = available.shape[1]
        if targets is not None and targets.is_floating_point():  # a regression's scores: their Acc-7 classes
            targets = acc7_class(targets)
        if table is None:  # called by forward_subsets, which validated the masks
            table = self.scorer_predictions(inputs, available, validate_args=False)
        rows = torch.arange(len(available), device=available.device)

        def lookup(seen: Tensor | None) -> Callable[[Tensor], Tensor]:
            """``ŷ`` of a subset mask from the table; ``seen``: the codes the scorer sees (others are zeros)."""
            return lambda mask: table[rows, mask_to_bits(mask) if seen is None else mask_to_bits(mask) & seen]

        # annotated: the game on each sample's subset, ŷ(∅) = "no prediction"; without annotation: the game on all
        # M modalities, those outside the subset being zeros to the scorer, and ŷ(∅) its all-zero prediction
        return [
            shapley_contributions(
                lookup(None if self.annotated else mask_to_bits(subset)),
                len(available),
                num_modalities,
                targets,
                subset if self.annotated else None,
                self.mc_permutations,
                validate_args=False,
                predict_empty=not self.annotated,
                pas_counts=subset if self.pas_present and not self.annotated else None,
            )
            for subset in subsets
        ]

    def _tokens(self, inputs: dict[str, Tensor], available: Tensor) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """Each modality's tokens ``[B, T_m, D]`` on the zero-filled input, and its tokens of absence (the encoding
        of a zero input, ``[1, T_m, D]``), from one encoder pass (a zero row appended to the batch)."""
        filled = zero_fill(inputs, available, self.modalities)
        real, absent = {}, {}
        for name, encoder in self.encoders.items():
            x = filled[name]
            tokens = encoder(torch.cat([x, x.new_zeros((1, *x.shape[1:]))]))
            real[name], absent[name] = tokens[:-1], tokens[-1:]
        return real, absent

    def _enhance(self, tokens: dict[str, Tensor], subset: Tensor, pss: Tensor) -> dict[str, Tensor]:
        """Eqs. 5-9, ``D`` times, on the rows where a modality has ``PSS = 0`` (only those rows are computed)."""
        names = self.modalities
        keys = subset if self.annotated else torch.ones_like(subset)  # without annotation: attend to all
        rows = [torch.nonzero(pss[:, m] == 0).squeeze(1) for m in range(len(names))]  # one host sync per modality
        for layer in self.enhancers:
            enhanced = dict(tokens)
            for name, r in zip(names, rows, strict=True):
                if r.numel() == 0:
                    continue
                others = [tokens[o][r] for o in names if o != name]
                present = [keys[r, i] for i, o in enumerate(names) if o != name]
                rebuilt = cast(nn.ModuleDict, layer)[name](tokens[name][r], others, present)
                enhanced[name] = tokens[name].index_copy(0, r, rebuilt)
            tokens = enhanced
        return tokens

    def _fuse(self, tokens: dict[str, Tensor], pss: Tensor) -> tuple[Tensor, Tensor]:
        """Eqs. 10-11: logits and the preliminary weights ``w``."""
        names = self.modalities
        everything = torch.cat([tokens[n] for n in names], dim=1)
        h = torch.stack(
            [
                self.summaries[n](
                    tokens[n] + self.fusion_attention[n](tokens[n], everything, everything, need_weights=False)[0]
                )
                for n in names
            ],
            dim=1,
        )  # [B, M, 2D]
        w = self.weight_head(h.flatten(1))  # preliminary weights [B, M]
        fused = (torch.softmax(w * (pss + 1), dim=1).unsqueeze(-1) * h).sum(1)
        return self.classifier(fused), w

    def _distillation(self, w: Tensor, pas: Tensor) -> dict[str, Tensor]:
        """Eq. 12 (see the module docstring): ``lambda * KL(p_PAS || softmax(w))`` over samples with a target."""
        mass = pas.to(w.dtype).clamp(min=0)
        total = mass.sum(1, keepdim=True)
        has_target = total.squeeze(1) > 0
        if self.distill_weight <= 0 or not bool(has_target.any()):
            return {}
        target_dist = mass[has_target] / total[has_target]
        kl = F.kl_div(F.log_softmax(w[has_target], dim=1), target_dist, reduction="batchmean")
        return {"distillation": self.distill_weight * kl}

    def forward_subsets(
        self,
        inputs: dict[str, Tensor],
        available: Tensor,
        subset_masks: Sequence[Tensor],
        targets: Tensor | None = None,
        sample_index: Tensor | None = None,
        validate_args: bool = True,
    ) -> list[ModelOutput]:
        """Outputs for several subsets of ``available``: one encoder pass and one scorer table for all of them, and
        the subsets stacked along the batch axis through enhancement and fusion.

        With ``sample_index`` (dataset rows of the batch) and a filled :meth:`cache_scorer_predictions`, the
        scorer's cached predictions are used instead of running it again.
        """
        subsets = [s & available for s in subset_masks]
        if validate_args:
            validate_subsets(inputs, available, subsets, self.modalities)
        table = None
        if sample_index is not None and self.prediction_cache is not None:
            table = self.prediction_cache[sample_index.cpu()].to(available.device)
        scores = self.contributions(inputs, available, subsets, targets, table)
        real, absent = self._tokens(inputs, available)
        stacked = torch.cat(subsets)  # [S*B, M]: every subset's rows, one after another
        tokens = {
            name: torch.where(stacked[:, m, None, None], real[name].repeat(len(subsets), 1, 1), absent[name])
            for m, name in enumerate(self.modalities)
        }
        pss = torch.cat([s.pss for s in scores]).to(real[self.modalities[0]].dtype)
        logits, w = self._fuse(self._enhance(tokens, stacked, pss), pss)
        batch = len(available)
        return [
            ModelOutput(
                logits=logits[k * batch : (k + 1) * batch],
                gate_weights=None,
                aux_losses=self._distillation(w[k * batch : (k + 1) * batch], score.pas) if targets is not None else {},
            )
            for k, score in enumerate(scores)
        ]

    def forward(self, inputs: dict[str, Tensor], mask: Tensor) -> ModelOutput:
        return self.forward_subsets(inputs, mask, [mask])[0]


def pretrain_scorer(
    model: DREAM, train_method: Callable[[str, dict[str, Any] | None], tuple[nn.Module, dict[str, Any]]], train_set: Any
) -> dict[str, Any]:
    """The engine's pre-training hook: DREAM scores modalities with a pre-trained model, so train that first (same
    seed and data; without annotation, on training data without the availability mask), load it, and cache its
    predictions on the training set for every subset."""
    scorer, selected = train_method(model.scorer_method, None if model.annotated else {"annotation": "none"})
    model.scorer.load_state_dict(scorer.state_dict())
    model.cache_scorer_predictions(train_set)
    return {"scorer": {"method": model.scorer_method, **selected}, "encoders_from_scorer": model.warm_start()}


def drop_training_cache(model: DREAM) -> None:
    """The engine's after-training hook: the cache covers the training set only; evaluation scores the input."""
    model.prediction_cache = None


def build_dream(
    input_shapes: dict[str, tuple[int, ...]],
    num_classes: int,
    expert: str | dict[str, str] = "lenet",
    expert_options: dict[str, Any] | None = None,
    scorer: str = "late_fusion",
    dim: int = 32,
    heads: int = 4,
    depth: int = 2,
    distill_weight: float = 0.1,
    mc_permutations: int | None = None,
    annotation: Literal["mask", "none"] = "mask",
    pas_value: Literal["subset", "present"] = "subset",
    gate_width: int = 8,
    gate_hidden: int = 32,
    gate_channels: int | None = None,
) -> DREAM:
    """DREAM with token encoders like MMP's and an (untrained) ``scorer`` method of the same shapes.

    The engine trains the scorer first and loads its weights (:func:`pretrain_scorer`); the gate options go to the
    scorer (used if it has a gate). ``annotation``: see :class:`DREAM`.
    """
    if get_method(scorer).builder is build_dream:
        raise ValueError("DREAM's scorer cannot be DREAM itself")
    encoders = token_encoders(input_shapes, expert, expert_options, dim)
    unmarked = {} if annotation == "mask" else {"annotation": "none"}  # the scorer reads no annotation either
    if unmarked and "annotation" not in inspect.signature(get_method(scorer).builder).parameters:
        raise ValueError(
            f"without annotation, DREAM's scorer must train without it too: {scorer!r} cannot (late_fusion can)"
        )
    scorer_model = create_method(
        scorer,
        input_shapes=input_shapes,
        num_classes=num_classes,
        expert=expert,
        expert_options=expert_options,
        gate_width=gate_width,
        gate_hidden=gate_hidden,
        gate_channels=gate_channels,
        **unmarked,
    )
    args = (dim, heads, depth, distill_weight, mc_permutations, scorer, annotation, pas_value)
    return DREAM(encoders, scorer_model, num_classes, *args)


#: The engine hooks and training settings of both DREAM entries.
HOOKS: dict[str, Any] = {
    "pretrain": pretrain_scorer,
    "needs_sample_index": True,  # its cache of the scorer's training-set predictions is looked up by row
    "after_training": drop_training_cache,
    "stage1_in_pretrain": True,
    "train_defaults": {"mofe_lambda": 0.0},
    "smoke_options": {"dim": 8, "heads": 2},
}
register_method(
    "dream",
    build_dream,
    "Shapley contributions of a frozen pre-trained model drive enhancement and soft-masked fusion (lambda 0)",
    cost="about 1x simmlm's training time with 2 modalities (avMNIST, its late-fusion scorer reused from the "
    "benchmark), about 25x per step with 6 (MLP views): it enhances and scores over all 2^M subsets",
    protocol="dream trains for stage 2's epochs after its scorer (the late-fusion run of the same seed, reused when "
    "the benchmark has it{presets}), its convolutional token encoders starting from the scorer's stage-1 experts",
    **HOOKS,
)
register_method(
    "dream_paper",
    build_dream,
    "DREAM as its paper sets it up: no annotation of which modalities are missing (zero-filled inputs only)",
    cost="as dream, and its scorer runs once per subset without sharing the experts' pass (2^M scorer passes)",
    option_defaults={"annotation": "none"},
    protocol="dream_paper's own, reading no mask",
    **HOOKS,
)
