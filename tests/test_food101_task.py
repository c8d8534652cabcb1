"""UPMC Food-101 as a task: encoders, the embedding cache, missing titles, the protocol, fine-tuning, the CLI."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from typer.testing import CliRunner

from simmlm.cli import app
from simmlm.data.specs import MissingProtocol
from simmlm.datasets.food101 import Food101Data
from simmlm.datasets.food101 import task as food101
from simmlm.datasets.food101.loader import titles_csv
from simmlm.datasets.food101.synthetic import write_example_food101, write_tiny_bert
from simmlm.datasets.food101.task import embed_split, load_food101
from simmlm.engine.config import ConfigError, RunConfig, find_config, resolve_config
from simmlm.engine.tasks import task_for
from simmlm.engine.train import quiet_lightning, train
from simmlm.methods import create_method
from simmlm.nn.encoders import (
    HashedNgramEncoder,
    ImageEncoder,
    ImageEncoderSpec,
    TextEncoderSpec,
    ngrams,
)

SMALL = {"image_size": 16, "image_encoder": {"kind": "cnn", "width": 8}, "text_encoder": {"dim": 32, "buckets": 512}}


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIMMLM_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_example_food101(tmp_path_factory.mktemp("food") / "food101", classes=3, per_class=40, size=16)


def _data(**changes: Any) -> Food101Data:
    return Food101Data.model_validate({**SMALL, **changes})


def _rows(root: Path, split: str = "train") -> list[list[str]]:
    with titles_csv(root, split).open(newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle))


def _write_rows(root: Path, rows: list[list[str]], split: str = "train") -> None:
    with titles_csv(root, split).open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows(rows)


def _copy(example: Path, to: Path) -> Path:
    import shutil

    return Path(shutil.copytree(example, to))


def test_hashed_ngrams_are_stable_padded_and_tokenizer_free() -> None:
    assert ngrams("Apple pie!") == [
        "apple",
        "pie",
        "apple pie",
        "#<ap",
        "#app",
        "#ppl",
        "#ple",
        "#le>",
        "#<pi",
        "#pie",
        "#ie>",
    ]
    one, two = HashedNgramEncoder(TextEncoderSpec(max_tokens=8)), HashedNgramEncoder(TextEncoderSpec(max_tokens=8))
    tokens = one.tokenize(["apple pie", "a much longer title with many words in it", ""])
    torch.testing.assert_close(tokens, two.tokenize(["apple pie", "a much longer title with many words in it", ""]))
    assert tokens.shape == (3, 8) and (tokens[0, :3] > 0).all() and (tokens[0, 11:] == 0).all()
    assert (tokens[1] > 0).all() and (tokens[2] == 0).all()  # truncated to max_tokens; nothing is all padding
    torch.testing.assert_close(one(tokens), two(tokens))  # the seeded table: the same encoder in every process
    assert one(tokens)[2].abs().sum() == 0  # an all-padding row encodes to zeros


def test_image_encoder_loads_local_weights_with_clear_errors(tmp_path: Path) -> None:
    images = torch.rand(2, 3, 16, 16)
    source = ImageEncoder(ImageEncoderSpec(width=4, seed=1))
    head = {"fc.weight": torch.zeros(10, 16), "fc.bias": torch.zeros(10)}  # an ImageNet head: left out
    torch.save({"state_dict": {**source.backbone.state_dict(), **head}}, tmp_path / "w.pt")
    loaded = ImageEncoder(ImageEncoderSpec(width=4, seed=0, weights=tmp_path / "w.pt"))
    torch.testing.assert_close(loaded(images), source(images))
    assert not torch.allclose(ImageEncoder(ImageEncoderSpec(width=4, seed=0))(images), source(images))
    uint8 = (images * 255).round().to(torch.uint8)
    torch.testing.assert_close(source(uint8), source(uint8.float() / 255))
    with pytest.raises(ValueError, match=r"w.pt: weights do not fit the Sequential backbone"):
        ImageEncoder(ImageEncoderSpec(width=8, weights=tmp_path / "w.pt"))
    (tmp_path / "bad.pt").write_bytes(b"not a state dict")
    with pytest.raises(ValueError, match=r"bad.pt: not a PyTorch state-dict file"):
        ImageEncoder(ImageEncoderSpec(weights=tmp_path / "bad.pt"))
    with pytest.raises(FileNotFoundError, match=r"none.pt: weights file not found"):
        ImageEncoder(ImageEncoderSpec(weights=tmp_path / "none.pt"))


def _count_encoders(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every encoder the Food-101 task asks for, by modality."""
    calls: list[str] = []
    original = food101.encoders

    def counting(spec_json: str, modality: str) -> Any:
        calls.append(modality)
        return original(spec_json, modality)

    monkeypatch.setattr(food101, "encoders", counting)
    return calls


