"""Static checks on a submission before anything of it runs.

Only the task's editable files may be submitted, as UTF-8 text, within the size
cap, and every Python file must parse. ``compile`` only parses: no submitted code
executes here.
"""

from __future__ import annotations

from collections.abc import Mapping

from orchestrator.errors import InvalidSubmission


def validate_submission(
    files: Mapping[str, bytes], *, editable: list[str], max_total_bytes: int
) -> dict[str, str]:
    """The submission as text, path -> content.

    Raises:
        InvalidSubmission: with every problem found, named by file.
    """
    problems: list[str] = []
    texts: dict[str, str] = {}
    unexpected = sorted(set(files) - set(editable))
    if unexpected:
        problems.append(f"files not editable in this task: {', '.join(unexpected)}")
    total = sum(len(d) for d in files.values())
    if total > max_total_bytes:
        problems.append(f"submission is {total} bytes, over the {max_total_bytes}-byte cap")
    for path, data in sorted(files.items()):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            problems.append(f"{path}: not UTF-8 text")
            continue
        if path.endswith(".py"):
            try:
                compile(text, path, "exec", dont_inherit=True)
            except SyntaxError as e:
                problems.append(f"{path}:{e.lineno}: syntax error: {e.msg}")
            except ValueError as e:  # e.g. NUL bytes
                problems.append(f"{path}: cannot be parsed: {e}")
        texts[path] = text
    if problems:
        raise InvalidSubmission("; ".join(problems))
    return texts
