"""A small fake Hugging Face Hub on 127.0.0.1 for the real huggingface_hub client, with the Hub's error codes.

Downloads (`snapshot_download`): `GET /api/{models|datasets}/{repo}/revision/{rev}` (commit sha), `.../tree/{rev}`
(the file listing), `.../refs` (branches and tags) and `HEAD`/`GET /[datasets/]{repo}/resolve/{rev}/{path}`
(X-Repo-Commit, ETag, Content-Length; no Xet headers, so plain HTTP is used). A revision is `main`, a tag or a
commit sha.

Uploads (`create_repo`, `upload_folder`, `create_tag`, `delete_tag`): `POST /api/repos/create`,
`POST /api/validate-yaml`, `POST .../preupload/{rev}` (every file is `regular`, so its bytes travel base64 in the
commit: the real Hub sends large files to LFS/Xet storage instead, which is not emulated), `POST .../commit/{rev}`
(NDJSON), `POST .../tag/{rev}`, `DELETE .../tag/{tag}`. Writes need `Authorization: Bearer <token>` when the hub
has a token.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit


def git_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class Repo:
    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)  # sha -> the files at that commit
    head: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    private: bool = False

    def commit(self, files: dict[str, bytes], sha: str | None = None) -> str:
        sha = sha or hashlib.sha1(f"{self.head}{sorted(files.items())}".encode()).hexdigest()
        self.commits[sha] = dict(files)
        self.head = sha
        return sha

    def resolve(self, revision: str) -> str | None:
        if revision == "main":
            return self.head
        return self.tags.get(revision) or (revision if revision in self.commits else None)


class Hub:
    """The state a fake Hub serves: repos by (type, id), gated and broken repo ids, an optional write token."""

    def __init__(self, token: str | None = None):
        self.repos: dict[tuple[str, str], Repo] = {}
        self.gated: set[str] = set()
        self.broken: set[str] = set()
        self.token = token
        self.requests: list[tuple[str, str]] = []

    def add(self, repo_id: str, files: dict[str, bytes], repo_type: str = "model", sha: str | None = None) -> Repo:
        repo = self.repos.setdefault((repo_type, repo_id), Repo())
        repo.commit(files, sha)
        return repo

    def files(self, repo_id: str, repo_type: str = "model", revision: str = "main") -> dict[str, bytes]:
        repo = self.repos[(repo_type, repo_id)]
        return repo.commits[repo.resolve(revision)]


class FakeHub(BaseHTTPRequestHandler):
    server: ThreadingHTTPServer  # with .hub

    def log_message(self, *args):
        pass

    @property
    def hub(self) -> Hub:
        return self.server.hub

    def do_GET(self):
        self._serve(send_body=True)

    def do_HEAD(self):
        self._serve(send_body=False)

    def do_POST(self):
        self._write()

    def do_DELETE(self):
        self._write()

    # PLUMBING
    def _send(self, status, body=b"", headers=None, send_body=True):
        self.send_response(status)
        for key, value in {"Content-Length": str(len(body)), **(headers or {})}.items():
            self.send_header(key, value)
        self.end_headers()
        if send_body:
            self.wfile.write(body)

    def _json(self, data, status=200, send_body=True):
        self._send(status, json.dumps(data).encode(), {"Content-Type": "application/json"}, send_body)

    def _error(self, status, code, send_body=True, message=None, **fields):
        body = json.dumps({"error": message or code, **fields}).encode()
        self._send(status, body, {"X-Error-Code": code, "Content-Type": "application/json"}, send_body)

    def _route(self):
        """(repo type, repo id, action, rest of the path) of `/api/{type}s/{repo}/{action}/...` or
        `/[{type}s/]{repo}/{action}/...`."""
        parts = unquote(urlsplit(self.path).path).strip("/").split("/")
        api = parts[0] == "api"
        if api:
            parts = parts[1:]
        repo_type = "model"
        if parts and parts[0] in ("models", "datasets", "spaces") and (api or parts[0] != "models"):
            repo_type, parts = parts[0][:-1], parts[1:]
        return api, repo_type, "/".join(parts[:2]), (parts[2] if len(parts) > 2 else ""), parts[3:]

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    # READS
    def _serve(self, send_body):
        self.hub.requests.append((self.command, self.path))
        api, repo_type, repo_id, action, rest = self._route()
        if repo_id in self.hub.broken:
            return self._send(500, b"internal error", send_body=send_body)
        if repo_id in self.hub.gated:
            return self._error(403, "GatedRepo", send_body)
        repo = self.hub.repos.get((repo_type, repo_id))
        if repo is None:
            return self._error(404, "RepoNotFound", send_body)
        if api and action == "refs":
            return self._json({"branches": [{"name": "main", "ref": "refs/heads/main", "targetCommit": repo.head}],
                               "tags": [{"name": t, "ref": f"refs/tags/{t}", "targetCommit": sha}
                                        for t, sha in repo.tags.items()], "converts": []}, send_body=send_body)
        sha = repo.resolve(rest[0]) if rest else None
        if sha is None:
            return self._error(404, "RevisionNotFound", send_body)
        files = repo.commits[sha]
        if api and action == "revision":
            info = {"id": repo_id, "sha": sha, "private": repo.private, "siblings": [{"rfilename": f} for f in files]}
            return self._json(info, send_body=send_body)
        if api and action == "tree":
            folders = sorted({"/".join(f.split("/")[:i]) for f in files for i in range(1, f.count("/") + 1)})
            tree = [{"type": "directory", "path": d, "oid": "0" * 40, "size": 0} for d in folders]
            tree += [{"type": "file", "path": f, "size": len(b), "oid": git_oid(b)} for f, b in files.items()]
            return self._json(tree, send_body=send_body)
        path = "/".join(rest[1:])
        if action == "resolve" and path in files:
            data = files[path]
            headers = {"X-Repo-Commit": sha, "ETag": f'"{git_oid(data)}"', "Content-Type": "application/octet-stream"}
            return self._send(200, data, headers, send_body)
        return self._error(404, "EntryNotFound", send_body)

    # WRITES
    def _write(self):
        self.hub.requests.append((self.command, self.path))
        body = self._body()
        if self.hub.token is not None and self.headers.get("Authorization") != f"Bearer {self.hub.token}":
            return self._error(401, "Unauthorized", message="Invalid username or password.")
        api, repo_type, repo_id, action, rest = self._route()
        if self.path.startswith("/api/validate-yaml"):
            return self._json({"errors": [], "warnings": []})
        if self.path.startswith("/api/repos/create"):
            request = json.loads(body)
            kind = request.get("type") or "model"
            name = f"{request['organization']}/{request['name']}" if request.get("organization") else request["name"]
            repo_url = f"http://{self.headers['Host']}/{'' if kind == 'model' else kind + 's/'}{name}"
            if (kind, name) in self.hub.repos:  # the Hub names the repo that exists
                return self._error(409, "RepoExists", message="You already created this repo", url=repo_url)
            private = request.get("visibility", "private" if request.get("private") else "public") == "private"
            self.hub.repos[(kind, name)] = Repo(private=private)
            self.hub.repos[(kind, name)].commit({})
            return self._json({"url": repo_url, "name": name})
        repo = self.hub.repos.get((repo_type, repo_id))
        if repo is None:
            return self._error(404, "RepoNotFound")
        if action == "tag" and self.command == "DELETE":
            if rest[0] not in repo.tags:
                return self._error(404, "RevisionNotFound", message=f"Invalid rev id: {rest[0]}")
            del repo.tags[rest[0]]
            return self._json({})
        sha = repo.resolve(rest[0]) if rest else None
        if sha is None:
            return self._error(404, "RevisionNotFound")
        files = repo.commits[sha]
        if action == "preupload":
            asked = json.loads(body)["files"]
            return self._json({"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False,
                                          "oid": git_oid(files[f["path"]]) if f["path"] in files else None}
                                         for f in asked], "commitOid": sha})
        if action == "commit":
            changed = dict(files)
            for line in body.splitlines():
                item = json.loads(line)
                if item["key"] == "file":
                    changed[item["value"]["path"]] = base64.b64decode(item["value"]["content"])
                elif item["key"] == "deletedFile":
                    changed.pop(item["value"]["path"], None)
                elif item["key"] != "header":
                    return self._error(400, "BadRequest", message=f"fake hub: {item['key']} is not emulated")
            new = repo.commit(changed)
            prefix = "" if repo_type == "model" else f"{repo_type}s/"
            return self._json({"commitUrl": f"http://{self.headers['Host']}/{prefix}{repo_id}/commit/{new}",
                               "commitOid": new, "pullRequestUrl": None})
        if action == "tag":
            tag = json.loads(body)["tag"]
            if tag in repo.tags:
                return self._error(409, "TagExists", message="Tag already exists")
            repo.tags[tag] = sha
            return self._json({})
        return self._error(404, "EntryNotFound")


@contextlib.contextmanager
def fake_hub(hub: Hub | None = None):
    """Serves `hub` (a new empty one by default) on 127.0.0.1 (port chosen by the OS) in a thread; yields
    (url, hub), stops on exit."""
    hub = hub if hub is not None else Hub()
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeHub)
    server.daemon_threads = True
    server.hub = hub
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", hub
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
