"""Push a model folder to the Hugging Face Hub: one atomic commit with a generated model card.

Every file of the folder (``config.json`` with ``id2label``/``label2id``, the weights, the
tokenizer/processor files, ``headsurgeon.json``) and the ``README.md`` card go up in ONE
``HfApi.create_commit``: the remote gets all of them or none. The client uploads only files whose
content differs from the target revision, so pushing an unchanged folder makes no commit and the
result says ``changed=False``. The token comes from where ``huggingface_hub`` looks (``token=``,
``HF_TOKEN``, the login cache) and is never printed or logged; the endpoint from ``HF_ENDPOINT``.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import os
import re
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from . import record as _record
from .card import build_card, check_failure, check_name, label_changes, report_of
from .errors import CheckpointError, GateFailedError, HubError, OptionsError
from .labels import labels_of
from .models import read_config
from .weights import WEIGHT_PATTERNS

logger = logging.getLogger(__name__)

CARD_NAME = "README.md"
#: files of a model folder that are never uploaded (trainer state, pickled optimizer, dotfiles)
IGNORED_FILES = (
    ".*",
    "training_args.bin",
    "optimizer.pt",
    "scheduler.pt",
    "rng_state*.pth",
    "trainer_state.json",
)
DEFAULT_ENDPOINT = "https://huggingface.co"
MAX_MESSAGE = 200
#: keys of saved configs that older transformers filled with the local folder or file they came
#: from: uploaded with a Hub id or a base name instead
_PATH_KEYS = re.compile(
    r'("(_?name_or_path|tokenizer_file|special_tokens_map_file)"\s*:\s*)("(?:[^"\\]|\\.)*")'
)


@dataclass
class PushResult:
    """What a push did.

    Attributes:
        repo_id: the repository (``namespace/name``).
        repo_url: its page.
        revision: the branch pushed to (``main`` unless ``revision`` was given).
        commit_url: the new commit, or the unchanged head when nothing changed.
        commit_oid: that commit's id.
        changed: ``False`` when the remote already had exactly these files (no commit made).
        pr_url: the pull request opened with ``create_pr=True`` (``None`` otherwise).
        files: paths sent in the commit (before the client drops unchanged ones).
        deleted: stale remote weight files removed in the same commit.
        rewritten: local paths the folder's files held (an older ``headsurgeon.json``, a config
            saved with ``_name_or_path``), as ``file: field``; they were uploaded as a Hub id
            or a base name, the local files left unchanged.
    """

    repo_id: str
    repo_url: str
    revision: str
    commit_url: str
    commit_oid: str
    changed: bool
    pr_url: str | None = None
    files: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    rewritten: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def push(
    folder: str | os.PathLike,
    repo_id: str,
    *,
    private: bool | None = None,
    revision: str | None = None,
    create_pr: bool = False,
    message: str | None = None,
    token: str | None = None,
    force: bool = False,
    base_model: str | None = None,
) -> PushResult:
    """Publish the classifier saved in ``folder`` to ``repo_id`` in one commit, with a model card.

    Args:
        folder: a saved model (config, weights, preprocessor files, usually ``headsurgeon.json``).
            Top-level files only, without dotfiles and trainer state; a ``README.md`` is
            replaced by the generated card; local paths in its files go up as a Hub id or a
            base name (:func:`public_contents`). The folder is never modified.
        repo_id: ``namespace/name`` on the Hub; created (``exist_ok``) if missing.
        private: visibility of a NEW repository (``None``: the Hub's default).
        revision: branch to commit to (created from ``main`` when missing). Default ``main``.
        create_pr: open a pull request against ``revision`` instead of committing to it.
        message: commit message. Default: a summary of the label changes.
        token: overrides the token ``huggingface_hub`` would find (``HF_TOKEN``, login cache).
        force: push even when the last old-label check recorded in ``headsurgeon.json`` failed.
        base_model: the parent's Hub id for the card (default: the record's, or its parent's
            when that is a Hub id).

    Returns:
        :class:`PushResult` (commit URL, repository URL, whether anything changed, the local
        paths rewritten in the uploaded copies).

    Raises:
        CheckpointError: not a saved model. GateFailedError: the last recorded check failed
            and not ``force``. OptionsError: a bad ``repo_id`` or ``base_model``. HubError:
            authentication, network or a refused push; nothing was committed.

    Example:
        >>> push("grown/", "me/grown")            # HF_TOKEN / login cache, HF_ENDPOINT
    """
    folder = Path(folder)
    upload = _Upload.of(folder, repo_id, force, base_model, message)
    api, endpoint = _api(token)
    with _hub_errors(endpoint, repo_id, revision, token):
        repo_url, repo_id = _ensure_repo(api, repo_id, private, revision)
        head = api.repo_info(repo_id, revision=revision)
        _warn_visibility(repo_id, private, head.private)
        stale = _stale_weights(head, upload.files)
        commit = api.create_commit(
            repo_id,
            _operations(upload.files, upload.card, stale, upload.public),
            commit_message=upload.message,
            revision=revision,
            create_pr=create_pr,
        )
    changed = commit.oid != head.sha
    logger.info("push %s → %s: %s", folder, repo_id, commit.commit_url if changed else "no changes")
    return upload.result(repo_id, str(repo_url), revision or "main", commit, changed, stale)


@dataclass
class _Upload:
    """What one push sends, read and checked before the Hub is contacted: the folder's files,
    its record, the bytes sent instead of files holding local paths, and the card."""

    files: dict[str, Path]
    record: dict[str, Any] | None
    public: dict[str, bytes]
    rewritten: list[str]
    card: bytes
    message: str

    @classmethod
    def of(cls, folder: Path, repo_id: str, force: bool, base_model, message) -> _Upload:
        """Check the ids, the folder and its last recorded check, then build the upload (the
        commit message: ``message``, else :func:`default_message`).

        Raises:
            OptionsError, CheckpointError, GateFailedError: as :func:`push`.
        """
        _check_repo_id(repo_id)
        _record.set_base_model({}, base_model)  # validate before any work
        files = model_files(folder)
        record = _record.read_record(folder)
        _check_gate(folder, record, force)
        public, rewritten = public_contents(files, record)
        card = build_card(folder, repo_id, base_model=base_model).encode("utf-8")
        message = message or default_message(folder, record)
        return cls(files, record, public, rewritten, card, message)

    def result(self, repo_id, repo_url, revision, commit, changed: bool, stale) -> PushResult:
        """The :class:`PushResult` of this upload's ``commit`` (``changed``: a new one)."""
        return PushResult(
            repo_id=repo_id, repo_url=repo_url, revision=revision, commit_url=commit.commit_url,
            commit_oid=commit.oid, changed=changed, pr_url=commit.pr_url if changed else None,
            files=[*self.files, CARD_NAME], deleted=stale, rewritten=self.rewritten,
        )  # fmt: skip


