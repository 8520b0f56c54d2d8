"""The ``headsurgeon`` group: error mapping, rendering and the options commands share.

Each command parses its options, calls one API function and renders the result as text or, with
``--json``, as one JSON document on stdout. Errors are mapped to messages and exit codes in one
place (:class:`_Group`): 0 ok, 1 headsurgeon error, 2 usage, 3 old-label check failed.
Heavy libraries are imported inside the commands, so ``--help`` answers fast.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys

import click

from .. import __version__
from ..checks import DEFAULT_MAX_DROP as _MAX_DROP
from ..data import AUDIO_COLUMN, IMAGE_COLUMN, LABEL_SEP
from ..errors import HeadSurgeonError, OptionsError
from ..tasks.multilabel.gate import DEFAULT_MAX_DROP as _MULTI_MAX_DROP
from ..tasks.token.gate import DEFAULT_MAX_DROP as _ENTITY_MAX_DROP

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_GATE = 0, 1, 2, 3


#: environment that keeps transformers' loading bars and warnings out of one-line results
_QUIET_ENV = {"HF_HUB_DISABLE_PROGRESS_BARS": "1", "TRANSFORMERS_VERBOSITY": "error"}


def _configure_output(obj: dict) -> None:
    """Apply ``--debug`` / ``-v`` (from before or after the subcommand): logs, bars, warnings."""
    if obj["debug"] or obj["verbose"]:
        for key in obj.pop("quieted", []):  # undo what a bare group set before the flag came
            os.environ.pop(key, None)
        level = logging.DEBUG if obj["debug"] else logging.INFO
        logging.basicConfig(level=level, format="%(message)s", stream=sys.stderr)
        logging.getLogger().setLevel(level)
        return
    # transformers' "Loading weights"/"Writing model shards" bars and warnings are noise
    # around one-line results; training progress bars are the Trainer's own and stay.
    for key, value in _QUIET_ENV.items():
        if key not in os.environ:
            os.environ[key] = value
            obj.setdefault("quieted", []).append(key)


def _flag_after_command(key: str):
    def callback(ctx: click.Context, _param, value: bool) -> None:
        if value:
            root = ctx.find_root()
            if root.obj is None:  # a command invoked on its own, without the group
                root.obj = {"debug": False, "verbose": False, "quiet": False}
            root.obj[key] = True
            _configure_output(root.obj)

    return callback


def _output_flags() -> list[click.Option]:
    """``--debug`` and ``-v`` for a subcommand: the same flags as the group's, in either place."""
    return [
        click.Option(
            ["--debug"],
            is_flag=True,
            expose_value=False,
            callback=_flag_after_command("debug"),
            help="Show tracebacks and debug logs (also accepted before the command).",
        ),
        click.Option(
            ["-v", "--verbose"],
            is_flag=True,
            expose_value=False,
            callback=_flag_after_command("verbose"),
            help="Log progress to stderr (also accepted before the command).",
        ),
        click.Option(
            ["-q", "--quiet"],
            is_flag=True,
            expose_value=False,
            callback=_flag_after_command("quiet"),
            help="No progress on stderr (also accepted before the command).",
        ),
    ]


def progress_shown(as_json: bool) -> bool:
    """Whether this command reports its long steps' progress (not with ``--quiet`` or
    ``--json``); when it does, stderr shows it until the command ends (bars on a terminal,
    plain lines elsewhere: :func:`headsurgeon.progress.show`). stdout keeps the result alone."""
    ctx = click.get_current_context()
    if as_json or (ctx.find_root().obj or {}).get("quiet"):
        return False
    from ..progress import show

    ctx.call_on_close(show(bars=_stderr_is_terminal()))
    return True


def _stderr_is_terminal() -> bool:
    return sys.stderr.isatty()


