"""A small Hugging Face Hub server for the push tests: stdlib HTTP on 127.0.0.1, git storage.

It speaks the parts of the Hub HTTP API that the real ``huggingface_hub`` client (2.4) uses to
push and to download a model: create repo, repo info (with siblings), YAML validation, preupload,
commit (NDJSON), LFS batch + upload + verify (the client's path with ``HF_HUB_DISABLE_XET=1``),
refs, commits, tree, branches, pull requests (``create_pr=1`` → ``refs/pr/N``) and
``resolve/{revision}/{path}`` (GET and HEAD, with the ETag / X-Repo-Commit / X-Linked-* headers).

Every repository is a bare git repository (``<root>/<org>/<name>.git``) and every commit the
client makes is a real git commit written with git plumbing (no work tree). Large files are
stored in git-lfs layout: a pointer file in git and the object under
``<repo>.git/lfs/objects/<oid[0:2]>/<oid[2:4]>/<oid>``, so ``git`` itself can read the result back.

One token is accepted (``HubServer.token``); any other bearer token gets 401
"Invalid credentials in Authorization header", as on the real Hub. Xet is not served: a client
with Xet enabled gets a 501 that says to set ``HF_HUB_DISABLE_XET=1``.

Example:
    >>> with HubServer(tmp_path) as hub:
    ...     HfApi(endpoint=hub.url, token=hub.token).create_repo("me/m")

From the repository's folder, ``python -m tests.hubserver [--port 8765] [--root DIR]`` runs it
until Ctrl-C or SIGTERM and prints the environment to paste before ``headsurgeon push``.
"""

from __future__ import annotations

import argparse
import base64
import errno
import fnmatch
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlsplit

import yaml

LFS_PATTERNS = ("*.safetensors", "*.bin", "*.pt", "*.pth", "*.ckpt", "*.h5", "*.onnx", "*.msgpack")
LFS_MIN_SIZE = 10 * 1024 * 1024  # larger files go to LFS whatever their name
POINTER_PREFIX = b"version https://git-lfs.github.com/spec/v1\n"
GITATTRIBUTES = "".join(f"{p} filter=lfs diff=lfs merge=lfs -text\n" for p in LFS_PATTERNS)
HUB_DATE, UTC = "--date=format-local:%Y-%m-%dT%H:%M:%S.000Z", {"TZ": "UTC"}  # the Hub's format
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
TOKEN, USER = "hf_headsurgeon_test", "me"
DEFAULT_PORT = 8765  # of ``python -m tests.hubserver``; the tests take a free port (0)


class HubHTTPError(Exception):
    """An error response: status, message, optional ``X-Error-Code`` and extra headers."""

    def __init__(self, status: int, message: str, code: str | None = None, headers=None):
        super().__init__(message)
        self.status, self.message, self.code, self.headers = status, message, code, headers or {}


def _git(gitdir: Path, *args: str, data: bytes | None = None, env=None) -> bytes:
    full_env = {
        **os.environ,
        "GIT_DIR": str(gitdir),
        "GIT_AUTHOR_NAME": "me",
        "GIT_AUTHOR_EMAIL": "me@hub.test",
        "GIT_COMMITTER_NAME": "hub",
        "GIT_COMMITTER_EMAIL": "hub@hub.test",
        **(env or {}),
    }
    out = subprocess.run(["git", *args], input=data, capture_output=True, env=full_env)
    if out.returncode:
        raise RuntimeError(f"git {' '.join(args)}: {out.stderr.decode(errors='replace')}")
    return out.stdout


def pointer(oid: str, size: int) -> bytes:
    """The git-lfs pointer file of an object."""
    return POINTER_PREFIX + f"oid sha256:{oid}\nsize {size}\n".encode()


