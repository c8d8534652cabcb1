"""Method-specific checks for late fusion, MMP and DREAM (the common interface is in test_methods.py)."""

from __future__ import annotations

from typing import cast

import pytest
import torch

from simmlm.methods import DREAM, MMP, LateFusion, create_method

SHAPES = {"image": (1, 28, 28), "audio": (1, 20, 20)}


def _inputs(batch: int = 5) -> dict[str, torch.Tensor]:
    return {name: torch.randn(batch, *shape) for name, shape in SHAPES.items()}


def test_late_fusion_is_the_mean_of_available_experts() -> None:
    model = create_method("late_fusion", input_shapes=SHAPES, num_classes=10).eval()
    assert isinstance(model, LateFusion)
    x = _inputs()
    full = torch.ones(5, 2, dtype=torch.bool)
    experts = model.expert_logits(x, full)
    torch.testing.assert_close(model(x, full).logits, experts.mean(1))
    image_only = torch.tensor([[True, False]] * 5)
    torch.testing.assert_close(model(x, image_only).logits, model.expert_logits(x, image_only)[:, 0])


def test_mmp_alignment_is_zero_when_projections_equal_real_tokens(monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    model = create_method("mmp", input_shapes=SHAPES, num_classes=10).eval()
    assert isinstance(model, MMP)
    x, full = _inputs(), torch.ones(5, 2, dtype=torch.bool)
    image_only = torch.tensor([[True, False]] * 5)
    (out,) = model.forward_subsets(x, full, [image_only])
    assert out.aux_losses["alignment"] > 0  # audio was masked: its projection is compared with its real tokens

    real = model.tokens(x, full)
    monkeypatch.setattr(model, "_projected", lambda name, tokens, aggregated, subset: real[name])
    (aligned,) = model.forward_subsets(x, full, [image_only])
    assert aligned.aux_losses["alignment"] == 0
    # Truly missing modalities (absent from ``available``) are projected but never aligned: nothing to align to.
    (missing,) = model.forward_subsets(x, image_only, [image_only])
    assert missing.aux_losses == {}


def test_mmp_uses_projected_tokens_only_for_missing_modalities() -> None:
    torch.manual_seed(0)
    model = create_method("mmp", input_shapes=SHAPES, num_classes=10).eval()
    x, full = _inputs(), torch.ones(5, 2, dtype=torch.bool)
    audio_only = torch.tensor([[False, True]] * 5)
    with torch.no_grad():
        masked_in_training = model.forward_subsets(x, full, [audio_only])[0].logits
        missing_at_test = model(x, audio_only).logits
    # The image was present in the data but left out of the subset: the output must not use its real tokens.
    torch.testing.assert_close(masked_in_training, missing_at_test)


def test_dream_scores_missing_modalities_zero_and_distils_to_pas() -> None:
    torch.manual_seed(0)
    model = create_method("dream", input_shapes=SHAPES, num_classes=10).eval()
    assert isinstance(model, DREAM) and model.scorer_method == "late_fusion"
    assert not any(p.requires_grad for p in model.scorer.parameters())
    x, full = _inputs(), torch.ones(5, 2, dtype=torch.bool)
    image_only = torch.tensor([[True, False]] * 5)
    target = torch.randint(0, 10, (5,))
    scores_full, scores_image = model.contributions(x, full, [full, image_only], target)
    assert torch.all(scores_image.pss[:, 1] == 0) and torch.all(scores_image.pas[:, 1] == 0)
    assert torch.all(scores_image.pss[:, 0] == 1)  # the only modality always shifts "no prediction"
    # PAS is efficient: it sums to V(M) = |M| when the full prediction is right, else 0.
    right = model.scorer(x, full).logits.argmax(-1) == target
    torch.testing.assert_close(scores_full.pas.sum(1), right.float() * 2)
    outputs = model.forward_subsets(x, full, [full], targets=target)
    if right.any():
        assert outputs[0].aux_losses["distillation"] >= 0
    assert model.forward_subsets(x, full, [full])[0].aux_losses == {}  # no labels, no distillation


def test_dream_rejects_itself_as_scorer() -> None:
    with pytest.raises(ValueError, match="cannot be DREAM"):
        create_method("dream", input_shapes=SHAPES, num_classes=10, scorer="dream")


@pytest.mark.parametrize("method", ["dream", "dream_paper"])
def test_dream_cached_scorer_predictions_equal_live_ones(method: str) -> None:
    from simmlm.data.base import TensorMultimodalDataset, make_loader

    torch.manual_seed(0)
    model = create_method(method, input_shapes=SHAPES, num_classes=10).eval()
    assert isinstance(model, DREAM)
    n = 12
    mask = torch.ones(n, 2, dtype=torch.bool)
    mask[::3, 1] = False  # some samples lack audio
    dataset = TensorMultimodalDataset(_inputs(n), mask, torch.randint(0, 10, (n,)))
    model.cache_scorer_predictions(dataset, batch_size=5)
    assert model.prediction_cache is not None and model.prediction_cache.shape == (n, 4)
    for inputs, available, target, index in make_loader(dataset, 4, shuffle=True, seed=1, with_index=True):
        torch.testing.assert_close(dataset.targets[index], target)
        image_only = torch.tensor([[True, False]] * len(target))
        with torch.no_grad():
            cached = model.forward_subsets(inputs, available, [available, image_only], target, sample_index=index)
            live = model.forward_subsets(inputs, available, [available, image_only], target)
        for a, b in zip(cached, live, strict=True):
            torch.testing.assert_close(a.logits, b.logits)
            assert a.aux_losses.keys() == b.aux_losses.keys()


def test_dream_paper_reads_no_annotation_of_what_is_missing() -> None:
    """Without annotation, the mask only says which inputs the harness zero-filled: the same zero-filled inputs
    with every modality marked present give the same output, scores included."""
    torch.manual_seed(0)
    model = create_method("dream_paper", input_shapes=SHAPES, num_classes=10).eval()
    assert isinstance(model, DREAM) and not model.annotated
    assert create_method("dream_paper", input_shapes=SHAPES, num_classes=10, annotation="mask").annotated
    mask = torch.tensor([[True, False], [False, True], [True, True], [True, False]])
    x = {k: torch.where(mask[:, m].view(-1, 1, 1, 1), v, 0.0) for m, (k, v) in enumerate(_inputs(4).items())}
    everything = torch.ones_like(mask)
    with torch.no_grad():
        torch.testing.assert_close(model(x, mask).logits, model(x, everything).logits)
        (told,), (untold,) = (
            model.contributions(x, mask, [mask], None),
            model.contributions(x, everything, [everything], None),
        )
    torch.testing.assert_close(told.pss, untold.pss)
    annotated = create_method("dream", input_shapes=SHAPES, num_classes=10).eval()
    annotated.load_state_dict(model.state_dict())
    with torch.no_grad():
        (scores,) = annotated.contributions(x, mask, [mask], None)
    assert torch.all(scores.pss[~mask] == 0)  # the mask-aware variant is told, and scores missing ones 0


def test_dream_paper_can_score_a_present_modality_zero_so_it_gets_enhanced(monkeypatch: pytest.MonkeyPatch) -> None:
    """A scorer whose prediction never changes (here: constant) gives every modality PSS 0 without annotation,
    where the mask-aware variant's "no prediction" for ∅ gives each present modality 1/|A|."""
    torch.manual_seed(0)
    x, full = _inputs(3), torch.ones(3, 2, dtype=torch.bool)
    constant = torch.zeros(3, 4, dtype=torch.long)
    for method, expected in (("dream_paper", 0.0), ("dream", 0.5)):
        model = create_method(method, input_shapes=SHAPES, num_classes=10).eval()
        monkeypatch.setattr(model, "scorer_predictions", lambda inputs, available, validate_args=True: constant)
        (scores,) = model.contributions(x, full, [full], None)
        torch.testing.assert_close(scores.pss, torch.full((3, 2), expected))


def test_dream_trains_its_scorer_with_the_scorers_own_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    """DREAM's λ = 0 must not leak into a simmlm scorer, which trains with its own λ = 0.1."""
    import simmlm.engine.train as engine
    from conftest import synthetic_splits
    from simmlm.engine.config import RunConfig

    seen: dict[str, float | None] = {}
    original = engine.train

    def recording(cfg: RunConfig, *args: object, **kwargs: object) -> object:
        seen[cfg.method] = engine.resolve_config(cfg).train.mofe_lambda
        return original(cfg, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(engine, "train", recording)
    cfg = RunConfig.model_validate(
        {
            "method": "dream",
            "model": {"expert": "mlp", "method_options": {"scorer": "simmlm"}},
            "train": {"batch_size": 16, "stage1": {"epochs": 1}, "stage2": {"epochs": 1}},
        }
    )
    engine.quiet_lightning()
    recording(cfg, synthetic_splits(24), progress=False)
    assert seen == {"dream": 0.0, "simmlm": 0.1}


@pytest.mark.parametrize("method", ["dream", "dream_paper"])
def test_dream_stacked_subsets_equal_one_subset_at_a_time(method: str) -> None:
    """forward_subsets encodes once, stacks the subsets along the batch and enhances only rows with PSS = 0: each
    subset's output must equal its own pass, and a sample's output must not depend on the rest of the batch."""
    torch.manual_seed(0)
    model = create_method(method, input_shapes=SHAPES, num_classes=10).eval()
    n = 6
    available = torch.ones(n, 2, dtype=torch.bool)
    available[::3, 1] = False
    x = {k: torch.where(available[:, m].view(-1, 1, 1, 1), v, 0.0) for m, (k, v) in enumerate(_inputs(n).items())}
    subsets = [available, torch.tensor([[True, False]] * n), torch.tensor([[False, True]] * n) & available]
    subsets[2][::3] = torch.tensor([True, False])  # keep every subset non-empty
    target = torch.randint(0, 10, (n,))
    with torch.no_grad():
        together = model.forward_subsets(x, available, subsets, target)
        for subset, out in zip(subsets, together, strict=True):
            (alone,) = model.forward_subsets(x, available, [subset], target)
            torch.testing.assert_close(out.logits, alone.logits, rtol=1e-4, atol=1e-5)
            assert out.aux_losses.keys() == alone.aux_losses.keys()
            for row in range(n):
                one = {k: v[row : row + 1] for k, v in x.items()}
                (single,) = model.forward_subsets(one, available[row : row + 1], [subset[row : row + 1]])
                torch.testing.assert_close(out.logits[row : row + 1], single.logits, rtol=1e-4, atol=1e-5)


def test_dream_warm_start_copies_the_scorers_convolutional_experts() -> None:
    torch.manual_seed(0)
    model = create_method("dream", input_shapes=SHAPES, num_classes=10, expert={"image": "lenet", "audio": "mlp"})
    assert isinstance(model, DREAM)
    assert model.warm_start() == ["image"]  # the MLP expert has no feature map to start tokens from
    for (k, v), (_, w) in zip(
        model.encoders["image"].features.state_dict().items(),  # type: ignore[union-attr]
        model.scorer.experts["image"].features.state_dict().items(),  # type: ignore[union-attr, index]
        strict=True,
    ):
        assert torch.equal(v, w), k


def test_dream_papers_scorer_reads_no_mask_either() -> None:
    """The review's finding: ``dream_paper``'s scorer was a late fusion trained with the mask, then queried with an
    all-ones mask it never saw (its logits moved by 0.17 on identical input). Its scorer now reads no mask: zero
    inputs marked present and left out are the same to it, so the all-ones query is what it was trained on."""
    from simmlm.methods.late_fusion import LateFusion, UnmarkedLateFusion

    torch.manual_seed(0)
    model = create_method("dream_paper", input_shapes=SHAPES, num_classes=10)
    assert isinstance(model, DREAM) and isinstance(model.scorer, UnmarkedLateFusion)
    assert not model.reads_annotation and not model.scorer.reads_annotation
    mask = torch.tensor([[True, False], [False, True], [True, True]])
    x = {k: torch.where(mask[:, m].view(-1, 1, 1, 1), v, 0.0) for m, (k, v) in enumerate(_inputs(3).items())}
    everything = torch.ones_like(mask)
    scorer = model.scorer.eval()
    with torch.no_grad():
        torch.testing.assert_close(scorer(x, mask).logits, scorer(x, everything).logits)
        marked = LateFusion(scorer.experts).eval()  # the former scorer: the same experts, averaged over the mask
        assert not torch.allclose(marked(x, mask).logits, marked(x, everything).logits)
    with pytest.raises(ValueError, match="scorer must train without it too: 'simmlm' cannot"):
        create_method("dream_paper", input_shapes=SHAPES, num_classes=10, scorer="simmlm")


def test_without_annotation_dream_and_its_scorer_train_on_unmarked_data() -> None:
    """Training data with missing modalities: ``dream_paper``'s scorer is exactly a late fusion without annotation
    trained on the data with every modality marked present (not the benchmark's annotated late-fusion run), and
    with ``pas_value="present"`` DREAM itself trains with the mask again (its scorer still without)."""
    from conftest import synthetic_splits
    from simmlm.data.base import Splits, TensorMultimodalDataset, without_annotation
    from simmlm.engine.config import RunConfig
    from simmlm.engine.train import quiet_lightning, train

    quiet_lightning()
    base = synthetic_splits(40)
    mask = base.train.mask.clone()
    mask[::3, 1], mask[1::3, 0] = False, False
    t = base.train
    splits = Splits(TensorMultimodalDataset(t.inputs, mask, t.targets), base.val, base.test, 3, "synthetic")
    assert not without_annotation(splits).train.mask.equal(mask) and without_annotation(splits).train.mask.all()

    def run(method: str, **options: object) -> torch.nn.Module:
        schedule = {"batch_size": 16, "stage1": {"epochs": 1}, "stage2": {"epochs": 1}}
        model = {"expert": {"a": "lenet", "b": "mlp"}, "method_options": options}
        return train(
            RunConfig.model_validate({"method": method, "model": model, "train": schedule}), splits, False
        ).model

    scorer = cast(DREAM, run("dream_paper", dim=16)).scorer
    unmarked = run("late_fusion", annotation="none").state_dict()
    assert all(torch.equal(scorer.state_dict()[k], v) for k, v in unmarked.items())
    marked = run("late_fusion").state_dict()
    assert not all(torch.equal(scorer.state_dict()[k], v) for k, v in marked.items())
    variant = cast(DREAM, run("dream_paper", dim=16, pas_value="present"))
    assert variant.reads_annotation and all(torch.equal(variant.scorer.state_dict()[k], v) for k, v in unmarked.items())


def test_pas_counts_leave_zero_filled_modalities_out_of_the_value() -> None:
    """Eq. 3 literally (``V(S) = |S|``) credits a zero-filled modality in a game without annotation; counting
    ``|S ∩ P|`` makes it a null player of PAS, and the present modality gets all of ``V``."""
    from simmlm.metrics.shapley import shapley_contributions

    targets = torch.tensor([1, 1])
    always_right = lambda mask: torch.ones(len(mask), dtype=torch.long)  # noqa: E731
    given = torch.tensor([[True, False], [True, True]])
    literal = shapley_contributions(always_right, 2, 2, targets, predict_empty=True)
    counted = shapley_contributions(always_right, 2, 2, targets, predict_empty=True, pas_counts=given)
    assert literal.pas[0, 1] > 0  # the absent modality is credited
    torch.testing.assert_close(counted.pas[0], torch.tensor([1.0, 0.0]))  # a null player
    torch.testing.assert_close(counted.pas[1], literal.pas[1])  # nothing changes where everything is given
