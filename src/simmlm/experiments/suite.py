"""What ``simmlm robustness`` runs: the suite's config (scenarios, severities, variants of simmlm) and its plan of
training conditions (cells) and test conditions; :mod:`simmlm.experiments.robustness` trains and evaluates them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError

from simmlm.data.augment import AugmentSpec
from simmlm.data.base import Splits
from simmlm.datasets.registry import StrictModel
from simmlm.fileio import read_yaml

Kind = Literal["noise", "occlude", "band", "zeros"]


class TestCorruption(StrictModel):
    """Scenario 2: one kind of corruption at several severities (``zeros``: the share of test samples affected)."""

    kind: Kind
    modalities: list[str] | None = Field(None, description="None: every modality (occlude, band: those of 2-D content)")
    severities: list[float] = Field(min_length=1)


class TrainingMissing(StrictModel):
    """Scenario 1: shares of the training and validation samples that lack ``modality``."""

    modality: str | None = Field(None, description="None: the dataset's first modality")
    fractions: list[Annotated[float, Field(ge=0.0, le=1.0)]] = Field(description="[]: no such training cell")


class TrainingCorruption(StrictModel):
    """Scenario 3: shares of the training and validation samples whose modality is corrupted, marked present, one
    cell per modality and share."""

    modalities: list[str] | None = Field(None, description="None: every modality in turn")
    fractions: list[Annotated[float, Field(ge=0.0, le=1.0)]] = Field(description="[]: no such training cell")
    kind: Kind = "noise"
    severity: float = Field(2.0, ge=0)


class Variant(StrictModel):
    """A named variant of simmlm: its method options and its stage 2's augmentation of every modality. It trains
    stage 2 only, from simmlm's stage-1 experts of the same seed and cell."""

    method_options: dict[str, Any] = Field(default_factory=dict)
    stage2_augment: AugmentSpec | None = Field(None, description="stage 2's augmentation of every modality")


#: The reliability-aware gate of issue 29: it reads each expert's reliability signals, and stage 2 shows it
#: corrupted inputs marked present (noise up to 2 standard deviations, some zeroed, in 30 % of the samples).
RELIABLE = Variant(method_options={"reliability": True}, stage2_augment=AugmentSpec(kind="corrupt"))


#: Settings of a suite that change its evaluation only, not what it trains.
EVALUATION_ONLY = ("references", "bootstrap_draws")


class SuiteConfig(StrictModel):
    """What ``simmlm robustness`` runs (``--suite FILE`` gives another YAML of these keys)."""

    train_missing: TrainingMissing = TrainingMissing(fractions=[0.5, 0.9])
    train_corruption: TrainingCorruption = TrainingCorruption(fractions=[0.5])
    test_corruptions: list[TestCorruption] = [
        TestCorruption(kind="noise", severities=[0.5, 1.0, 2.0]),
        TestCorruption(kind="occlude", severities=[0.25, 0.5]),
        TestCorruption(kind="band", severities=[0.25, 0.5]),
        TestCorruption(kind="zeros", severities=[0.5, 1.0]),
    ]
    lambdas: list[float] = Field(
        [],
        description="MoFe lambdas of simmlm_val: simmlm with the lambda chosen per seed on validation ([]: none)",
    )
    variants: dict[str, Variant] = Field(
        {"simmlm_reliable": RELIABLE},
        description="named variants of simmlm trained beside the methods (stage 2 only, from simmlm's stage 1)",
    )
    references: list[str] = Field(
        ["simmlm", "simmlm_reliable"],
        description="methods or variants every other is compared with, those that ran (evaluation only: a new "
        "list re-evaluates finished cells without training them again)",
    )
    bootstrap_draws: int = Field(1000, ge=10)
    seed: int = Field(0, ge=0, description="seed of every scenario draw")


def load_suite(path: Path | None) -> SuiteConfig:
    """The suite of a YAML file (``None``: the defaults); a clear error for a bad key."""
    if path is None:
        return SuiteConfig()
    raw = read_yaml(path) or {}
    try:
        return SuiteConfig.model_validate(raw)
    except ValidationError as err:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors())
        raise ValueError(f"invalid robustness suite {path}: {problems}") from None


@dataclass(frozen=True)
class Condition:
    """A test condition: the scenario and severity it belongs to, and the test-set corruption (None: clean)."""

    scenario: str
    severity: float
    corruption: tuple[str, Kind, float, float] | None = None  # modality, kind, severity, fraction


@dataclass
class Cell:
    """One training condition: the benchmark it trains and the test conditions of its models."""

    name: str
    title: str
    scenario: dict[str, Any] | None
    conditions: list[Condition] = field(default_factory=list)


CLEAN = "clean"


def variant_settings(variant: Variant, modalities: Sequence[str]) -> dict[str, Any]:
    """The run-config settings of a variant of simmlm."""
    settings: dict[str, Any] = {"model.method_options": variant.method_options}
    if variant.stage2_augment is not None:
        spec = variant.stage2_augment.model_dump(mode="json")
        settings["train.stage2.augment"] = {m: spec for m in modalities}
    return settings


def _spatial(shape: Sequence[int]) -> bool:
    return len([s for s in shape if s > 1]) >= 2


def plan(suite: SuiteConfig, splits: Splits) -> list[Cell]:
    """The cells of the suite in training order, clean first, each with its test conditions."""
    modalities = splits.modalities
    shapes = {m: tuple(x.shape[1:]) for m, x in splits.train.inputs.items()}
    named = [suite.train_missing.modality, *(suite.train_corruption.modalities or [])]
    for name in named + [m for c in suite.test_corruptions for m in c.modalities or []]:
        if name is not None and name not in modalities:
            raise ValueError(f"the suite names modality {name!r}; this dataset has {', '.join(modalities)}")
    clean = Cell(CLEAN, "clean training data", None, [Condition(CLEAN, 0.0)])
    for c in suite.test_corruptions:
        spatial_only = c.kind in ("occlude", "band")
        for m in c.modalities or [m for m in modalities if _spatial(shapes[m]) or not spatial_only]:
            for s in c.severities:
                severity, fraction = (1.0, s) if c.kind == "zeros" else (s, 1.0)
                clean.conditions.append(Condition(f"test {c.kind}: {m}", s, (m, c.kind, severity, fraction)))
    miss = suite.train_missing
    m_miss = miss.modality or modalities[0]
    cells = [clean]
    for p in miss.fractions:
        scenario = {"kind": "missing", "modality": m_miss, "fraction": p, "seed": suite.seed}
        cells.append(
            Cell(
                f"train-missing-{m_miss}-{p:g}",
                f"{p:.0%} of training samples lack {m_miss}",
                scenario,
                [Condition(f"train missing: {m_miss}", p)],
            )
        )
    cor = suite.train_corruption
    for m_cor in (cor.modalities or modalities) if cor.fractions else []:
        base = f"train {cor.kind} {cor.severity:g}: {m_cor}"
        spec: tuple[str, Kind, float, float] = (m_cor, cor.kind, cor.severity, 1.0)
        clean.conditions.append(Condition(f"{base}, corrupted test", 0.0, spec))
        for f in cor.fractions:
            scenario = {
                "kind": cor.kind,
                "modality": m_cor,
                "fraction": f,
                "severity": cor.severity,
                "seed": suite.seed,
            }
            cells.append(
                Cell(
                    f"train-{cor.kind}-{m_cor}-{f:g}",
                    f"{f:.0%} of training samples with {cor.kind} on {m_cor}",
                    scenario,
                    [Condition(f"{base}, clean test", f), Condition(f"{base}, corrupted test", f, spec)],
                )
            )
    return cells