class _Group(click.Group):
    """Turns every error into one line on stderr and an exit code (traceback with --debug).

    Every command gets ``--debug``, ``-v`` and ``-q`` too, so they work after the subcommand as
    well.
    """

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        cmd.params.extend(_output_flags())
        super().add_command(cmd, name)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except HeadSurgeonError as e:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            params = self._params_of(ctx)
            message = _named_options(str(e), params)  # `name=value` -> --flag value
            if isinstance(e, OptionsError):
                message = _as_options(message, params)
            click.echo(f"error: {message}", err=True)
            ctx.exit(e.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(130)
        except Exception as e:  # a bug or an unexpected library error: still one line
            if ctx.obj and ctx.obj.get("debug"):
                raise
            click.echo(
                f"error: unexpected {type(e).__name__}: {e} (rerun with --debug for a traceback)",
                err=True,
            )
            ctx.exit(EXIT_ERROR)

    def _params_of(self, ctx: click.Context) -> list[click.Parameter]:
        """The options of the subcommand that ran (none when it cannot be told)."""
        name = ctx.invoked_subcommand or (ctx.protected_args or [None])[0]
        command = self.get_command(ctx, name) if name else None
        return list(command.params) if command else []


def _as_options(message: str, params: list[click.Parameter]) -> str:
    """Spell the API's parameter names in ``message`` as the command's options (``max_drop`` ->
    ``--max-drop``): the library speaks Python, the CLI user typed options. Names with an
    underscore are replaced anywhere; one-word names only where the message says what they must
    be (``seeds must be ...``), so ordinary words (a holdout, the data) stay words."""
    for param in params:
        longs = [o for o in getattr(param, "opts", []) if o.startswith("--")]
        if not longs or not param.name:
            continue
        name = re.escape(param.name)
        pattern = rf"(?<![\w-]){name}(?![\w-])" if "_" in param.name else rf"^{name}(?= must )"
        message = re.sub(pattern, longs[0], message)
    return message


#: a Python parameter as library messages name it: `name` or `name=value`
_NAMED = re.compile(r"`([A-Za-z_]\w*)(?:=([^`]*))?`")


def _named_options(message: str, params: list[click.Parameter]) -> str:
    """Spell the Python parameters a library message names in backticks as the command's
    options: `` `lr` `` -> ``--lr``, `` `train_layers=0` `` -> ``--train-layers 0``,
    `` `freeze='backbone'` `` -> ``--freeze backbone``, `` `force=True` `` -> ``--force``,
    `` `calibrate=None` `` -> ``--no-calibrate``. A name the command has no option for keeps
    its Python spelling."""
    longs = {}
    for param in params:
        opts = [o for o in [*getattr(param, "opts", []), *getattr(param, "secondary_opts", [])]
                if o.startswith("--")]  # fmt: skip
        if param.name and opts:
            longs[param.name] = opts[0]
        longs.update({o[2:].replace("-", "_"): o for o in opts})

    def spell(match: re.Match) -> str:
        name, value = match.group(1), match.group(2)
        flag = longs.get(name)
        if flag is None:
            return match.group(0)
        if value is None or value == "True":
            return flag
        if value in ("False", "None"):
            return longs.get(f"no_{name}", match.group(0))
        return f"{flag} {value.strip(chr(39) + chr(34))}"

    return _NAMED.sub(spell, message)


def emit(as_json: bool, data, text: str) -> None:
    """Render a command's result: JSON document or human text."""
    click.echo(json.dumps(data, indent=2, default=str) if as_json else text)


def api_keywords(opts: dict) -> dict:
    """The API's keywords of the options commands share, popped from ``opts``: the column
    options as ``columns`` (:class:`~headsurgeon.data.Columns`), ``--max-drop`` and
    ``--max-label-drop`` as ``tolerance`` (:class:`~headsurgeon.gate.Tolerance`),
    ``--head-path`` as a list (or ``None``); the others as they are."""
    from ..data import Columns
    from ..gate import Tolerance
    from ..legacy import COLUMN_KEYWORDS

    columns = {f: opts.pop(k) for k, f in COLUMN_KEYWORDS.items() if k in opts}
    out = {"columns": Columns(**columns)} if columns else {}
    if "max_drop" in opts:
        out["tolerance"] = Tolerance(opts.pop("max_drop"), opts.pop("max_label_drop", None))
    if "head_path" in opts:
        out["head_path"] = list(opts.pop("head_path")) or None
    return {**out, **opts}


json_option = click.option(
    "--json", "as_json", is_flag=True, help="Print the result as JSON (for pipelines)."
)
max_drop_option = click.option(
    "--max-drop",
    type=float,
    default=None,
    metavar="PTS",
    help="Largest allowed drop in percentage points: of old-label accuracy "
    f"[default: {_MAX_DROP:g}]; for token classifiers, of old-type entity F1 (strict, micro) "
    f"[default: {_ENTITY_MAX_DROP:g}]; for multi-label classifiers, of old-label micro-F1 "
    f"[default: {_MULTI_MAX_DROP:g}].",
)
max_label_drop_option = click.option(
    "--max-label-drop",
    type=float,
    default=None,
    metavar="PTS",
    help="Also fail when any one old label's accuracy (its recall on the holdout; for token "
    "classifiers one old type's entity F1) drops by more than PTS points. Default: only the "
    "aggregate is checked.",
)
head_path_option = click.option(
    "--head-path",
    multiple=True,
    metavar="PATH",
    help="Dotted path of the head (e.g. classifier.out_proj); repeat for parallel heads. "
    "Default: found automatically.",
)
trust_remote_code_option = click.option(
    "--trust-remote-code",
    is_flag=True,
    default=False,
    help="Let a model whose config names its own Python code (auto_map) run that code. Off by "
    "default: such a model is refused. Only for code you have read and trust.",
)
allow_pickle_option = click.option(
    "--allow-pickle",
    is_flag=True,
    default=False,
    help="Accept pytorch_model*.bin (pickle) weights, unpickled with weights_only=True "
    "(tensors only). Only for files you trust; safetensors weights never need it.",
)
label_sep_option = click.option(
    "--label-sep",
    default=LABEL_SEP,
    show_default=True,
    help="Multi-label models: what separates the labels in one cell of the labels column "
    "(CSV/TSV; JSONL takes a list).",
)
problem_type_option = click.option(
    "--problem-type",
    type=click.Choice(["single", "multi"]),
    default=None,
    help="A text classifier saved without config problem_type: single-label (single, the "
    "default) or multi-label (multi); the output's config records it.",
)
image_column_option = click.option(
    "--image-column",
    default=IMAGE_COLUMN,
    show_default=True,
    help="Image classifiers: the column of image paths (relative to the file) in .csv/.tsv/"
    ".jsonl data files.",
)
audio_column_option = click.option(
    "--audio-column",
    default=AUDIO_COLUMN,
    show_default=True,
    help="Audio classifiers: the column of audio file paths (relative to the file) in .csv/"
    ".tsv/.jsonl data files.",
)
base_model_option = click.option(
    "--base-model",
    default=None,
    metavar="ORG/NAME",
    help="Hub id of the model this one comes from (when MODEL is a local folder): kept in "
    "headsurgeon.json and written as base_model in the model card.",
)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="headsurgeon")
@click.option("--debug", is_flag=True, help="Show tracebacks and debug logs.")
@click.option("-v", "--verbose", is_flag=True, help="Log progress to stderr.")
@click.option(
    "-q", "--quiet", is_flag=True, help="No progress on stderr (long steps report it by default)."
)
@click.pass_context
def main(ctx: click.Context, debug: bool, verbose: bool, quiet: bool) -> None:
    """Grow the label set of a trained Hugging Face classifier without losing what it knows.

    \b
    Typical flow:
      headsurgeon inspect model/                        # what head, which labels
      headsurgeon add-label model/ --name refund -o grown/
      headsurgeon train grown/ --data new.csv --replay replay.csv --holdout holdout.csv -o tuned/
      headsurgeon push tuned/ --repo org/model

    Long steps (train, check, sweep) report their progress on stderr (-q: off); stdout holds
    the result alone. Exit codes: 0 ok, 1 error (one line on stderr), 2 usage, 3 the old-label
    check failed.
    """
    ctx.obj = {"debug": debug, "verbose": verbose, "quiet": quiet}
    _configure_output(ctx.obj)
