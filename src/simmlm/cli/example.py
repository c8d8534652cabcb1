"""``simmlm example-data``: small learnable datasets in every layout simmlm reads; ``simmlm convert-features``: a
MulT / MMSA feature pickle as a ``.npz`` that needs no unpickling (both registered on :data:`simmlm.cli.app`)."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Annotated

import typer

from simmlm.cli.common import fail
from simmlm.datasets import get_dataset, list_datasets

#: Datasets whose example is their registered example writer's (the others above have writers with options).
_REGISTERED = [name for name in list_datasets() if name not in ("folder", "food101", "seqfeatures")]


def _registered_example(name: str, directory: Path) -> None:
    """``directory`` filled by dataset ``name``'s example writer (:mod:`simmlm.datasets`), and the command to run."""
    import json

    from simmlm.fileio import check_new_folder, new_folder

    try:
        check_new_folder(directory)
        with new_folder(directory) as tmp:  # an interrupted writer leaves nothing half written
            example = get_dataset(name).example(tmp)  # type: ignore[misc]
    except (ValueError, OSError, ImportError) as err:
        raise fail(err) from err
    sets = {**{f"data.{k}": v for k, v in example.data.items()}, **example.config}
    options = "".join(f" --set '{key}={json.dumps(value)}'" for key, value in sets.items())
    typer.echo(f"wrote {directory} (a small synthetic {name} in its real layout); next:")
    typer.echo(f"  simmlm benchmark {name} --data-dir {directory}{options}")


def example_data(
    directory: Annotated[Path, typer.Argument(help="New folder to write (must not exist, or be empty).")],
    modalities: Annotated[int, typer.Option(help="Number of modalities (image + sensors), at least 2.")] = 3,
    samples: Annotated[
        int | None,
        typer.Option(
            help="Number of samples (60/20/20 % train/val/test) (default: 600); food101: training pairs per class "
            "(default: 100)."
        ),
    ] = None,
    classes: Annotated[int, typer.Option(help="Number of classes.")] = 4,
    missing: Annotated[float, typer.Option(help="Probability that a modality is missing from a sample.")] = 0.25,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    layout: Annotated[
        str,
        typer.Option(
            help="folder (manifest.csv + .npy files), mmsa (MulT / MMSA feature pickles of text, audio and vision "
            "sequences with sentiment scores, and with IEMOCAP's four emotions; --modalities, --classes and --missing "
            "do not apply), food101 (JPEG "
            "images and titles in the UPMC Food-101 layout; --classes, --samples per class and --seed apply), or "
            f"{', '.join(_REGISTERED)} (a small synthetic stand-in in the dataset's real layout; no option applies)."
        ),
    ] = "folder",
    tiny_bert: Annotated[
        bool,
        typer.Option(help="food101: also write DIR/tiny-bert, a random 2-layer BERT (needs simmlm[text])."),
    ] = False,
) -> None:
    """Write a small synthetic dataset in the folder layout (manifest.csv + .npy files, some modalities missing), a
    sentiment feature pickle in the MulT / MMSA layout (--layout mmsa), or image-title pairs in the UPMC Food-101
    layout (--layout food101)."""
    from simmlm.datasets.folder.synthetic import write_example_dataset
    from simmlm.datasets.food101.synthetic import write_example_food101
    from simmlm.datasets.seqfeatures.synthetic import write_example_emotions, write_example_sequences

    if layout in _REGISTERED:
        _registered_example(layout, directory)
        return
    if layout not in ("folder", "mmsa", "food101"):
        choices = ", ".join(("folder", "mmsa", "food101", *_REGISTERED))
        raise fail(ValueError(f"--layout must be one of {choices}, got {layout!r}"))
    try:
        if layout == "food101":
            per_class = 100 if samples is None else samples
            write_example_food101(directory, classes, per_class, seed=seed)
            typer.echo(f"wrote {directory} ({classes} classes, {per_class} training pairs each, 32 px); next:")
            command = f"  simmlm benchmark food101 --data-dir {directory} --set data.image_size=32"
            typer.echo(f"{command} --methods simmlm,dmome,late_fusion,mmp")
            if tiny_bert:
                from simmlm.datasets.food101.loader import read_food101
                from simmlm.datasets.food101.synthetic import write_tiny_bert

                titles = [item.title for item in read_food101(directory, "train") if item.title]
                bert = write_tiny_bert(directory / "tiny-bert", titles, seed)
                typer.echo(f"wrote {bert} (a random BERT over the example's words); with it as the text encoder:")
                typer.echo(f"{command} --set data.text_encoder.kind=huggingface --set data.text_encoder.path={bert}")
            return
        samples = 600 if samples is None else samples
        if layout == "mmsa":
            path = write_example_sequences(directory, samples, seed)
            emotions = write_example_emotions(directory, samples, seed)
        else:
            write_example_dataset(directory, modalities, samples, classes, missing, seed)
    except (ValueError, ImportError) as err:
        raise fail(err) from err
    if layout == "mmsa":
        typer.echo(f"wrote {path} ({samples} samples: text, audio, vision sequences, sentiment scores); next:")
        typer.echo(f"  simmlm data seqfeatures --data-dir {directory} --set data.file={path.name}")
        typer.echo("  (the score itself: add --set data.task=regression)")
        typer.echo(f"wrote {emotions} (the same sequences with IEMOCAP's four emotions, MulT's labels); next:")
        emotions_file = f"--set data.file={emotions.name} --set data.task=emotions4"
        typer.echo(f"  simmlm data seqfeatures --data-dir {directory} {emotions_file}")
        return
    typer.echo(f"wrote {directory} ({samples} samples, {modalities} modalities); next:")
    typer.echo(f"  simmlm data folder --data-dir {directory}")


def convert_features(
    source: Annotated[Path, typer.Argument(help="A MulT / MMSA feature pickle (.pkl).")],
    target: Annotated[Path | None, typer.Argument(help="The .npz to write (default: SOURCE with .npz).")] = None,
) -> None:
    """Write a MulT / MMSA feature pickle as a .npz (one array per SPLIT/KEY) that simmlm reads without unpickling.

    The pickle itself is read by the restricted unpickler (only dicts, lists, strings, numbers and NumPy arrays;
    anything else is refused before it runs). Entries that are not plain arrays are left out and named.
    """
    from simmlm.data.feature_files import RefusedPickle, convert_feature_pickle

    target = source.with_suffix(".npz") if target is None else target
    if target.suffix.lower() != ".npz" or target.resolve() == source.resolve():
        raise fail(ValueError(f"the target must be a .npz file other than the source, got {target}"))
    try:
        left_out = convert_feature_pickle(source, target)
    except RefusedPickle as err:
        raise fail(ValueError(f"refusing {source}: {err}")) from err
    except OSError as err:  # the target could not be written (named), or the source not read
        raise fail(err if str(target) in str(err) else OSError(f"cannot read {source}: {err}")) from err
    except (ValueError, EOFError, pickle.UnpicklingError) as err:
        raise fail(ValueError(f"cannot convert {source}: {type(err).__name__}: {err}")) from err
    typer.echo(f"wrote {target}" + (f" (left out, not plain arrays: {', '.join(left_out)})" if left_out else ""))
    typer.echo(f"  simmlm data seqfeatures --data-dir {target.parent} --set data.file={target.name}")