def _ensure_repo(api, repo_id: str, private: bool | None, revision: str | None):
    """Create the repository (``exist_ok``) and the branch ``revision``; return (url, repo id)."""
    repo_url = api.create_repo(repo_id, private=private, exist_ok=True)
    repo_id = getattr(repo_url, "repo_id", None) or repo_id  # a bare name gets the user's namespace
    if revision and not revision.startswith("refs/"):
        api.create_branch(repo_id, branch=revision, exist_ok=True)
    return repo_url, repo_id


def _warn_visibility(repo_id: str, wanted: bool | None, actual: bool | None) -> None:
    if wanted is not None and actual is not None and wanted != actual:
        logger.warning("%s already exists with private=%s: left unchanged", repo_id, actual)


def _stale_weights(head, files: dict[str, Path]) -> list[str]:
    """Remote weight files the folder no longer has (e.g. old shards): they would shadow the new."""
    remote = {s.rfilename for s in head.siblings or []}
    return sorted(p for p in remote - set(files) if _is_weight(p))


def _operations(files: dict[str, Path], card: bytes, stale: list[str], public=None) -> list:
    """Add every file (``public``: the bytes to send instead of a file's own), the card;
    delete ``stale``."""
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete

    public = public or {}
    operations = [
        CommitOperationAdd(name, public[name] if name in public else str(path))
        for name, path in files.items()
    ]
    operations.append(CommitOperationAdd(CARD_NAME, card))
    return operations + [CommitOperationDelete(p) for p in stale]


