"""`simmlm predict`: files -> prediction with the preprocessing stored in the checkpoint, and clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
import soundfile
import torch
from typer.testing import CliRunner

from simmlm.cli import app
from simmlm.engine.config import RunConfig
from simmlm.engine.runs import build_model, save_checkpoint
from test_end_to_end import DATA_DIR, needs_data

SHAPES = {"image": (1, 28, 28), "audio": (1, 20, 20)}
PREPROCESSING = {"dataset": "avmnist", "audio_scaling": "standardize", "mean": [0.0] * 20, "std": [50.0] * 20}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    cfg = RunConfig()
    model = build_model(cfg, SHAPES, 10)
    out = tmp_path_factory.mktemp("run")
    save_checkpoint(
        out / "model.pt",
        model,
        cfg,
        input_shapes={k: list(v) for k, v in SHAPES.items()},
        num_classes=10,
        modalities=["image", "audio"],
        preprocessing=PREPROCESSING,
    )
    return out


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("inputs")
    digit = np.zeros((28, 28), dtype=np.uint8)
    digit[6:22, 13:16] = 255
    matplotlib.image.imsave(folder / "one.png", digit, cmap="gray", vmin=0, vmax=255)
    np.save(folder / "one.npy", digit)
    t = np.arange(4000) / 8000
    soundfile.write(folder / "tone.wav", (0.3 * np.sin(2 * np.pi * 300 * t)).astype(np.float32), 8000)
    (folder / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    matplotlib.image.imsave(folder / "big.png", np.zeros((32, 32)), cmap="gray")
    np.save(folder / "nan.npy", np.full((20, 20), np.nan))
    return {p.name: p for p in folder.iterdir()}


def _predict(run_dir: Path, *inputs: str) -> tuple[int, str]:
    args = ["predict", str(run_dir), "--json"]
    for item in inputs:
        args += ["--input", item]
    result = CliRunner().invoke(app, args)
    return result.exit_code, result.output


def test_predict_any_subset_gives_probabilities_gate_weights_and_entropy(run_dir: Path, files: dict) -> None:
    code, output = _predict(run_dir, f"image={files['one.png']}", f"audio={files['tone.wav']}")
    assert code == 0, output
    result = json.loads(output)
    assert result["modalities"] == ["image", "audio"]
    assert sum(result["probabilities"]) == pytest.approx(1.0, abs=1e-4)
    assert result["prediction"] == int(np.argmax(result["probabilities"]))
    assert sum(result["gate_weights"].values()) == pytest.approx(1.0, abs=1e-5)
    assert 0.0 <= result["entropy"] <= result["max_entropy"]
    # Shapley contributions to the predicted class's probability sum to it minus chance (1/K)
    best = max(result["probabilities"])
    assert sum(result["shapley"].values()) == pytest.approx(best - 0.1, abs=1e-5)
    image_only = json.loads(_predict(run_dir, f"image={files['one.png']}")[1])
    p_image = image_only["probabilities"][result["prediction"]]
    # with two modalities: phi_image = ((p(image) - 1/K) + (p(both) - p(audio))) / 2, so p(image) is in it
    assert result["shapley"]["image"] - result["shapley"]["audio"] == pytest.approx(
        p_image - json.loads(_predict(run_dir, f"audio={files['tone.wav']}")[1])["probabilities"][result["prediction"]],
        abs=1e-5,
    )

    code, output = _predict(run_dir, f"image={files['one.png']}")
    assert code == 0, output
    assert json.loads(output)["gate_weights"] == {"image": 1.0, "audio": 0.0}
    own = max(image_only["probabilities"])  # alone, the value is the probability of what the image predicts
    assert json.loads(output)["shapley"] == {"image": pytest.approx(own - 0.1, abs=1e-5)}


def test_png_and_npy_images_give_the_same_prediction(run_dir: Path, files: dict) -> None:
    png = json.loads(_predict(run_dir, f"image={files['one.png']}")[1])
    npy = json.loads(_predict(run_dir, f"image={files['one.npy']}")[1])
    np.testing.assert_allclose(png["probabilities"], npy["probabilities"], atol=1e-5)


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("audio={broken.wav}", "cannot read WAV"),
        ("image={big.png}", "must be 28x28"),
        ("audio={nan.npy}", "NaN or infinite"),
        ("text={one.png}", "unknown modality"),
        ("image=/no/such/file.png", "does not exist"),
        ("image", "expects MODALITY=FILE"),
        ("image={tone.wav}", "must be .png or .npy"),
    ],
)
def test_bad_inputs_give_one_clear_error(run_dir: Path, files: dict, item: str, message: str) -> None:
    code, output = _predict(run_dir, _fill(item, files))
    assert code == 2
    assert message in output


def _fill(item: str, files: dict) -> str:
    for name, path in files.items():
        item = item.replace("{" + name + "}", str(path))
    return item


@pytest.mark.slow
@needs_data
def test_predict_preprocessing_matches_training(tmp_path: Path) -> None:
    from simmlm.datasets.avmnist.input import read_input as read_avmnist_input
    from simmlm.datasets.avmnist.loader import load_arrays, load_avmnist

    splits = load_avmnist(DATA_DIR)
    first_test = int(np.flatnonzero(load_arrays(DATA_DIR)["is_test"])[0])  # 0_jackson_0.wav
    wav = DATA_DIR / "avmnist" / "fsdd" / "recordings" / "0_jackson_0.wav"
    audio = read_avmnist_input("audio", wav, splits.preprocessing)
    torch.testing.assert_close(audio, splits.test.inputs["audio"][0], rtol=0, atol=0)
    png = tmp_path / "image.png"
    grey = load_arrays(DATA_DIR)["image"][first_test]
    matplotlib.image.imsave(png, np.stack([grey] * 3, axis=-1))  # uint8 RGB: stored exactly, no colormap
    image = read_avmnist_input("image", png, splits.preprocessing)
    torch.testing.assert_close(image, splits.test.inputs["image"][0], rtol=0, atol=1e-5)
    # the sequence layout reads the same files as [T, D]: image rows, audio frames
    seq = load_avmnist(DATA_DIR, layout="sequences")
    torch.testing.assert_close(read_avmnist_input("audio", wav, seq.preprocessing), seq.test.inputs["audio"][0])
    torch.testing.assert_close(read_avmnist_input("image", png, seq.preprocessing), seq.test.inputs["image"][0])


def test_core_and_predict_do_not_import_lightning(run_dir: Path, files: dict[str, Path]) -> None:
    """The core is plain PyTorch, and `simmlm predict` on a saved run needs no Lightning (a fresh interpreter)."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "import simmlm.methods, simmlm.losses, simmlm.metrics, simmlm.data, simmlm.subsets, simmlm.engine.config\n"
        "import simmlm.evaluation.evaluate, simmlm.evaluation.inferers, simmlm.evaluation.predict\n"
        "assert 'lightning' not in sys.modules, 'importing the core loaded lightning'\n"
        "from simmlm.engine.runs import load_run, predict_files\n"
        "assert 'lightning' not in sys.modules, 'importing the run folders (load_run, predict) loaded lightning'\n"
        "from typer.testing import CliRunner\n"
        "from simmlm.cli import app\n"
        f"result = CliRunner().invoke(app, ['predict', {str(run_dir)!r}, '--input', 'image={files['one.png']}'])\n"
        "assert result.exit_code == 0, result.output\n"
        "assert 'lightning' not in sys.modules, 'simmlm predict loaded lightning'\n"
        "assert 'pytorch_lightning' not in sys.modules\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


