"""The documentation cannot rot: the site builds with no warning, and every command it shows is real.

- ``mkdocs build --strict`` on ``mkdocs.yml``: a broken link, a missing anchor or a page left out
  of the navigation is an error (``validation:`` in ``mkdocs.yml`` makes them warnings, and
  ``--strict`` turns warnings into a failed build; a test checks that it does).
- Every ``headsurgeon COMMAND ...`` line of a fenced code block in ``README.md`` and
  ``docs/*.md`` parses with the CLI's own click objects (command, options, choices, required
  options); inline code naming a command checks its option names; every ``python
  benchmarks/NAME.py --option`` names an option of that script.
- Every option of every command appears on ``docs/commands.md``.
- ``README.md``'s relative links point at files that exist, and at headings that exist.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from unittest import mock

import click
import pytest
from markdown.extensions.toc import slugify

from headsurgeon.cli import main

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
#: other tools' options that docs show in inline code (torchrun, accelerate)
OTHER_TOOLS = {"--nproc-per-node", "--master-addr", "--num-processes"}
_FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.S | re.M)
_INLINE = re.compile(r"`([^`\n]+)`")
_OPTION = re.compile(r"(?<![\w-])(--?[A-Za-z][\w-]*)")
_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def _mkdocs(config: Path, site: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    cmd = [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config), "-d", str(site)]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=config.parent)


def test_the_site_builds_strict_with_no_warning(tmp_path):
    """What CI builds: any warning (broken link, missing anchor, page not in nav) fails."""
    done = _mkdocs(ROOT / "mkdocs.yml", tmp_path / "site")
    warnings = [line for line in done.stderr.splitlines() if "WARNING" in line]
    assert done.returncode == 0 and not warnings, done.stderr
    assert (tmp_path / "site" / "index.html").exists()


def test_a_broken_link_anchor_or_orphan_page_fails_the_build(tmp_path):
    """The strict build is strict: each kind of rot is one warning, and the build fails."""
    shutil.copy(ROOT / "mkdocs.yml", tmp_path / "mkdocs.yml")
    shutil.copytree(ROOT / "docs", tmp_path / "docs")
    page = tmp_path / "docs" / "data.md"
    page.write_text(
        page.read_text(encoding="utf-8") + "\n[a](gate.md#no-such-heading) [b](no-such-page.md)\n",
        encoding="utf-8",
    )
    (tmp_path / "docs" / "orphan.md").write_text("# Not in the nav\n", encoding="utf-8")
    done = _mkdocs(tmp_path / "mkdocs.yml", tmp_path / "site")
    assert done.returncode != 0
    assert "'gate.md#no-such-heading'" in done.stderr and "'no-such-page.md'" in done.stderr
    assert "orphan.md" in done.stderr


# --- the commands the pages show ----------------------------------------------------------------


def _outside_fences(text: str) -> str:
    return _FENCE.sub("", text)


def _shell_lines(text: str):
    """Logical lines of every fenced block (backslash continuations joined)."""
    for block in _FENCE.findall(text):
        yield from block.replace("\\\n", " ").splitlines()


def _segments(line: str) -> list[list[str]]:
    """The simple commands of one shell line (split at pipes, ``&&``, ``;``, redirections)."""
    try:
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        tokens = list(lexer)
    except ValueError:  # not shell (an output line with an unbalanced quote)
        return []
    segments, current = [], []
    for token in tokens:
        if set(token) <= set("|&;<>()"):
            segments.append(current)
            current = []
        else:
            current.append(token)
    segments.append(current)
    return [s for s in segments if s]


def _headsurgeon_args(segment: list[str]) -> list[str] | None:
    """The arguments after ``headsurgeon`` (also ``python -m headsurgeon``, ``torchrun ... -m
    headsurgeon``), or ``None`` when the segment runs something else."""
    if segment[0] == "headsurgeon":
        return segment[1:]
    for i in range(1, len(segment)):
        if segment[i] == "headsurgeon" and segment[i - 1] == "-m":
            return segment[i + 1 :]
    return None


def _benchmark(segment: list[str]) -> tuple[Path, list[str]] | None:
    """``(script, arguments)`` of a ``python benchmarks/NAME.py ...`` segment."""
    for i, token in enumerate(segment):
        if re.fullmatch(r"benchmarks/\w+\.py", token) and i and segment[i - 1] == "python":
            return ROOT / token, segment[i + 1 :]
    return None


def _script_options(script: Path) -> set[str]:
    source = script.read_text(encoding="utf-8")
    return set(re.findall(r"add_argument\(\s*\"(-[\w-]+)\"", source)) | {"-h", "--help"}


def _split_command(args: list[str]) -> tuple[str, list[str]]:
    """``(command, its arguments)``; global options may stand before the command."""
    group = {o for p in main.params for o in (*p.opts, *p.secondary_opts)}
    rest = list(args)
    while rest and rest[0].startswith("-"):
        assert rest[0] in group, f"no global option {rest[0]!r}"
        rest.pop(0)
    assert rest, "no command"
    return rest[0], rest[1:]


def _parse(args: list[str]) -> None:
    """Parse a documented command line with the CLI's click objects (nothing runs)."""
    name, rest = _split_command(args)
    command = main.commands.get(name)
    assert command is not None, f"no command {name!r}; commands: {sorted(main.commands)}"
    with mock.patch.dict(os.environ):  # --debug/-v callbacks set environment variables
        try:
            command.make_context(name, list(rest))
        except click.exceptions.Exit:  # --help
            pass
        except click.UsageError as e:
            raise AssertionError(e.format_message()) from None


