"""``inspect``, ``add-label``, ``remove-label``, ``rename-label``: label surgery on a model folder."""

from __future__ import annotations

import click

from .app import (
    allow_pickle_option,
    base_model_option,
    emit,
    head_path_option,
    json_option,
    main,
    trust_remote_code_option,
)


@main.command()
@click.argument("model", type=click.Path(file_okay=False))
@trust_remote_code_option
@json_option
def inspect(model: str, trust_remote_code: bool, as_json: bool) -> None:
    """Show MODEL's architecture, task, head path(s), head shape, dtype and labels.

    For a token classifier (NER) the task line also names the tagging scheme (BIO, BIOES,
    BILOU, IO) and the entity types; for a model saved with a problem type (e.g.
    multi_label_classification) it names it. The commands line says which commands the
    model's task supports (surgery, diff and push for every model; train, check and sweep for
    single-label text, image and audio classifiers, multi-label text classifiers and token
    classifiers).

    Reads config.json and the safetensors headers only (no weights, no torch): fast on any
    size. When the headers leave the head ambiguous, the architecture is built on the meta
    device and the head line says [shape-probe].

    \b
    Examples:
      headsurgeon inspect model/
      headsurgeon inspect model/ --json      # labels, head path and shape as JSON
    """
    from ..checkpoint import inspect_checkpoint

    info = inspect_checkpoint(model, trust_remote_code=trust_remote_code)
    head = info["head"]
    labels = ", ".join(f"{i}:{n}" for i, n in enumerate(info["labels"]))
    task = info["task"].replace("-", " ")
    if "scheme" in info and info["scheme"]:
        task += f", scheme: {info['scheme']}, entity types: {', '.join(info['entity_types'])}"
    elif "scheme" in info:
        task += ", scheme: none recognised"
    if info.get("problem_type"):
        task += f", problem type: {info['problem_type']}"
        if "train" not in info["commands"]:
            task += " (train, check and sweep refuse it)"
    emit(
        as_json,
        info,
        (
            f"architecture: {info['architecture']} ({info['model_type']})\n"
            f"task:         {task}\n"
            f"commands:     {', '.join(info['commands'])}\n"
            f"head:         {', '.join(head['paths'])}  Linear({head['in_features']} -> {head['out_features']}, "
            f"bias={head['bias']})  dtype {head['dtype']}  [{head['method']}]\n"
            f"labels ({info['num_labels']}): {labels}"
        ),
    )


link_option = click.option(
    "--link",
    is_flag=True,
    default=False,
    help="With -o: hard-link the unchanged files (tokenizer, untouched shards) into the new folder "
    "instead of copying them: instant and no extra disk, but both folders then share those "
    "files' bytes. headsurgeon never writes into an existing file (it writes a new one and "
    "renames it), but a tool that edits a file in place would change both. A read-only file is "
    "copied instead (a link shares its mode). Default: copy at kernel speed (a reflink where the "
    "filesystem supports it). In place, unchanged files are always kept as they are.",
)


@main.command("add-label")
@click.argument("model", type=click.Path(file_okay=False))
@click.option(
    "--name",
    "names",
    multiple=True,
    required=True,
    help="New label name; repeat for several. On a token classifier (NER) an entity type "
    "(PRODUCT) adds all its tags in the model's scheme (B-PRODUCT, I-PRODUCT for BIO); a tag "
    "(B-PRODUCT) adds itself.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(file_okay=False),
    help="Write a new model folder here "
    "(MODEL is not touched; tokenizer/processor files are carried over; new folder and files get "
    "ordinary modes). Default: update MODEL in place (refused when MODEL is write-protected).",
)
@click.option(
    "--init",
    type=click.Choice(["mean", "zeros", "normal"]),
    default=None,
    help="How new rows start: mean of the old rows (default), zeros, or normal(0, initializer_range).",
)
@click.option(
    "--bias",
    type=click.Choice(["mean", "min", "zeros"]),
    default=None,
    help="How new biases start: mean (default) or min of the old biases, or zero.",
)
@click.option("--seed", type=int, default=None, help="Seed for --init normal.")
@head_path_option
@link_option
@allow_pickle_option
@trust_remote_code_option
@base_model_option
@json_option
def add_label(
    model,
    names,
    output,
    init,
    bias,
    seed,
    head_path,
    link,
    allow_pickle,
    trust_remote_code,
    base_model,
    as_json,
) -> None:
    """Append new labels to MODEL's classifier head, keeping every old weight bit-identical.

    Safetensors checkpoints are streamed: only the head is read and only the shard holding it is
    rewritten; the result replaces MODEL (or appears as -o) in one atomic step.

    \b
    Examples:
      headsurgeon add-label model/ --name lost_or_stolen_card -o grown/
      headsurgeon add-label model/ --name a --name b            # in place
      headsurgeon add-label ner/ --name PRODUCT -o grown/       # B-PRODUCT, I-PRODUCT
    """
    from ..checkpoint import add_labels_to_checkpoint

    result = add_labels_to_checkpoint(
        model,
        list(names),
        output,
        init=init,
        bias=bias,
        head_path=list(head_path) or None,
        seed=seed,
        link=link,
        allow_pickle=allow_pickle,
        trust_remote_code=trust_remote_code,
        base_model=base_model,
    )
    where = output or model
    emit(
        as_json,
        {"output": str(where), **result.to_dict()},
        (
            f"added {', '.join(result.added)} to {', '.join(result.head.paths)} "
            f"({len(result.labels_before)} -> {len(result.labels_after)} labels, init {result.init}); wrote {where}"
        ),
    )


