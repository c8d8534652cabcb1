"""Data settings as pydantic models, with no torch import: what a config's ``data`` section is built from (the
dataset sections of :mod:`simmlm.datasets`), kept light so that listing the datasets (``simmlm --help``) does not
load the numerical stack. The code that acts on them is in :mod:`simmlm.data.scenarios` and
:mod:`simmlm.data.frames`."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

MissingKind = Literal["text", "image", "both"]


class DataScenario(BaseModel):
    """A robustness scenario applied to the loaded splits (``simmlm.data.scenarios``; ``simmlm robustness`` sets
    it): a share of the samples that have ``modality`` lose it (``missing``) or carry it corrupted while their mask
    still says present (``noise``, ``occlude``, ``band``, ``zeros``)."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["missing", "noise", "occlude", "band", "zeros"]
    modality: str
    fraction: float = Field(ge=0, le=1, description="share of the samples having the modality that are affected")
    severity: float = Field(
        1.0,
        ge=0,
        description="noise: std in units of the modality's training std; occlude/band: share of the area/rows",
    )
    splits: tuple[Literal["train", "val", "test"], ...] = Field(("train", "val"), description="the splits affected")
    seed: int = Field(0, ge=0, description="seed of the draws")


class WithScenario(BaseModel):
    """Classification datasets accept a robustness scenario (:class:`DataScenario`)."""

    model_config = ConfigDict(extra="forbid")

    scenario: DataScenario | None = Field(None, description="robustness scenario on the loaded splits (None: none)")


class FrameMissing(BaseModel):
    """Intra-modal missingness of sequence data (``simmlm.data.frames``): a share of frames zeroed per modality."""

    model_config = ConfigDict(extra="forbid")

    frame_missing: float = Field(0.0, ge=0, le=1, description="intra-modal: share of frames zeroed per modality")
    frame_missing_splits: tuple[Literal["train", "val", "test"], ...] = ("train", "val", "test")  # where it applies
    missing_seed: int = Field(0, ge=0, description="seed of the simulated missingness")

    def frame_ratios(self) -> dict[str, float]:
        """``frame_missing`` for the splits it applies to (the others: none)."""
        return {split: self.frame_missing for split in self.frame_missing_splits}


class MissingProtocol(BaseModel):
    """The image-text literature's missing-modality protocol (MAP, MMP): ``rate`` of the samples lose their ``kind``
    modality."""

    model_config = ConfigDict(extra="forbid")
    rate: float = Field(0.0, ge=0, le=1, description="share of samples that lose a modality (eta)")
    kind: MissingKind = Field("text", description="text, image, or both (half of the affected lose each)")
    at: Literal["train", "test", "both"] = Field("both", description="train (with validation), test, or both")
    seed: int = Field(0, description="seed of the draw (the test split's draw uses seed + 1)")