def _command_options(name: str) -> set[str]:
    params = main.commands[name].params
    return {o for p in params for o in (*p.opts, *p.secondary_opts)} | {"-h", "--help"}


def _fenced_invocations():
    """``(page, line, kind, args)`` for every headsurgeon or benchmark command in code blocks."""
    for page in PAGES:
        for line in _shell_lines(page.read_text(encoding="utf-8")):
            for segment in _segments(line):
                args = _headsurgeon_args(segment)
                if args is not None:
                    yield page, line, "headsurgeon", args
                elif (bench := _benchmark(segment)) is not None:
                    yield page, line, bench[0], bench[1]


def test_every_command_in_a_code_block_parses():
    seen = 0
    for page, line, kind, args in _fenced_invocations():
        where = f"{page.relative_to(ROOT)}: {line.strip()}"
        if kind == "headsurgeon":
            try:
                _parse(args)
            except AssertionError as e:
                raise AssertionError(f"{where}\n  {e}") from None
        else:
            unknown = [a for a in args if a.startswith("-") and a not in _script_options(kind)]
            assert not unknown, f"{where}\n  {kind.name} has no option {unknown}"
        seen += 1
    assert seen > 40  # the pages do show commands: the parser found them


def _inline_spans():
    for page in PAGES:
        for span in _INLINE.findall(_outside_fences(page.read_text(encoding="utf-8"))):
            yield page, span


def _check_inline(span: str, known: set[str]) -> str | None:
    """What is wrong with one inline code span that names a command or options, or ``None``."""
    words = span.split()
    if words[0] == "headsurgeon" and len(words) > 1:
        words = words[1:]
        while words and words[0].startswith("-"):
            words = words[1:]
        if words and words[0] not in main.commands and not words[0].startswith("..."):
            return f"no command {words[0]!r}"
    if words and words[0] in main.commands:
        options = _OPTION.findall(" ".join(words[1:]))
        missing = [o for o in options if o not in _command_options(words[0])]
        return f"{words[0]} has no option {missing}" if missing else None
    if words and words[0].startswith("--"):
        missing = [o for o in _OPTION.findall(span) if o.startswith("--") and o not in known]
        return f"no command has option {missing}" if missing else None
    return None


def test_every_command_and_option_in_inline_code_exists():
    known = set(OTHER_TOOLS)
    known |= {o for p in main.params for o in p.opts}
    for name in main.commands:
        known |= _command_options(name)
    for script in (ROOT / "benchmarks").glob("*.py"):
        known |= _script_options(script)
    wrong = [
        f"{page.relative_to(ROOT)}: `{span}`: {problem}"
        for page, span in _inline_spans()
        if (problem := _check_inline(span, known))
    ]
    assert not wrong, "\n".join(wrong)


def test_the_commands_page_names_every_command_and_option():
    page = (ROOT / "docs" / "commands.md").read_text(encoding="utf-8")
    missing = []
    for name, command in sorted(main.commands.items()):
        if not re.search(rf"^## {re.escape(name)}$", page, re.M):
            missing.append(f"## {name}")
        for param in command.params:
            names = (*param.opts, *param.secondary_opts)
            if isinstance(param, click.Option) and not any(
                re.search(rf"(?<![\w-]){re.escape(o)}(?![\w-])", page) for o in names
            ):
                missing.append(f"{name} {'/'.join(names)}")
    assert not missing, f"document in docs/commands.md: {missing}"


# --- README's links --------------------------------------------------------------------------


def _anchors(page: Path) -> set[str]:
    text = _outside_fences(page.read_text(encoding="utf-8"))
    headings = re.findall(r"^#{1,6} (.+?)\s*$", text, re.M)
    return {slugify(re.sub(r"[`*]", "", h), "-") for h in headings}


def test_readme_links_resolve():
    readme = ROOT / "README.md"
    broken = []
    for target in _LINK.findall(_outside_fences(readme.read_text(encoding="utf-8"))):
        if re.match(r"[a-z]+://|mailto:", target):
            continue
        path, _, anchor = target.partition("#")
        file = (readme.parent / path) if path else readme
        if not file.exists():
            broken.append(target)
        elif anchor and file.suffix == ".md" and anchor not in _anchors(file):
            broken.append(target)
    assert not broken, f"README.md links to what does not exist: {broken}"


@pytest.mark.parametrize(
    "bad",
    [
        "headsurgeon train grown/ --data new.csv --replay replay.csv -o tuned/ --no-such-option",
        "headsurgeon add-label model/ --name x --init sideways",
        "headsurgeon train grown/ --data new.csv",  # -o is required
        "headsurgeon graft model/",
    ],
)
def test_a_made_up_command_or_option_is_caught(bad):
    """The parser the page test uses refuses what the CLI would refuse."""
    (segment,) = _segments(bad)
    with pytest.raises(AssertionError):
        _parse(_headsurgeon_args(segment))