class Repo:
    """One model repository: a bare git repo, its LFS objects and a little metadata."""

    def __init__(self, gitdir: Path):
        self.gitdir = gitdir

    @property
    def meta_path(self) -> Path:
        return self.gitdir / "hub-meta.json"

    def meta(self) -> dict:
        return json.loads(self.meta_path.read_text())

    def set_meta(self, **fields) -> None:
        self.meta_path.write_text(json.dumps({**self.meta(), **fields}))

    def git(self, *args: str, data: bytes | None = None, env=None) -> bytes:
        return _git(self.gitdir, *args, data=data, env=env)

    def lfs_path(self, oid: str) -> Path:
        return self.gitdir / "lfs" / "objects" / oid[0:2] / oid[2:4] / oid

    def resolve(self, rev: str) -> str | None:
        """Commit sha of a branch, ``refs/...`` name, or (abbreviated) commit id; None if unknown."""
        candidates = [f"refs/heads/{rev}"] if not rev.startswith("refs/") else [rev]
        if re.fullmatch(r"[0-9a-f]{7,40}", rev):
            candidates.append(rev)
        for cand in candidates:
            try:
                return (
                    self.git("rev-parse", "--verify", "-q", f"{cand}^{{commit}}").decode().strip()
                )
            except RuntimeError:
                continue
        return None

    def files(self, sha: str) -> dict[str, dict]:
        """path → {"blob", "size", "lfs": {"oid", "size", "pointerSize"} | None} at commit ``sha``."""
        out = {}
        for line in self.git("ls-tree", "-r", "-l", "-z", sha).split(b"\0"):
            if not line:
                continue
            meta, path = line.decode().split("\t", 1)
            _mode, _type, blob, size = meta.split()
            entry = {"blob": blob, "size": int(size), "lfs": None}
            if int(size) < 300:
                lfs = self._parse_pointer(self.git("cat-file", "blob", blob))
                if lfs:
                    entry["lfs"] = {**lfs, "pointerSize": int(size)}
            out[path] = entry
        return out

    @staticmethod
    def _parse_pointer(data: bytes) -> dict | None:
        if not data.startswith(POINTER_PREFIX):
            return None
        fields = dict(line.split(" ", 1) for line in data.decode().splitlines()[1:] if " " in line)
        return {"oid": fields["oid"].removeprefix("sha256:"), "size": int(fields["size"])}

    def commit(
        self, ref: str, parent: str | None, ops: list[dict], message: str, new_ref: bool = False
    ) -> str:
        """Write one commit from ``parent`` with ``ops``; move ``ref`` to it (compare-and-swap:
        ``ref`` must still be at ``parent``, or not exist when ``new_ref``)."""
        with tempfile.TemporaryDirectory() as tmp:
            env = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
            self.git("read-tree", *([parent] if parent else ["--empty"]), env=env)
            present = set(self.files(parent)) if parent else set()
            index_info, removals = [], []
            for op in ops:
                path = op["path"]
                if op["kind"] == "delete":
                    gone = [p for p in present if p == path or p.startswith(path.rstrip("/") + "/")]
                    if not gone:
                        raise HubHTTPError(
                            404, f"A file with this name doesn't exist: {path}", "EntryNotFound"
                        )
                    removals += gone
                    continue
                blob = self.git("hash-object", "-w", "--stdin", data=op["content"]).decode().strip()
                index_info.append(f"100644 {blob}\t{path}\n")
            index_info = [f"0 {'0' * 40}\t{p}\n" for p in removals] + index_info  # mode 0: remove
            if index_info:
                self.git("update-index", "--index-info", data="".join(index_info).encode(), env=env)
            tree = self.git("write-tree", env=env).decode().strip()
        args = ["commit-tree", tree, *(["-p", parent] if parent else []), "-F", "-"]
        sha = self.git(*args, data=message.encode()).decode().strip()
        self.git("update-ref", ref, sha, "0" * 40 if new_ref or not parent else parent)
        return sha


