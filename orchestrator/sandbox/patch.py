"""A strict unified-diff applier: exact context, every hunk or none.

Our own, so the sandbox does not depend on a `patch` binary and so the set of
files a diff touches is known (and checked) before anything is written.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from orchestrator.errors import PatchFailed

_HUNK = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")
_MAX_OFFSET = 200  # lines a hunk may have drifted from its stated position


@dataclass
class _Hunk:
    old_start: int
    lines: list[str] = field(default_factory=list)  # each with its ' ', '-' or '+' prefix

    def old(self) -> list[str]:
        return [ln[1:] for ln in self.lines if ln[0] in " -"]

    def new(self) -> list[str]:
        return [ln[1:] for ln in self.lines if ln[0] in " +"]


@dataclass
class FilePatch:
    path: str
    hunks: list[_Hunk]
    creates: bool
    deletes: bool


def _strip_prefix(name: str) -> str | None:
    name = name.split("\t", 1)[0].strip()
    if name == "/dev/null":
        return None
    if name.startswith(("a/", "b/")):
        name = name[2:]
    return name


def _lines(text: str) -> list[str]:
    """Lines split on "\\n" only: str.splitlines() also splits on \\r, \\f, \\x1c, \\u2028...,
    which would rewrite untouched lines (CRLF files, form feeds) or break a valid diff."""
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return lines


def parse_unified_diff(diff: str) -> list[FilePatch]:
    """Raises: PatchFailed when the text is not a unified diff."""
    lines = _lines(diff)
    patches: list[FilePatch] = []
    i = 0
    while i < len(lines):
        if not lines[i].startswith("--- "):
            i += 1
            continue
        if i + 1 >= len(lines) or not lines[i + 1].startswith("+++ "):
            raise PatchFailed(f"line {i + 1}: '---' header not followed by '+++'")
        old_name = _strip_prefix(lines[i][4:])
        new_name = _strip_prefix(lines[i + 1][4:])
        path = new_name or old_name
        if path is None:
            raise PatchFailed(f"line {i + 1}: both sides are /dev/null")
        i += 2
        hunks: list[_Hunk] = []
        while i < len(lines) and lines[i].startswith("@@"):
            m = _HUNK.match(lines[i])
            if m is None:
                raise PatchFailed(f"line {i + 1}: malformed hunk header {lines[i]!r}")
            old_len = int(m[2]) if m[2] is not None else 1
            new_len = int(m[4]) if m[4] is not None else 1
            hunk = _Hunk(old_start=int(m[1]))
            i += 1
            seen_old = seen_new = 0
            while i < len(lines) and (seen_old < old_len or seen_new < new_len):
                line = lines[i]
                if line.startswith("\\"):
                    i += 1
                    continue
                tag = line[:1] or " "  # some editors drop the space of empty context lines
                if tag not in " -+":
                    raise PatchFailed(f"line {i + 1}: unexpected {line[:40]!r} inside a hunk")
                hunk.lines.append(tag + line[1:])
                seen_old += tag in " -"
                seen_new += tag in " +"
                i += 1
            if seen_old != old_len or seen_new != new_len:
                raise PatchFailed(f"hunk for {path} is shorter than its header says")
            while i < len(lines) and lines[i].startswith("\\"):
                i += 1
            hunks.append(hunk)
        if not hunks:
            raise PatchFailed(f"no hunks for {path}")
        patches.append(FilePatch(path=path, hunks=hunks, creates=old_name is None, deletes=new_name is None))
    if not patches:
        raise PatchFailed("no file headers ('--- a/...', '+++ b/...') found in the diff")
    return patches


def apply_file_patch(original: str | None, patch: FilePatch) -> str | None:
    """The patched text (None when the patch deletes the file).

    Raises:
        PatchFailed: a hunk's context does not match.
    """
    if patch.creates:
        if original is not None:
            raise PatchFailed(f"{patch.path} already exists")
        return "".join(line + "\n" for h in patch.hunks for line in h.new())
    if original is None:
        raise PatchFailed(f"{patch.path} does not exist")
    if patch.deletes:
        return None
    ends_with_newline = original.endswith("\n")
    text = _lines(original)
    offset = 0
    for n, hunk in enumerate(patch.hunks, start=1):
        old = hunk.old()
        # "@@ -N,0 ..." (a pure insertion, as diff -U0 writes it) inserts *after* line N
        start = (hunk.old_start if not old else max(hunk.old_start - 1, 0)) + offset
        at = _find(text, old, start)
        if at is None:
            raise PatchFailed(f"{patch.path}: hunk {n} (at line {hunk.old_start}) does not match the file")
        text[at : at + len(old)] = hunk.new()
        offset += len(hunk.new()) - len(old)
        offset += at - start
    result = "\n".join(text)
    return result + "\n" if ends_with_newline or not original else result


def _find(text: list[str], block: list[str], near: int) -> int | None:
    if not block:
        return min(near, len(text))
    for delta in range(_MAX_OFFSET + 1):
        for at in {near - delta, near + delta}:
            if 0 <= at <= len(text) - len(block) and text[at : at + len(block)] == block:
                return at
    return None
