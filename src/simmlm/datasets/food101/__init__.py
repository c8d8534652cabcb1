"""UPMC Food-101 (image + title, the SimMLM paper's image-text benchmark): the CSV layout and JPEGs are read by
:mod:`simmlm.datasets.food101.loader`; the frozen encoders' embedding cache, the missing-rate protocol and
predict's reader are in :mod:`simmlm.datasets.food101.task`; the example writer in
:mod:`simmlm.datasets.food101.synthetic`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from simmlm.data.specs import MissingProtocol
from simmlm.datasets.registry import (
    DATA_DIR_FIELD,
    DataSection,
    DatasetSpec,
    Example,
    classification_task,
    register_dataset,
)
from simmlm.nn.specs import ImageEncoderSpec, TextEncoderSpec

if TYPE_CHECKING:
    from torch import Tensor

    from simmlm.data.base import Splits

MODALITIES = ("image", "text")


class Food101Data(DataSection):
    """UPMC Food-101 (:mod:`~simmlm.datasets.food101.task`): images and titles, frozen encoders, the missing-rate
    protocol."""

    dataset: Literal["food101"] = "food101"
    data_dir: Path | None = DATA_DIR_FIELD
    image_size: int = Field(224, ge=8, description="images are resized (shorter side) and centre-cropped to this")
    val_fraction: float = Field(0.1, gt=0, lt=1, description="share of each training class kept for validation")
    split_seed: int = Field(0, description="seed of the validation split and of max_per_class")
    max_per_class: int | None = Field(None, ge=2, description="use at most this many samples per class and split")
    allow_missing_images: bool = Field(False, description="keep CSV rows whose image file is absent (text only)")
    image_encoder: ImageEncoderSpec = ImageEncoderSpec()
    text_encoder: TextEncoderSpec = TextEncoderSpec()
    missing: MissingProtocol = MissingProtocol()
    mode: Literal["frozen", "finetune"] = Field(
        "frozen",
        description="frozen: experts over cached encoder features; finetune: the encoders are part of the experts "
        "(raw uint8 images decoded once to a file and read a batch at a time; needs model.gate_on: features)",
    )
    encode_batch: int = Field(64, ge=1, description="images / titles per encoder call while caching")

    def experts(self, model: Any) -> tuple[str | dict[str, str], dict[str, Any]]:
        """The experts for ``model`` (a ``ModelConfig``): as configured when frozen; fine-tuning, each modality's
        :class:`~simmlm.nn.encoders.EncoderExpert` on this section's encoder, with the configured head options."""
        from simmlm.nn.experts import expert_options_for

        if self.mode == "frozen":
            return model.expert, model.expert_options
        if model.gate_on != "features":
            raise ValueError("data.mode finetune needs model.gate_on: features (the gate reads the encoders' features)")
        specs = {"image": self.image_encoder, "text": self.text_encoder}
        options = {
            name: {**expert_options_for(name, list(MODALITIES), model.expert_options), "encoder": spec.model_dump()}
            for name, spec in specs.items()
        }
        return {"image": "image_encoder", "text": "text_encoder"}, options


def load(data: Food101Data) -> Splits:
    from simmlm.datasets.food101.task import load_food101
    from simmlm.engine.tasks import resolve_data_dir

    return load_food101(data, resolve_data_dir(data.data_dir))


def read(name: str, value: Path | str, preprocessing: dict[str, Any]) -> Tensor:
    from simmlm.datasets.food101.task import read_input

    return read_input(name, value, preprocessing)


def example(directory: Path) -> Example:
    """Coloured shapes with dish titles in the real layout
    (:func:`~simmlm.datasets.food101.synthetic.write_example_food101`), small encoders."""
    from simmlm.datasets.food101.synthetic import write_example_food101

    write_example_food101(directory, classes=3, per_class=12, size=16, seed=0)
    image = sorted((directory / "images" / "test").rglob("*.jpg"))[0]
    return Example(
        data={"image_size": 16, "image_encoder": {"width": 4}, "text_encoder": {"dim": 16, "buckets": 256}},
        inputs={"image": image, "text": f"a plate of {image.parent.name.replace('_', ' ')}"},
    )


SPEC = register_dataset(
    DatasetSpec(
        name="food101",
        config=Food101Data,
        task=classification_task(load, read),
        summary="UPMC Food-101 images and titles",
        folder="the UPMC Food-101 CSVs and images/ (`simmlm example-data --layout food101` writes a small one)",
        example=example,
    )
)