class HubServer:
    """The test Hub: ``start()`` serves on 127.0.0.1 (``port``; 0: a free one) in a thread,
    ``stop()`` ends it.

    Attributes:
        url: ``http://127.0.0.1:PORT`` (use as ``HF_ENDPOINT``).
        token: the one accepted token.
        user: the namespace that token owns.
        requests: ``(method, path)`` of every request served, for assertions.
        fail: ``{path: status}``: answer requests to ``path`` with that error status.
    """

    def __init__(self, root: str | os.PathLike, token: str = TOKEN, user=USER, port: int = 0):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.token, self.user, self.port = token, user, port
        self.requests: list[tuple[str, str]] = []
        self.fail: dict[str, int] = {}  # path → status to answer instead (failure injection)
        self.lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> HubServer:
        server = self

        class Handler(_Handler):
            hub = server

        self._httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._thread.join(timeout=5)
            self._httpd = None

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    # -- storage ---------------------------------------------------------------------------
    def repo(self, repo_id: str) -> Repo | None:
        gitdir = self.root / f"{repo_id}.git"
        return Repo(gitdir) if (gitdir / "hub-meta.json").is_file() else None

    def gitdir(self, repo_id: str) -> Path:
        """The bare git repository that stores ``repo_id`` (for tests that read it with git)."""
        return self.root / f"{repo_id}.git"

    def create_repo(self, repo_id: str, private: bool) -> tuple[Repo, bool]:
        with self.lock:
            existing = self.repo(repo_id)
            if existing:
                return existing, False
            gitdir = self.gitdir(repo_id)
            gitdir.parent.mkdir(parents=True, exist_ok=True)
            _git(gitdir, "init", "-q", "--bare", "-b", "main", str(gitdir))
            repo = Repo(gitdir)
            repo.meta_path.write_text(json.dumps({"private": private, "prs": 0}))
            ops = [{"kind": "add", "path": ".gitattributes", "content": GITATTRIBUTES.encode()}]
            repo.commit("refs/heads/main", None, ops, "initial commit")
            return repo, True