@main.command("remove-label")
@click.argument("model", type=click.Path(file_okay=False))
@click.argument("names", nargs=-1, required=True)
@click.option(
    "-o",
    "--output",
    type=click.Path(file_okay=False),
    help="Write a new model folder here (MODEL untouched). Default: update MODEL in place, "
    "atomically (refused when MODEL is write-protected).",
)
@head_path_option
@link_option
@allow_pickle_option
@trust_remote_code_option
@click.option(
    "--force",
    is_flag=True,
    default=False,
    help="On a token classifier, remove tags even when that breaks its tagging scheme (O, or "
    "B-X without I-X), with a warning. Default: refused; remove a whole entity type by its name.",
)
@json_option
def remove_label(
    model, names, output, head_path, link, allow_pickle, trust_remote_code, force, as_json
) -> None:
    """Drop the labels NAMES from MODEL's head; the others are re-numbered densely, order kept.

    On a token classifier (NER) an entity type (PER) stands for all its tags (B-PER, I-PER).
    Removing O, or one tag of a type while its other tags stay, would leave tags that follow no
    scheme: refused unless --force.

    \b
    Examples:
      headsurgeon remove-label model/ obsolete_intent -o smaller/
      headsurgeon remove-label ner/ MISC                # B-MISC and I-MISC
    """
    from ..checkpoint import remove_labels_from_checkpoint

    result = remove_labels_from_checkpoint(
        model,
        list(names),
        output,
        head_path=list(head_path) or None,
        link=link,
        allow_pickle=allow_pickle,
        trust_remote_code=trust_remote_code,
        force=force,
    )
    where = output or model
    emit(
        as_json,
        {"output": str(where), **result.to_dict()},
        f"removed {', '.join(result.removed)} from {', '.join(result.head.paths)} "
        f"({len(result.labels_before)} -> {len(result.labels_after)} labels); wrote {where}",
    )


@main.command("rename-label")
@click.argument("model", type=click.Path(file_okay=False))
@click.argument("old")
@click.argument("new")
@click.option(
    "-o",
    "--output",
    type=click.Path(file_okay=False),
    help="Write a new model folder here (MODEL untouched). Default: update MODEL in place, "
    "atomically (refused when MODEL is write-protected).",
)
@link_option
@json_option
def rename_label(model, old, new, output, link, as_json) -> None:
    """Rename label OLD to NEW in MODEL's config (same id; no weight is read or written).

    On a token classifier (NER) OLD may be an entity type: every tag of it is renamed
    (B-PER -> B-PERSON, I-PER -> I-PERSON).

    \b
    Examples:
      headsurgeon rename-label model/ card_lost lost_or_stolen_card
      headsurgeon rename-label ner/ PER PERSON
    """
    from ..checkpoint import rename_label_in_checkpoint
    from ..tasks.token.schemes import tags_of_type

    labels = rename_label_in_checkpoint(model, old, new, output, link=link)
    where = output or model
    if new in labels:
        ids = f"id {labels.index(new)}"
    else:  # an entity type: its tags
        ids = "ids " + ", ".join(f"{labels.index(t)}:{t}" for t in tags_of_type(labels, new))
    emit(
        as_json,
        {"output": str(where), "old": old, "new": new, "labels_after": labels},
        f"renamed {old} -> {new} ({ids}); wrote {where}",
    )
