"""``push``: publish a model folder to the Hugging Face Hub."""

from __future__ import annotations

import click

from .app import emit, json_option, main


@main.command("push")
@click.argument("model", type=click.Path(file_okay=False))
@click.option(
    "--repo",
    "repo_id",
    required=True,
    metavar="ORG/NAME",
    help="Hub repository (created if missing).",
)
@click.option(
    "--private",
    is_flag=True,
    default=None,
    help="Create the repository private (an existing one keeps its visibility).",
)
@click.option(
    "--revision",
    metavar="BRANCH",
    default=None,
    help="Commit to this branch (created from main if missing). Default: main.",
)
@click.option(
    "--pr",
    "create_pr",
    is_flag=True,
    help="Open a pull request instead of committing to the branch.",
)
@click.option(
    "-m", "--message", default=None, help="Commit message. Default: a summary of the label changes."
)
@click.option(
    "--force",
    is_flag=True,
    help="Push even though the last old-label check recorded in headsurgeon.json failed.",
)
@click.option(
    "--base-model",
    default=None,
    metavar="ORG/NAME",
    help="Hub id of the model MODEL comes from, written as base_model in the card. "
    "Default: the one headsurgeon.json records (add-label/train --base-model), or its parent "
    "when that is a Hub id.",
)
@json_option
def push(model, repo_id, private, revision, create_pr, message, force, base_model, as_json) -> None:
    """Publish MODEL to the Hugging Face Hub in one commit, with a model card (README.md).

    Uploads config.json (id2label/label2id), weights, tokenizer/processor files and
    headsurgeon.json. The token comes from HF_TOKEN or `hf auth login`; the endpoint from
    HF_ENDPOINT. Pushing an unchanged folder makes no commit.

    \b
    Examples:
      headsurgeon push grown/ --repo me/grown
      headsurgeon push grown/ --repo org/model --revision grown-labels --pr
      headsurgeon push grown/ --repo me/grown --base-model org/parent
    """
    from ..hub import push as push_model

    result = push_model(
        model,
        repo_id,
        private=private or None,
        revision=revision,
        create_pr=create_pr,
        message=message,
        force=force,
        base_model=base_model,
    )
    if not result.changed:
        text = f"no changes: {result.repo_id}@{result.revision} already has these files ({result.commit_url})"
    elif result.pr_url:
        text = f"opened pull request {result.pr_url}\ncommit {result.commit_url}"
    else:
        text = (
            f"pushed {model} to {result.repo_url} ({result.revision})\ncommit {result.commit_url}"
        )
    if result.rewritten:  # an older headsurgeon.json or config held local paths
        text += "\nlocal paths uploaded as base names (local files unchanged): "
        text += ", ".join(result.rewritten)
    emit(as_json, result.to_dict(), text)