class _Handler(BaseHTTPRequestHandler):
    hub: HubServer
    server_version = "headsurgeon-test-hub"

    def log_message(self, format, *args):  # quiet: tests read hub.requests instead
        pass

    # -- plumbing --------------------------------------------------------------------------
    def _dispatch(self, method: str) -> None:
        split = urlsplit(self.path)
        self.query = {k: v[-1] for k, v in parse_qs(split.query).items()}
        self.hub.requests.append((method, split.path))
        try:
            self._body = self._read_body() if method in ("POST", "PUT") else b""
            if split.path in self.hub.fail:
                raise HubHTTPError(self.hub.fail[split.path], "injected failure")
            for route_method, pattern, handler in ROUTES:
                match = pattern.fullmatch(split.path)
                if route_method == method and match:
                    groups = {k: unquote(v) for k, v in match.groupdict().items() if v is not None}
                    return handler(self, **groups)
            raise HubHTTPError(404, f"no route for {method} {split.path}")
        except Exception as e:
            if not isinstance(e, HubHTTPError):  # a server bug: answer 500 with the reason
                e = HubHTTPError(500, f"test hub error: {type(e).__name__}: {e}".replace("\n", " "))
            body = json.dumps({"error": e.message}).encode()
            headers = {"X-Error-Message": e.message, **e.headers}
            if e.code:
                headers["X-Error-Code"] = e.code
            self._send(e.status, body, headers, "application/json")

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _send(self, status: int, body: bytes, headers=None, ctype="application/octet-stream"):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, data, status: int = 200, ctype="application/json") -> None:
        self._send(status, json.dumps(data).encode(), ctype=ctype)

    def _payload(self) -> dict:
        try:
            return json.loads(self._body or b"{}")
        except ValueError as e:
            raise HubHTTPError(400, f"body is not JSON: {e}") from e

    def do_GET(self):
        self._dispatch("GET")

    def do_HEAD(self):
        self._dispatch("HEAD")

    def do_POST(self):
        self._dispatch("POST")

    def do_PUT(self):
        self._dispatch("PUT")

    # -- auth and lookup -------------------------------------------------------------------
    def _user(self, required: bool) -> str | None:
        auth = self.headers.get("Authorization", "")
        if not auth:
            if required:
                raise HubHTTPError(401, "You must be authenticated to do this")
            return None
        if auth != f"Bearer {self.hub.token}":
            raise HubHTTPError(401, "Invalid credentials in Authorization header")
        return self.hub.user

    def _repo(self, repo_id: str, write: bool = False) -> Repo:
        user = self._user(required=write)
        repo = self.hub.repo(repo_id)
        hidden = repo is not None and repo.meta()["private"] and user is None
        if repo is None or hidden:
            status = 401 if user is None else 404
            raise HubHTTPError(status, f"Repository {repo_id} not found", "RepoNotFound")
        if write and repo_id.split("/")[0] != user:
            raise HubHTTPError(403, f"You don't have the rights to write to {repo_id}")
        return repo

    def _rev(self, repo: Repo, rev: str) -> str:
        sha = repo.resolve(rev)
        if sha is None:
            raise HubHTTPError(404, f"Invalid rev id: {rev}", "RevisionNotFound")
        return sha

    # -- API -------------------------------------------------------------------------------
    def whoami(self):
        self._json({"type": "user", "name": self._user(required=True), "orgs": []})

    def create_repo(self):
        user = self._user(required=True)
        data = self._payload()
        if data.get("type", "model") != "model":
            raise HubHTTPError(400, "this test hub stores model repositories only")
        org, name = data.get("organization") or user, data.get("name", "")
        if not (NAME_RE.fullmatch(name) and NAME_RE.fullmatch(org)):
            raise HubHTTPError(400, f"invalid repository name {org}/{name}")
        if org != user:
            raise HubHTTPError(403, f"You don't have the rights to create a repo under {org}")
        private = data.get("visibility") == "private" or bool(data.get("private"))
        _repo, created = self.hub.create_repo(f"{org}/{name}", private)
        url = f"{self.hub.url}/{org}/{name}"
        if not created:
            return self._json({"error": "You already created this model repo", "url": url}, 409)
        self._json({"url": url, "name": f"{org}/{name}", "id": f"{org}/{name}"})

    def validate_yaml(self):
        content = self._payload().get("content", "")
        errors = []
        if content.startswith("---"):
            try:
                front = content.split("---", 2)[1]
                if not isinstance(yaml.safe_load(front) or {}, dict):
                    errors.append({"message": "metadata is not a mapping"})
            except (IndexError, yaml.YAMLError) as e:
                errors.append({"message": f"invalid YAML: {e}"})
        status = 400 if errors else 200
        self._send(
            status,
            json.dumps({"errors": errors, "warnings": []}).encode(),
            ctype="application/json",
        )

    def model_info(self, repo_id: str, rev: str = "main"):
        repo = self._repo(repo_id)
        sha = self._rev(repo, rev)
        siblings = [
            {"rfilename": path, "size": f["size"], "blobId": f["blob"]}
            | ({"lfs": {"size": f["lfs"]["size"], "sha256": f["lfs"]["oid"],
                        "pointerSize": f["lfs"]["pointerSize"]}} if f["lfs"] else {})
            for path, f in sorted(repo.files(sha).items())
        ]  # fmt: skip
        date = repo.git("show", "-s", "--format=%ad", HUB_DATE, sha, env=UTC).decode().strip()
        self._json(
            {
                "id": repo_id,
                "modelId": repo_id,
                "author": repo_id.split("/")[0],
                "sha": sha,
                "private": repo.meta()["private"],
                "lastModified": date,
                "tags": [],
                "siblings": siblings,
            }
        )

    def preupload(self, repo_id: str, rev: str):
        repo = self._repo(repo_id, write=True)
        sha = self._rev(repo, rev)
        present = repo.files(sha)
        files = []
        for item in self._payload().get("files", []):
            path, size = item["path"], int(item["size"])
            lfs = size >= LFS_MIN_SIZE or any(
                fnmatch.fnmatch(path.rsplit("/", 1)[-1], p) for p in LFS_PATTERNS
            )
            remote = present.get(path)
            oid = (remote["lfs"]["oid"] if remote["lfs"] else remote["blob"]) if remote else None
            files.append(
                {
                    "path": path,
                    "uploadMode": "lfs" if lfs else "regular",
                    "shouldIgnore": False,
                    "oid": oid,
                }
            )
        self._json({"files": files, "commitOid": sha})

    def commit(self, repo_id: str, rev: str):
        repo = self._repo(repo_id, write=True)
        lines = [json.loads(line) for line in self._body.splitlines() if line.strip()]
        if not lines or lines[0].get("key") != "header":
            raise HubHTTPError(400, "the commit payload must start with a header line")
        header, ops = lines[0]["value"], []
        for line in lines[1:]:
            ops.append(self._commit_op(repo, line["key"], line["value"]))
        message = header.get("summary") or "Update"
        if header.get("description"):
            message += "\n\n" + header["description"]
        create_pr = self.query.get("create_pr") in ("1", "true", "True")
        with self.hub.lock:
            head = self._rev(repo, rev)
            expected = header.get("parentCommit")
            if expected and not create_pr and not head.startswith(expected):
                raise HubHTTPError(412, f"parent commit {expected} is not the head of {rev}")
            if create_pr:
                number = repo.meta()["prs"] + 1
                repo.set_meta(prs=number)
                ref = f"refs/pr/{number}"
                base = repo.resolve(expected) if expected else head
            else:
                ref = rev if rev.startswith("refs/") else f"refs/heads/{rev}"
                base = head
            sha = repo.commit(ref, base, ops, message, new_ref=create_pr)
        result = {"commitUrl": f"{self.hub.url}/{repo_id}/commit/{sha}", "commitOid": sha}
        result["pullRequestUrl"] = (
            f"{self.hub.url}/{repo_id}/discussions/{number}" if create_pr else None
        )
        self._json(result)

    def _commit_op(self, repo: Repo, key: str, value: dict) -> dict:
        path = value.get("path", "")
        if not path or path.startswith("/") or ".." in path.split("/") or ".git" in path.split("/"):
            raise HubHTTPError(400, f"invalid path in commit: {path!r}")
        if key == "file":
            return {"kind": "add", "path": path, "content": base64.b64decode(value["content"])}
        if key == "lfsFile":
            oid = value["oid"]
            obj = repo.lfs_path(oid)
            if not obj.is_file():
                raise HubHTTPError(422, f"LFS object {oid} of {path} was never uploaded")
            return {"kind": "add", "path": path, "content": pointer(oid, obj.stat().st_size)}
        if key in ("deletedFile", "deletedFolder"):
            return {"kind": "delete", "path": path}
        raise HubHTTPError(400, f"unknown commit operation {key!r}")

    def create_branch(self, repo_id: str, branch: str):
        repo = self._repo(repo_id, write=True)
        with self.hub.lock:
            if repo.resolve(branch) and not branch.startswith("refs/"):
                raise HubHTTPError(409, f"Reference refs/heads/{branch} already exists")
            start = self._rev(repo, self._payload().get("startingPoint") or "main")
            repo.git("update-ref", f"refs/heads/{branch}", start)
        self._json({})

    def refs(self, repo_id: str):
        repo = self._repo(repo_id)
        listing = repo.git("for-each-ref", "--format=%(refname) %(objectname)").decode()
        branches, prs = [], []
        for line in listing.splitlines():
            ref, sha = line.split()
            if ref.startswith("refs/heads/"):
                branches.append(
                    {"name": ref[len("refs/heads/") :], "ref": ref, "targetCommit": sha}
                )
            elif ref.startswith("refs/pr/"):
                prs.append({"name": ref, "ref": ref, "targetCommit": sha})
        data = {"branches": branches, "tags": [], "converts": []}
        if self.query.get("include_prs"):
            data["pullRequests"] = prs
        self._json(data)

    def commits(self, repo_id: str, rev: str):
        repo = self._repo(repo_id)
        sha = self._rev(repo, rev)
        out = repo.git(
            "log", "--format=%H%x00%ad%x00%an%x00%B%x1e", HUB_DATE, sha, env=UTC
        ).decode()
        items = []
        for record in out.split("\x1e"):
            if not record.strip():
                continue
            commit, date, author, body = record.strip("\n").split("\0", 3)
            title = body.splitlines()[0] if body else ""
            items.append(
                {
                    "id": commit,
                    "title": title,
                    "message": body[len(title) :].strip(),
                    "authors": [{"user": author}],
                    "date": date,
                }
            )
        self._json(items)

    def tree(self, repo_id: str, rev: str, path: str = ""):
        repo = self._repo(repo_id)
        sha = self._rev(repo, rev)
        recursive = self.query.get("recursive", "").lower() in ("1", "true")
        prefix = path.strip("/") + "/" if path.strip("/") else ""
        entries, dirs = [], set()
        for name, f in sorted(repo.files(sha).items()):
            if not name.startswith(prefix):
                continue
            rest = name[len(prefix) :]
            if "/" in rest and not recursive:
                dirs.add(prefix + rest.split("/", 1)[0])
                continue
            entry = {"type": "file", "oid": f["blob"], "size": f["size"], "path": name}
            if f["lfs"]:
                entry["lfs"] = {k: f["lfs"][k] for k in ("oid", "size", "pointerSize")}
            entries.append(entry)
        if prefix and not entries and not dirs:
            raise HubHTTPError(404, f"{path} does not exist at {rev}", "EntryNotFound")
        entries += [{"type": "directory", "oid": "0" * 40, "size": 0, "path": d} for d in dirs]
        self._json(entries)

    def xet_token(self, **_):
        raise HubHTTPError(501, "this test hub has no Xet storage: set HF_HUB_DISABLE_XET=1")

    # -- LFS -------------------------------------------------------------------------------
    def lfs_batch(self, repo_id: str):
        repo = self._repo(repo_id, write=True)
        data = self._payload()
        if data.get("operation") != "upload":
            raise HubHTTPError(400, "this test hub serves LFS uploads only")
        objects = []
        for obj in data.get("objects", []):
            oid, size = obj["oid"], int(obj["size"])
            item = {"oid": oid, "size": size, "authenticated": True}
            have = repo.lfs_path(oid)
            if not (have.is_file() and have.stat().st_size == size):
                base = f"{self.hub.url}/lfs/{quote(repo_id, safe='')}"
                item["actions"] = {
                    "upload": {"href": f"{base}/upload/{oid}/{size}"},
                    "verify": {"href": f"{base}/verify"},
                }
            objects.append(item)
        self._json({"transfer": "basic", "objects": objects}, ctype="application/vnd.git-lfs+json")

    def lfs_upload(self, repo_id: str, oid: str, size: str):
        repo = self.hub.repo(repo_id)  # like a presigned URL: no Authorization header is sent
        if repo is None:
            raise HubHTTPError(404, f"Repository {repo_id} not found")
        body = self._body
        if len(body) != int(size) or hashlib.sha256(body).hexdigest() != oid:
            raise HubHTTPError(400, f"uploaded content does not match oid {oid} / size {size}")
        target = repo.lfs_path(oid)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{oid}.{threading.get_ident()}.tmp")
        tmp.write_bytes(body)
        os.replace(tmp, target)
        self._send(200, b"", {"ETag": f'"{oid}"'})

    def lfs_verify(self, repo_id: str):
        repo = self._repo(repo_id, write=True)
        data = self._payload()
        obj = repo.lfs_path(data.get("oid", ""))
        if not (obj.is_file() and obj.stat().st_size == int(data.get("size", -1))):
            raise HubHTTPError(404, f"LFS object {data.get('oid')} not found")
        self._json({"success": True})

    # -- downloads -------------------------------------------------------------------------
    def resolve(self, repo_id: str, rev: str, path: str):
        repo = self._repo(repo_id)
        sha = self._rev(repo, rev)
        f = repo.files(sha).get(path)
        if f is None:
            raise HubHTTPError(
                404, f"{path} not found at {rev}", "EntryNotFound", {"X-Repo-Commit": sha}
            )
        headers = {"X-Repo-Commit": sha, "Accept-Ranges": "bytes"}
        if f["lfs"]:
            oid = f["lfs"]["oid"]
            body = repo.lfs_path(oid).read_bytes() if self.command == "GET" else b""
            headers |= {"ETag": f'"{oid}"', "X-Linked-Etag": f'"{oid}"'}
            headers["X-Linked-Size"] = str(f["lfs"]["size"])
            length = f["lfs"]["size"]
        else:
            body = repo.git("cat-file", "blob", f["blob"]) if self.command == "GET" else b""
            headers["ETag"] = f'"{f["blob"]}"'
            length = f["size"]
        start = self._range_start()
        if self.command == "HEAD":
            self.send_response(200)
            for key, value in {**headers, "Content-Length": str(length)}.items():
                self.send_header(key, value)
            self.end_headers()
        elif start:
            headers["Content-Range"] = f"bytes {start}-{length - 1}/{length}"
            self._send(206, body[start:], headers)
        else:
            self._send(200, body, headers)

    def _range_start(self) -> int:
        match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", ""))
        return int(match.group(1)) if match else 0


