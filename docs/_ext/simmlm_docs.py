"""Pages generated from the code at build time: the datasets (from the registry) and the config reference (from the
pydantic models), so neither can drift from what simmlm accepts."""

from __future__ import annotations

import types
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined
from sphinx.application import Sphinx

GENERATED = "_generated"


def _type(annotation: Any) -> str:
    """A short readable name of a field's type."""
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return " \\| ".join(repr(a) for a in typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        return " \\| ".join(_type(a) for a in typing.get_args(annotation))
    if origin is typing.Annotated:
        return _type(typing.get_args(annotation)[0])
    if origin is not None:
        args = ", ".join(_type(a) for a in typing.get_args(annotation))
        return f"{getattr(origin, '__name__', str(origin))}[{args}]"
    if annotation is type(None):
        return "None"
    return getattr(annotation, "__name__", str(annotation).replace("typing.", ""))


def _default(field: Any) -> str:
    if field.default_factory is not None:
        value = field.default_factory()
    elif field.default is PydanticUndefined:
        return "required"
    else:
        value = field.default
    return f"`{value!r}`" if not isinstance(value, BaseModel) else "(section)"


def _submodels(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for a in typing.get_args(annotation) for m in _submodels(a)]


def model_table(model: type[BaseModel], prefix: str) -> list[str]:
    """Markdown: one table of ``model``'s keys, then one per nested section."""
    doc = (model.__doc__ or "").strip().split("\n\n")[0].replace("\n", " ")
    lines = [f"### `{prefix}`", "", doc, "", "| key | type | default | meaning |", "|---|---|---|---|"]
    nested: list[tuple[str, type[BaseModel]]] = []
    for name, field in model.model_fields.items():
        subs = _submodels(field.annotation)
        meaning = (field.description or "").replace("|", "\\|").replace("\n", " ")
        lines.append(f"| `{name}` | {_type(field.annotation)} | {_default(field)} | {meaning} |")
        nested += [(f"{prefix}.{name}", s) for s in subs if s is not model]
    lines.append("")
    for sub_prefix, sub in nested:
        lines += model_table(sub, sub_prefix)
    return lines


def config_reference() -> str:
    from simmlm.datasets import get_dataset, list_datasets
    from simmlm.engine.config import RunConfig

    lines = [
        "# Config reference",
        "",
        "Generated from the pydantic models when the docs are built. A run config is YAML with these sections;",
        "an unknown key or a wrong type is an error (with a \"did you mean\"), and `--set KEY=VALUE` overrides any",
        "key on the command line. The `data:` section is the one of the dataset named by `data.dataset`.",
        "",
        "## Run, model and training",
        "",
    ]
    fields = RunConfig.model_fields
    lines.append("| section | holds |")
    lines.append("|---|---|")
    for name, field in fields.items():
        lines.append(f"| `{name}` | {field.description or _type(field.annotation)} |")
    lines.append("")
    for name, field in fields.items():
        if name == "data":
            continue
        for sub in _submodels(field.annotation):
            lines += model_table(sub, name)
    lines += ["## The `data:` section of each dataset", ""]
    for dataset in list_datasets():
        lines += model_table(get_dataset(dataset).config, f"data ({dataset})")
    return "\n".join(lines)


def _cell(text: Any) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def cli_reference() -> str:
    """Markdown: every ``simmlm`` command with its usage, its help and a table of its arguments and options."""
    import typer

    from simmlm.cli import app

    group = typer.main.get_command(app)
    root = group.context_class(group, info_name="simmlm")
    lines = [
        "# Command-line reference",
        "",
        "Generated from the `simmlm` command itself (its typer app) when the docs are built; `simmlm COMMAND --help`",
        "prints the same. [The commands](../getting-started/commands.md) gives examples.",
        "",
    ]
    for name in group.list_commands(root):
        command = group.get_command(root, name)
        if command is None or command.hidden:
            continue
        ctx = command.context_class(command, info_name=name, parent=root)
        lines += [f"## `simmlm {name}`", "", "```text", command.get_usage(ctx), "```", ""]
        lines += [(command.help or "").strip(), "", "| argument or option | type | default | meaning |", "|---|---|---|---|"]
        for param in command.params:
            if getattr(param, "hidden", False):
                continue
            names = ", ".join(f"`{o}`" for o in [*param.opts, *param.secondary_opts])
            if param.param_type_name == "argument":
                names = f"`{(param.name or '').upper()}`"
            kind = "flag" if getattr(param, "is_flag", False) else _type(param.type_descriptor.annotation)
            default = "required" if param.required else ("" if param.default in (None, ()) else f"`{param.default}`")
            lines.append(f"| {names} | {kind} | {_cell(default)} | {_cell(getattr(param, 'help', '') or '')} |")
        lines.append("")
    return "\n".join(lines)


def dataset_page(name: str) -> str:
    from simmlm.datasets import get_dataset

    spec = get_dataset(name)
    narrative = Path(__file__).parents[1] / "datasets" / f"{name}.md"
    lines = [
        f"# `{name}`",
        "",
        f"{spec.summary[0].upper()}{spec.summary[1:]}. A {spec.kind} dataset.",
        "",
        f"- **Its folder** (`--data-dir`): {spec.folder}.",
        f"- **Download**: {'`simmlm download ' + name + '`' if spec.download else 'no public home that simmlm fetches from'}.",
        f"- **Example data**: {'`simmlm example-data DIR --layout ' + name + '`' if spec.example else 'none'}"
        f"{' (`simmlm example-data DIR` writes a folder dataset)' if name == 'folder' else ''}.",
        f"- **Its `data:` section**: [config reference](../config.md), `data ({name})`.",
        "",
    ]
    if narrative.exists():
        lines += ["```{include} ../../datasets/" + f"{name}.md", ":heading-offset: 1", "```", ""]
    return "\n".join(lines)


def generate(app: Sphinx) -> None:
    """Write the generated pages into ``docs/_generated`` (not committed) before Sphinx reads the sources."""
    from simmlm.datasets import get_dataset, list_datasets

    root = Path(app.srcdir) / GENERATED
    (root / "datasets").mkdir(parents=True, exist_ok=True)
    pages = {"config.md": config_reference(), "cli.md": cli_reference()}
    index = [
        "# Datasets",
        "",
        "Every dataset simmlm knows, from its registry (`simmlm.datasets`). Adding one is one module plus one import",
        "line: [Adding a dataset](../contributing/adding-a-dataset.md).",
        "",
        "| dataset | kind | what it is |",
        "|---|---|---|",
    ]
    for name in list_datasets():
        spec = get_dataset(name)
        index.append(f"| [`{name}`](datasets/{name}.md) | {spec.kind} | {spec.summary} |")
        pages[f"datasets/{name}.md"] = dataset_page(name)
    index += ["", "```{toctree}", ":hidden:", "", *(f"datasets/{n}" for n in list_datasets()), "```", ""]
    pages["datasets.md"] = "\n".join(index)
    for rel, text in pages.items():
        path = root / rel
        if not path.exists() or path.read_text() != text:  # unchanged pages keep their time: no needless rebuilds
            path.write_text(text)


def setup(app: Sphinx) -> dict[str, Any]:
    app.connect("builder-inited", generate)
    return {"parallel_read_safe": True, "version": "1"}