def public_contents(
    files: dict[str, Path], record: dict[str, Any] | None
) -> tuple[dict[str, bytes], list[str]]:
    """The bytes to upload instead of the files that hold a local path, and where they did.

    A ``headsurgeon.json`` written before records kept names only holds absolute paths
    (:func:`~headsurgeon.record.public_record`); configs saved by older transformers hold
    ``_name_or_path`` and friends. Each such path becomes a Hub id or a base name in the
    uploaded copy; the local files are never modified.

    Returns:
        ``({file name: bytes to upload}, ["file: field", ...])``; empty for a clean folder.
    """
    contents: dict[str, bytes] = {}
    places: list[str] = []
    if record is not None and _record.RECORD_NAME in files:
        public, where = _record.public_record(record)
        if where:
            contents[_record.RECORD_NAME] = _record.dumps(public).encode("utf-8")
            places += [f"{_record.RECORD_NAME}: {w}" for w in where]
    for name, path in files.items():
        if name.endswith(".json") and name != _record.RECORD_NAME:
            text, where = _public_json(path)
            if where:
                contents[name] = text.encode("utf-8")
                places += [f"{name}: {w}" for w in where]
    if places:
        logger.info(
            "local paths uploaded as a Hub id or a base name (the local files are unchanged): %s",
            ", ".join(places),
        )
    return contents, places


def _public_json(path: Path) -> tuple[str, list[str]]:
    """The text of a JSON file with the path-valued keys of :data:`_PATH_KEYS` reduced to a
    Hub id (a model) or a base name, everything else byte for byte; and the keys changed."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return "", []  # not text: uploaded as it is
    where: list[str] = []

    def public(match: re.Match) -> str:
        value = json.loads(match.group(3))
        model = match.group(2).endswith("name_or_path")
        shown = _record.parent_ref(value) if model else _record.base_name(value)
        if not value or shown == value:
            return match.group(0)
        where.append(match.group(2))
        return match.group(1) + json.dumps(shown)

    return _PATH_KEYS.sub(public, text), where


def model_files(folder: str | os.PathLike) -> dict[str, Path]:
    """Return ``{path in repo: local path}`` of the files ``push`` uploads from ``folder``.

    Raises:
        CheckpointError: no ``config.json`` with labels, or no weight file.
    """
    folder = Path(folder)
    labels_of(read_config(folder))  # a classifier with named labels, or a clear error
    files = {
        p.name: p
        for p in sorted(folder.iterdir())
        if p.is_file()
        and p.name != CARD_NAME
        and not any(fnmatch.fnmatch(p.name, pat) for pat in IGNORED_FILES)
    }
    if not any(_is_weight(name) for name in files):
        raise CheckpointError(
            f"{folder} has no weights ({', '.join(WEIGHT_PATTERNS)}): "
            "save the model with save_pretrained before pushing"
        )
    skipped = [p.name for p in folder.iterdir() if p.is_dir()]
    if skipped:
        logger.info("not pushed (folders): %s", ", ".join(sorted(skipped)))
    return files


def default_message(folder: str | os.PathLike, record: dict[str, Any] | None) -> str:
    """A one-line commit message saying how the labels changed."""
    changes = label_changes(record, labels_of(read_config(folder)))
    if changes.before is None:
        return f"Upload {Path(folder).resolve().name} ({len(changes.after)} labels)"
    text = f"headsurgeon: {len(changes.before)} -> {len(changes.after)} labels"
    details = [f"+{n}" for n in changes.added] + [f"-{n}" for n in changes.removed]
    details += [f"{a}->{b}" for a, b in changes.renamed]
    if details:
        text += f" ({', '.join(details)})"
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 3] + "..."


def _is_weight(name: str) -> bool:
    return any(fnmatch.fnmatch(name, pat) for pat in WEIGHT_PATTERNS)


def _check_repo_id(repo_id: str) -> None:
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError as e:
        raise OptionsError(f"invalid --repo {repo_id!r}: expected NAMESPACE/NAME ({e})") from e


def _check_gate(folder: Path, record: dict[str, Any] | None, force: bool) -> None:
    """Refuse a model whose last recorded old-label check failed, unless ``force``."""
    check = _record.last_check(record)
    if check is None or check.get("passed") is not False:
        return
    report = report_of(check)
    why = check_failure(check)
    why = f": {why}" if why else ""
    name = check_name(check)  # old-label (accuracy) or old-type (entity F1) check
    if force:
        logger.warning("pushing although the last %s failed%s (--force)", name, why)
        return
    raise GateFailedError(
        f"refusing to push {folder}: the last {name} recorded in "
        f"{_record.RECORD_NAME} failed{why}; fix the model or pass --force to push anyway",
        report=report,
    )


def _api(token: str | None):
    """An ``HfApi`` on the endpoint ``HF_ENDPOINT`` names now (not only at import)."""
    from huggingface_hub import HfApi, constants

    from . import __version__

    endpoint = (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT or DEFAULT_ENDPOINT).rstrip("/")
    api = HfApi(
        endpoint=endpoint, token=token, library_name="headsurgeon", library_version=__version__
    )
    return api, endpoint


def _network_errors() -> tuple[type[BaseException], ...]:
    """Transport-level exception classes of whichever HTTP library the client uses."""
    found: list[type[BaseException]] = [ConnectionError, TimeoutError]
    for module, name in (("httpx2", "TransportError"), ("httpx", "TransportError")):
        try:
            found.append(getattr(__import__(module), name))
        except (ImportError, AttributeError):
            continue
    try:
        import requests

        found.append(requests.exceptions.RequestException)
    except ImportError:
        pass
    return tuple(found)


@contextmanager
def _hub_errors(endpoint: str, repo_id: str, revision: str | None, token: str | None):
    """Turn the client's errors into one-line :class:`HubError`; never mention the token value.

    The token is masked in the message; a client error whose text holds it (a server echoing
    the Authorization header) is not chained as the cause, so no traceback shows it either.
    """
    from huggingface_hub import get_token

    secret = token or get_token()
    try:
        yield
    except Exception as e:
        leaks = bool(secret) and any(secret in _text_of(x) for x in _chain(e))
        message = _hub_message(e, endpoint, repo_id, revision, bool(secret))
        if message is None and not leaks:
            raise
        if message is None:  # not a Hub error, but its text holds the token: never show it
            message = f"the push to {repo_id} at {endpoint} failed ({type(e).__name__}): {e}"
            message = message.strip().splitlines()[0]
        error = HubError(_redact(message, secret))
        if leaks:
            raise error from None
        raise error from e


def _hub_message(error, endpoint: str, repo_id: str, revision: str | None, has_token: bool):
    """The one-line message for a client error, or ``None`` for an error that is not the Hub's."""
    from huggingface_hub.errors import (
        HfHubHTTPError,
        LocalTokenNotFoundError,
        OfflineModeIsEnabled,
        RevisionNotFoundError,
    )

    if isinstance(error, OfflineModeIsEnabled):
        return "HF_HUB_OFFLINE is set, so the Hub cannot be reached: unset it to push"
    if isinstance(error, LocalTokenNotFoundError):
        return f"no Hugging Face token found for {endpoint}: {_LOGIN_HINT}"
    if isinstance(error, RevisionNotFoundError):
        return f"revision {revision!r} not found in {repo_id} at {endpoint}"
    if isinstance(error, HfHubHTTPError):
        return _http_message(error, endpoint, repo_id, has_token)
    if isinstance(error, _network_errors()):
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        if "xet" in reason.lower():  # hf_xet reports its own HTTP failures as ConnectionError
            return (
                f"the Xet upload to {endpoint} failed ({reason}): "
                "if this endpoint has no Xet storage, set HF_HUB_DISABLE_XET=1"
            )
        return f"cannot reach the Hub at {endpoint} ({reason}): check HF_ENDPOINT and the network"
    if isinstance(error, ValueError):  # the client's own checks, e.g. card metadata the Hub rejects
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        return f"the push to {repo_id} at {endpoint} was refused: {first}"
    return None