_REPO = r"(?P<repo_id>[^/]+/[^/]+)"
ROUTES = [
    (m, re.compile(p), h)
    for m, p, h in [
        ("GET", r"/api/whoami-v2", _Handler.whoami),
        ("POST", r"/api/repos/create", _Handler.create_repo),
        ("POST", r"/api/validate-yaml", _Handler.validate_yaml),
        ("GET", rf"/api/models/{_REPO}", _Handler.model_info),
        ("GET", rf"/api/models/{_REPO}/revision/(?P<rev>[^/]+)", _Handler.model_info),
        ("POST", rf"/api/models/{_REPO}/preupload/(?P<rev>[^/]+)", _Handler.preupload),
        ("POST", rf"/api/models/{_REPO}/commit/(?P<rev>[^/]+)", _Handler.commit),
        ("POST", rf"/api/models/{_REPO}/branch/(?P<branch>[^/]+)", _Handler.create_branch),
        ("GET", rf"/api/models/{_REPO}/refs", _Handler.refs),
        ("GET", rf"/api/models/{_REPO}/commits/(?P<rev>[^/]+)", _Handler.commits),
        ("GET", rf"/api/models/{_REPO}/tree/(?P<rev>[^/]+)(?:/(?P<path>.+))?", _Handler.tree),
        ("GET", rf"/api/models/{_REPO}/xet-write-token/(?P<rev>[^/]+)", _Handler.xet_token),
        ("POST", rf"/{_REPO}\.git/info/lfs/objects/batch", _Handler.lfs_batch),
        ("PUT", r"/lfs/(?P<repo_id>[^/]+%2F[^/]+)/upload/(?P<oid>[0-9a-f]{64})/(?P<size>\d+)", _Handler.lfs_upload),
        ("POST", r"/lfs/(?P<repo_id>[^/]+%2F[^/]+)/verify", _Handler.lfs_verify),
        ("GET", rf"/{_REPO}/resolve/(?P<rev>[^/]+)/(?P<path>.+)", _Handler.resolve),
        ("HEAD", rf"/{_REPO}/resolve/(?P<rev>[^/]+)/(?P<path>.+)", _Handler.resolve),
    ]
]  # fmt: skip