@pytest.mark.parametrize("damage", ["random bytes", "truncated", "a pickle that runs code"])
def test_a_damaged_or_foreign_model_pt_is_one_line_without_unsafe_advice(
    run_dir: Path, files: dict, tmp_path: Path, damage: str
) -> None:
    """Before: a 60–170-line traceback, and for random bytes torch's advice to load with weights_only=False."""
    import pickle

    bad = tmp_path / "run"
    bad.mkdir()
    good = (run_dir / "model.pt").read_bytes()
    marker = tmp_path / "PWNED"
    content = {
        "random bytes": bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8)),
        "truncated": good[: len(good) // 2],
        "a pickle that runs code": pickle.dumps(type("X", (), {"__reduce__": lambda s: (marker.touch, ())})()),
    }[damage]
    (bad / "model.pt").write_bytes(content)
    code, output = _predict(bad, f"image={files['one.png']}")
    said = " ".join(output.split())
    assert code == 2 and "is not a model.pt that simmlm wrote, or it is damaged or truncated" in said
    assert "weights_only" not in said and "Traceback" not in output and not marker.exists()


def test_no_random_file_escapes_the_one_line_refusal(tmp_path: Path) -> None:
    """Random bytes made torch raise many exception types (one of them escaped as a traceback)."""
    from simmlm.engine.runs import load_checkpoint

    rng = np.random.default_rng(1)
    for k in range(40):
        path = tmp_path / f"model{k}.pt"
        head = b"PK\x03\x04" if k % 2 else b"\x80\x02"  # a zip (torch's format) or a pickle, then noise
        path.write_bytes(head + bytes(rng.integers(0, 256, int(rng.integers(1, 5000)), dtype=np.uint8)))
        with pytest.raises(ValueError, match="is not a model.pt that simmlm wrote"):
            load_checkpoint(path)