def test_the_cache_is_built_once_and_invalidated_by_encoder_or_data(
    example: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _copy(example, tmp_path / "d")
    calls = _count_encoders(monkeypatch)
    first = embed_split(root, "train", _data())
    assert calls and len(list((tmp_path / "cache" / "food101").glob("train-frozen-*.pt"))) == 1
    calls.clear()
    again = embed_split(root, "train", _data())
    assert calls == []  # loaded, not encoded
    torch.testing.assert_close(again["image"], first["image"])
    assert again["classes"] == first["classes"]
    embed_split(root, "train", _data(text_encoder={"dim": 16, "buckets": 512}))  # another encoder
    assert "text" in calls
    calls.clear()
    rows = _rows(root)
    rows[0][1] = "a brand new title"
    _write_rows(root, rows)  # another title
    embed_split(root, "train", _data())
    assert calls
    calls.clear()
    image = next((root / "images" / "train").rglob("*.jpg"))
    stat = image.stat()
    os.utime(image, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # an image touched (rewritten)
    embed_split(root, "train", _data())
    assert calls
    assert len(list((tmp_path / "cache" / "food101").glob("train-frozen-*.pt"))) == 4


def test_a_missing_title_never_reaches_the_text_encoder(
    example: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _copy(example, tmp_path / "d")
    rows = _rows(root)
    rows[1][1] = ""
    _write_rows(root, rows[1:])  # rows[0]'s image has no CSV row now: an image-only sample
    seen: list[str] = []
    original = HashedNgramEncoder.tokenize
    monkeypatch.setattr(HashedNgramEncoder, "tokenize", lambda self, texts: seen.extend(texts) or original(self, texts))
    blob = embed_split(root, "train", _data())
    assert len(seen) == len(rows) - 2 and "" not in seen  # neither the image-only sample nor the empty title
    classes = blob["classes"]
    assert len(classes) == len(rows)
    absent = ~blob["present"][:, 1]
    assert int(absent.sum()) == 2 and blob["present"][:, 0].all()
    assert blob["text"][absent].abs().sum() == 0


def test_missing_protocol_at_train_or_test_is_drawn_and_described(example: Path) -> None:
    clean = load_food101(_data(), example)
    assert clean.train.mask.all() and clean.test.mask.all()
    at_train = load_food101(_data(missing={"rate": 0.5, "kind": "text", "at": "train"}), example)
    train_val = torch.cat([at_train.train.mask, at_train.val.mask])
    assert int((~train_val[:, 1]).sum()) == 60 and train_val[:, 0].all()  # half of 120 train+val titles
    assert at_train.test.mask.all()
    assert "missing protocol: 50% text missing in training and validation (seed 0)" in at_train.description
    both = load_food101(_data(missing={"rate": 0.5, "kind": "both", "at": "test"}), example)
    assert both.train.mask.all() and int((~both.test.mask).sum()) == 20  # 39 test samples: 20 lose one each
    assert both.test.mask.any(1).all()
    assert both.test.inputs["image"][~both.test.mask[:, 0]].abs().sum() == 0  # absent content is zeros
    with pytest.raises(ValueError, match="rate"):
        MissingProtocol(rate=1.5)


def _config(root: Path, method: str = "simmlm", **data: Any) -> RunConfig:
    raw = yaml.safe_load(find_config("food101").read_text())
    raw["method"] = method
    raw["data"] = {**raw["data"], **SMALL, "data_dir": str(root), **data}
    raw["train"] = {**raw["train"], "stage1": {"epochs": 8}, "stage2": {"epochs": 4}, "min_steps": 0}
    return resolve_config(RunConfig.model_validate(raw))


def _accuracies(cfg: RunConfig) -> dict[str, tuple[float, int]]:
    quiet_lightning()
    task = task_for(cfg)
    splits = task.load_splits()
    result = train(cfg, splits, progress=False)
    report, _ = task.report(result.model, splits.test, splits.modalities)
    return {name: (v["accuracy"], v["samples"]) for name, v in report["subsets"].items()}


def test_missing_rates_move_the_results_in_the_expected_direction(example: Path) -> None:
    clean = _accuracies(_config(example, "late_fusion"))
    scarce = _accuracies(_config(example, "late_fusion", missing={"rate": 0.9, "kind": "text", "at": "train"}))
    assert scarce["text"][0] < clean["text"][0] - 0.1  # a text expert trained on a tenth of the titles
    assert scarce["image"] == clean["image"]  # images untouched: the same image expert
    at_test = _accuracies(_config(example, "late_fusion", missing={"rate": 0.9, "kind": "text", "at": "test"}))
    assert at_test["text"][1] == at_test["image+text"][1] == 4  # 10 % of 39 test samples keep their title
    assert at_test["image"] == clean["image"]


def test_the_gate_over_features_runs_each_expert_once() -> None:
    model = create_method(
        "simmlm", input_shapes={"image": (12,), "text": (6,)}, num_classes=3, expert="mlp", gate_on="features"
    )
    calls = {"image": 0, "text": 0}
    for name, expert in model.experts.items():
        expert.register_forward_pre_hook(lambda *_, name=name: calls.__setitem__(name, calls[name] + 1))
        expert.net[1].register_forward_pre_hook(lambda *_, name=name: calls.__setitem__(name, calls[name] + 1))
    inputs = {"image": torch.randn(5, 12), "text": torch.randn(5, 6)}
    mask = torch.tensor([[1, 1], [1, 0], [1, 1], [1, 1], [1, 1]], dtype=torch.bool)
    image_only = mask & torch.tensor([True, False])
    outs = model.forward_subsets(inputs, mask, [mask, image_only])
    assert calls == {"image": 1, "text": 1}  # encode once for experts and gate, no forward() at all
    full = model(inputs, mask)
    torch.testing.assert_close(outs[0].logits, full.logits)
    torch.testing.assert_close(outs[1].logits, model(inputs, image_only).logits)
    assert full.gate_weights[1, 1] == 0 and (full.gate_weights[[0, 2, 3, 4]] > 0).all()
    full.logits.sum().backward()
    assert model.gate.encoders["text"].net[1].weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match=r"gate_on: features needs experts with features"):
        create_method("simmlm", input_shapes={"image": (1, 16, 16)}, num_classes=3, expert="lenet", gate_on="features")


def test_finetuning_trains_the_encoders_inside_the_experts(example: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="needs model.gate_on: features"):
        _config(example, mode="finetune").data.experts(_config(example).model.model_copy(update={"gate_on": "inputs"}))
    cfg = _config(example, mode="finetune")
    splits = task_for(cfg).load_splits()
    assert splits.train.inputs["image"].dtype == torch.uint8 and splits.train.inputs["text"].dtype == torch.long
    out = CliRunner().invoke(
        app,
        ["train", "--config", "food101", "--data-dir", str(example), "--out", str(tmp_path / "run")]
        + [f"--set=data.{k}={v}" for k, v in (("mode", "finetune"), ("image_size", 16), ("image_encoder.width", 8))]
        + ["--set=train.stage1.epochs=2", "--set=train.stage2.epochs=1", "--set=train.min_steps=0"],
    )
    assert out.exit_code == 0, out.output
    state = torch.load(tmp_path / "run" / "model.pt", weights_only=True)["state_dict"]
    assert any(key.startswith("experts.image.encoder.backbone") for key in state)  # the encoder is in the model
    image = next((example / "images" / "test").rglob("*.jpg"))
    result = CliRunner().invoke(
        app, ["predict", str(tmp_path / "run"), "-i", f"image={image}", "--text", "pie", "--json"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["modalities"] == ["image", "text"]


def test_fine_tuning_reads_the_images_from_a_file_a_batch_at_a_time(example: Path, tmp_path: Path) -> None:
    """The splits hold no pixels: a batch reads its rows from the cache's .npy (zeros where an image is missing)."""
    import pickle

    from simmlm.data.rows import RowFile, write_rows

    cfg = _config(example, mode="finetune")
    splits = task_for(cfg).load_splits()
    images = splits.train.inputs["image"]
    assert isinstance(images, RowFile) and images.path.suffix == ".npy" and images.dtype == torch.uint8
    assert len(pickle.dumps(splits.train)) < 100_000  # paths and row numbers, not 3 x S x S bytes per sample
    inputs, mask, _ = splits.train[list(range(len(splits.train)))]
    assert inputs["image"].shape == (len(splits.train), 3, 16, 16) and inputs["image"].dtype == torch.uint8
    assert (inputs["image"][~mask[:, 0]] == 0).all() and (inputs["image"][mask[:, 0]].flatten(1).amax(1) > 0).all()
    one, _, _ = splits.train[3]
    assert torch.equal(one["image"], inputs["image"][3])
    rows = write_rows(tmp_path / "r.npy", 5, [([1, 3], torch.ones(2, 2, 2))], (2, 2), np.dtype(np.float32))
    assert rows[[0, 1, 3]].sum((1, 2)).tolist() == [0.0, 4.0, 4.0] and rows.take([3, 1])[0].sum() == 4
    assert pickle.loads(pickle.dumps(rows))[1].sum() == 4


def test_mmp_and_dream_fine_tune_on_the_encoders(example: Path, tmp_path: Path) -> None:
    """MMP's and DREAM's tokens stand on the same image and text encoders; DREAM's start from its scorer's."""
    out = tmp_path / "bench"
    sets = [f"--set=data.{k}={v}" for k, v in (("mode", "finetune"), ("image_size", 16), ("image_encoder.width", 8))]
    sets += ["--set=train.stage1.epochs=2", "--set=train.stage2.epochs=1", "--set=train.min_steps=0"]
    sets += ["--set=model.method_options={dim: 8, heads: 2}"]
    args = ["benchmark", "food101", "--data-dir", str(example), "--methods", "mmp,dream", "--seeds", "0"]
    result = CliRunner().invoke(app, [*args, "--out", str(out), *sets])
    assert result.exit_code == 0, result.output
    for method in ("mmp", "dream"):
        state = torch.load(out / "runs" / f"{method}-seed0" / "model.pt", weights_only=True)["state_dict"]
        assert any(k.startswith("encoders.image.features.backbone") for k in state), method
        assert any(k.startswith("encoders.text.features") for k in state), method
    metrics = json.loads((out / "runs" / "dream-seed0" / "metrics.json").read_text())
    assert metrics["selected"]["encoders_from_scorer"] == ["image", "text"]  # started from the scorer's encoders


def test_config_errors_name_the_key(example: Path) -> None:
    with pytest.raises((ConfigError, ValueError), match="missing"):
        RunConfig.model_validate({"data": {"dataset": "food101", "missing": {"rate": 2}}})
    with pytest.raises((ConfigError, ValueError), match="image_encoder"):
        RunConfig.model_validate({"data": {"dataset": "food101", "image_encoder": {"kind": "vgg"}}})


def test_example_data_benchmark_and_predict_end_to_end(tmp_path: Path) -> None:
    runner = CliRunner()
    root = tmp_path / "food"
    result = runner.invoke(app, ["example-data", str(root), "--layout", "food101", "--classes", "3", "--samples", "30"])
    assert result.exit_code == 0, result.output
    assert "simmlm benchmark food101" in result.output and (root / "texts" / "train_titles.csv").is_file()
    out = tmp_path / "bench"
    settings = ["--set=data.image_size=16", "--set=train.stage1.epochs=4", "--set=train.stage2.epochs=2"]
    settings += ["--set=train.min_steps=0", "--set=data.image_encoder.width=8"]
    result = runner.invoke(
        app,
        ["benchmark", "food101", "--data-dir", str(root), "--methods", "simmlm,dmome,late_fusion,mmp", "--seeds", "0"]
        + ["--out", str(out), *settings],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["methods"]) == {"simmlm", "dmome", "late_fusion", "mmp"}
    for method in summary["methods"].values():
        assert set(method["subsets"]) == {"image", "text", "image+text"}
    assert "frozen encoders: image cnn at 16 px, text hashed" in summary["protocol"]
    assert runner.invoke(app, ["report", str(out)]).exit_code == 0
    run = out / "runs" / "simmlm-seed0"
    result = runner.invoke(app, ["predict", str(run), "--text", "my favourite apple pie recipe", "--json"])
    assert result.exit_code == 0, result.output
    answer = json.loads(result.output)
    assert answer["modalities"] == ["text"] and answer["gate_weights"] == {"image": 0.0, "text": 1.0}
    result = runner.invoke(app, ["predict", str(run), "--text", "   "])
    assert result.exit_code != 0 and "the title is empty" in result.output


def test_a_huggingface_encoder_from_a_local_folder(
    example: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from simmlm.nn.encoders import HFTextEncoder

    pytest.importorskip("transformers")
    bert = write_tiny_bert(tmp_path / "bert", [row[1] for row in _rows(example)])
    encoder = HFTextEncoder(TextEncoderSpec(kind="huggingface", path=bert, max_tokens=12, pooling="mean"))
    tokens = encoder.tokenize(["apple pie recipe", "unknownword"])
    assert tokens.shape == (2, 2, 12) and tokens[1, 1].sum() == 3  # [CLS] [UNK] [SEP]
    assert (tokens[0, 0, 1:4] > 4).all()  # the example's words are in the vocabulary (ids above the specials)
    assert encoder(tokens).shape == (2, 32)
    seen: list[str] = []
    original = HFTextEncoder.tokenize
    monkeypatch.setattr(HFTextEncoder, "tokenize", lambda self, texts: seen.extend(texts) or original(self, texts))
    root = _copy(example, tmp_path / "d")
    rows = _rows(root)
    rows[0][1] = ""
    _write_rows(root, rows)
    text = {"kind": "huggingface", "path": str(bert), "max_tokens": 12, "pooling": "mean"}
    accuracies = _accuracies(_config(root, "simmlm", text_encoder=text))
    assert len(seen) == len(rows) - 1 + len(_rows(root, "test")) and "" not in seen  # the empty title: never
    assert accuracies["text"][0] > 0.5  # 3 classes: a random frozen BERT's mean tokens still carry the dish words
    with pytest.raises(FileNotFoundError, match="needs path: a local model folder"):
        HFTextEncoder(TextEncoderSpec(kind="huggingface", path=tmp_path / "nowhere"))


def test_example_data_can_write_a_tiny_bert(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    root = tmp_path / "food"
    args = ["example-data", str(root), "--layout", "food101", "--classes", "2", "--samples", "4", "--tiny-bert"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert (root / "tiny-bert" / "config.json").is_file() and (root / "tiny-bert" / "vocab.txt").is_file()
    assert f"--set data.text_encoder.path={root / 'tiny-bert'}" in result.output