# -- python -m tests.hubserver -------------------------------------------------------------
def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tests.hubserver",
        description="Run the test Hub on 127.0.0.1 until Ctrl-C/SIGTERM, to try `headsurgeon "
        "push` without the real Hub. Run it from the repository's folder.",
    )
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="default: %(default)s")
    parser.add_argument(
        "--root",
        type=Path,
        default=None,
        help="folder for the pushed repositories (bare git repos <root>/<org>/<name>.git); "
        "default: a new temporary folder, kept after the server stops",
    )
    return parser.parse_args(argv)


def _instructions(hub: HubServer) -> str:
    root = hub.root.resolve()
    return "\n".join(
        [
            f"test Hub on {hub.url} (token {hub.token}, namespace {hub.user}/); paste:",
            f"export HF_ENDPOINT={hub.url}",
            f"export HF_TOKEN={hub.token}",
            "export HF_HUB_DISABLE_XET=1",
            f"then: headsurgeon push MODEL --repo {hub.user}/NAME  (with HF_HUB_OFFLINE unset)",
            f"pushes are stored in {root} as bare git repositories; read one with:",
            f"  git --git-dir {root}/{hub.user}/NAME.git log --stat main",
            f"  git --git-dir {root}/{hub.user}/NAME.git show main:headsurgeon.json",
            "Ctrl-C stops the server.",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    """Serve until Ctrl-C or SIGTERM, then stop cleanly; 1 when the port cannot be taken."""
    args = _arguments(argv)
    root = args.root or Path(tempfile.mkdtemp(prefix="headsurgeon-hub-"))
    hub = HubServer(root, port=args.port)
    try:
        hub.start()
    except (OSError, OverflowError) as e:
        in_use = getattr(e, "errno", None) == errno.EADDRINUSE
        why = "the port is in use" if in_use else getattr(e, "strerror", None) or str(e)
        print(
            f"error: cannot listen on 127.0.0.1:{args.port} ({why}): "
            "pass --port with a free port (or stop what holds this one)",
            file=sys.stderr,
        )
        return 1
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    print(_instructions(hub), flush=True)
    while not stop.wait(0.5):  # a timeout keeps the main thread responsive to signals
        pass
    hub.stop()
    print("test Hub stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