def _redact(text: str, secret: str | None) -> str:
    """``text`` with the token, and any credentials in a URL, masked."""
    if secret:
        text = text.replace(secret, "***")
    return re.sub(r"(?<=://)[^/@\s]+@", "***@", text)


def _chain(error: BaseException):
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        yield error
        error = error.__cause__ or error.__context__


def _text_of(error: BaseException) -> str:
    return " ".join([str(error), *map(str, getattr(error, "args", ()))])


_LOGIN_HINT = "set HF_TOKEN to a token with write access, or run `hf auth login`"


def _http_message(error, endpoint: str, repo_id: str, has_token: bool) -> str:
    status = getattr(getattr(error, "response", None), "status_code", None)
    if status == 401:
        why = "the token was refused" if has_token else "no token was found"
        return f"authentication failed at {endpoint} (HTTP 401: {why}): {_LOGIN_HINT}"
    if status == 403:
        return (
            f"permission denied at {endpoint} (HTTP 403): the token may not write to {repo_id}; "
            f"use a token with write access to that namespace, or another --repo"
        )
    if status == 404:
        return f"{repo_id} not found at {endpoint} (HTTP 404): check --repo and the token's access"
    detail = getattr(error, "server_message", None) or str(error)
    detail = detail.strip().splitlines()[0] if detail and detail.strip() else "no details"
    return f"the Hub at {endpoint} refused the push to {repo_id} (HTTP {status}): {detail}"
