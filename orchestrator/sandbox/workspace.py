"""The agent's workspace: every path confined, every write checked, every version kept.

Rules (docs/threats.md, 'Escaping the sandbox'): paths are relative and stay inside the
root; no component may be a symlink; only text files; only files on the task's editable
allowlist may be written; sizes are capped. Each successful change makes a new version
whose tree (path -> sha256) and contents are kept, content-addressed.
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from orchestrator.errors import FileTooLarge, NotEditable, PatchFailed, PathRefused
from orchestrator.sandbox.patch import apply_file_patch, parse_unified_diff

_MAX_LIST = 10_000


@dataclass(frozen=True)
class FileInfo:
    path: str
    size: int
    editable: bool


@dataclass(frozen=True)
class Version:
    number: int
    parent: int | None
    tree: dict[str, str]


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Workspace:
    def __init__(self, root: Path, editable: list[str], max_file_bytes: int) -> None:
        self.root = root.resolve()
        self._editable = frozenset(editable)
        self._max = max_file_bytes
        self._objects: dict[str, bytes] = {}
        self.versions: list[Version] = []
        self._commit(parent=None)

    # --- path rules -----------------------------------------------------------------

    def _resolve(self, rel: str) -> Path:
        if not rel or "\0" in rel:
            raise PathRefused("empty path or NUL byte in path")
        posix = PurePosixPath(rel)
        if posix.is_absolute():
            raise PathRefused(f"{rel}: absolute paths are not allowed; use a path relative to the workspace")
        if any(part == ".." for part in posix.parts):
            raise PathRefused(f"{rel}: '..' is not allowed; paths must stay inside the workspace")
        current = self.root
        for part in posix.parts:
            if part == ".":
                continue
            current = current / part
            try:
                mode = os.lstat(current).st_mode
            except FileNotFoundError:
                continue
            except NotADirectoryError:
                parent = current.parent.relative_to(self.root)
                raise PathRefused(f"{rel}: {parent} is a file, not a folder") from None
            except OSError as e:  # e.g. a name too long: the agent's input, never our failure
                raise PathRefused(f"{rel}: {e.strerror or e}") from None
            if stat.S_ISLNK(mode):
                raise PathRefused(f"{rel}: symbolic links are not allowed")
        if not current.resolve().is_relative_to(self.root):
            raise PathRefused(f"{rel}: resolves outside the workspace")
        return current

    def _normalise(self, rel: str) -> str:
        self._resolve(rel)
        return str(PurePosixPath(*[p for p in PurePosixPath(rel).parts if p != "."]))

    def _check_editable(self, rel: str) -> str:
        name = self._normalise(rel)
        if name not in self._editable:
            raise NotEditable(
                f"{name}: not editable in this task; editable files: {', '.join(sorted(self._editable))}"
            )
        return name

    @staticmethod
    def _encode(name: str, content: str) -> bytes:
        try:
            return content.encode("utf-8")
        except UnicodeEncodeError as e:  # lone surrogates, e.g. from a JSON "\\ud800" escape
            raise PathRefused(f"{name}: not valid UTF-8 text ({e.reason})") from None

    def _check_text(self, name: str, data: bytes) -> None:
        if len(data) > self._max:
            raise FileTooLarge(f"{name}: {len(data)} bytes is over the {self._max}-byte limit")
        if b"\0" in data:
            raise PathRefused(f"{name}: binary content is not allowed (NUL byte)")
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise PathRefused(f"{name}: not valid UTF-8 text") from e

    # --- reads ----------------------------------------------------------------------

    def list_files(self) -> list[FileInfo]:
        out: list[FileInfo] = []
        for dirpath, dirnames, filenames in os.walk(self.root, followlinks=False):
            dirnames[:] = sorted(d for d in dirnames if not os.path.islink(os.path.join(dirpath, d)))
            for filename in sorted(filenames):
                full = Path(dirpath, filename)
                st = os.lstat(full)
                if not stat.S_ISREG(st.st_mode):
                    continue
                rel = full.relative_to(self.root).as_posix()
                out.append(FileInfo(path=rel, size=st.st_size, editable=rel in self._editable))
                if len(out) >= _MAX_LIST:
                    return out
        return out

    def read(self, rel: str) -> str:
        path = self._resolve(rel)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            raise PathRefused(f"{rel}: no such file") from None
        if not stat.S_ISREG(st.st_mode):
            raise PathRefused(f"{rel}: not a regular file")
        if st.st_size > self._max:
            raise FileTooLarge(f"{rel}: {st.st_size} bytes is over the {self._max}-byte limit")
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        with os.fdopen(fd, "rb") as f:
            data = f.read(self._max + 1)
        self._check_text(rel, data)
        return data.decode("utf-8")

    def snapshot(self) -> dict[str, bytes]:
        return {f.path: (self.root / f.path).read_bytes() for f in self.list_files()}

    def files_of(self, version: int) -> dict[str, bytes]:
        return {p: self._objects[sha] for p, sha in self.versions[version].tree.items()}

    @property
    def head(self) -> Version:
        return self.versions[-1]

    # --- writes ---------------------------------------------------------------------

    def write(self, rel: str, content: str) -> Version:
        name = self._check_editable(rel)
        data = self._encode(name, content)
        self._check_text(name, data)
        self._write_bytes(name, data)
        return self._commit(parent=self.head.number)

    def apply_patch(self, diff: str) -> Version:
        patches = parse_unified_diff(diff)
        results: dict[str, bytes] = {}
        for patch in patches:
            name = self._check_editable(patch.path)
            if patch.deletes:
                raise PatchFailed(f"{name}: deleting files is not allowed")
            current = results.get(name)
            original = (
                current.decode()
                if current is not None
                else (self.read(name) if self._resolve(name).exists() else None)
            )
            patched = apply_file_patch(original, patch)
            assert patched is not None
            data = self._encode(name, patched)
            self._check_text(name, data)
            results[name] = data
        for name, data in results.items():  # all hunks matched: only now touch the disk
            self._write_bytes(name, data)
        return self._commit(parent=self.head.number)

    def _write_bytes(self, name: str, data: bytes) -> None:
        path = self._resolve(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)

    def _commit(self, parent: int | None) -> Version:
        files = self.snapshot()
        tree = {}
        for path, data in files.items():
            sha = _sha(data)
            self._objects.setdefault(sha, data)
            tree[path] = sha
        version = Version(number=len(self.versions), parent=parent, tree=tree)
        self.versions.append(version)
        return version
