"""The speedrun's rules, checked statically on a submission against record N's script.

Nothing here executes submitted code: everything works on the parsed syntax tree.
The checks are backend-independent, so every scorer (local, container, pod) runs
the same ones before it times anything.

What is protected, derived from record N and its manifest rather than listed by hand:
- protected statements: every statement that touches a protected hyperparameter
  (the manifest's list plus ``seed``, which the scorer chooses), the record's
  progress print, and calls that set threads, seeds or process groups. The
  submission must contain exactly the same multiset of them, in the same functions.
- protected functions: the function whose result is printed as ``val_loss`` (the
  validation computation), the functions protected statements call (data loading),
  and every module function those call in turn. They must be unchanged.
Outside those, the submission may import only what a training script needs, and
may not touch files, processes, the network, the environment or module attributes.
A determined obfuscator can still hide things from a static check; that is why the
scorer also times from outside and checks plausibility (harness.py, score.py).
"""

from __future__ import annotations

import ast
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from orchestrator.scorer.plan import Flag

SCORER_OWNED = frozenset({"seed"})
"""Hyperparameters the scorer sets for every record, whatever its manifest says."""

_PROGRESS_MARKERS = ("val_loss", "train_time", "step:")

# modules a training script may import (record N's own imports are allowed too)
_ALLOWED_MODULES = frozenset(
    {
        "__future__",
        "collections",
        "contextlib",
        "copy",
        "dataclasses",
        "functools",
        "glob",
        "itertools",
        "math",
        "numpy",
        "operator",
        "os",
        "time",
        "typing",
        "torch",
        "torch.distributed",
        "torch.nn",
        "torch.nn.attention",
        "torch.nn.functional",
        "torch.nn.init",
        "torch.optim",
        "torch._dynamo",
        "torch._inductor",
        "torch._inductor.config",
    }
)
_IMPORT_FLAGS = {
    "socket": Flag.NETWORK_ACCESS,
    "ssl": Flag.NETWORK_ACCESS,
    "urllib": Flag.NETWORK_ACCESS,
    "http": Flag.NETWORK_ACCESS,
    "requests": Flag.NETWORK_ACCESS,
    "httpx": Flag.NETWORK_ACCESS,
    "ftplib": Flag.NETWORK_ACCESS,
    "huggingface_hub": Flag.NETWORK_ACCESS,
    "torch.hub": Flag.NETWORK_ACCESS,
    "torch.distributed.rpc": Flag.NETWORK_ACCESS,
    "subprocess": Flag.PROCESS_CONTROL,
    "multiprocessing": Flag.PROCESS_CONTROL,
    "threading": Flag.PROCESS_CONTROL,
    "signal": Flag.PROCESS_CONTROL,
    "pty": Flag.PROCESS_CONTROL,
    "torch.multiprocessing": Flag.PROCESS_CONTROL,
    "ctypes": Flag.NATIVE_CODE,
    "cffi": Flag.NATIVE_CODE,
    "torch.utils.cpp_extension": Flag.NATIVE_CODE,
    "importlib": Flag.DYNAMIC_CODE,
    "builtins": Flag.DYNAMIC_CODE,
    "runpy": Flag.DYNAMIC_CODE,
    "code": Flag.DYNAMIC_CODE,
    "sys": Flag.DYNAMIC_CODE,
    "inspect": Flag.DYNAMIC_CODE,
    "gc": Flag.DYNAMIC_CODE,
    "pickle": Flag.FILE_ACCESS,
    "shutil": Flag.FILE_ACCESS,
    "pathlib": Flag.FILE_ACCESS,
    "io": Flag.FILE_ACCESS,
    "tempfile": Flag.FILE_ACCESS,
    "sqlite3": Flag.FILE_ACCESS,
}
_FORBIDDEN_NAMES = {
    "open": Flag.FILE_ACCESS,
    "exec": Flag.DYNAMIC_CODE,
    "eval": Flag.DYNAMIC_CODE,
    "compile": Flag.DYNAMIC_CODE,
    "__import__": Flag.DYNAMIC_CODE,
    "getattr": Flag.DYNAMIC_CODE,
    "setattr": Flag.DYNAMIC_CODE,
    "delattr": Flag.DYNAMIC_CODE,
    "globals": Flag.DYNAMIC_CODE,
    "locals": Flag.DYNAMIC_CODE,
    "vars": Flag.DYNAMIC_CODE,
    "__builtins__": Flag.DYNAMIC_CODE,
    "breakpoint": Flag.DYNAMIC_CODE,
    "input": Flag.DYNAMIC_CODE,
}
_FORBIDDEN_DUNDERS = frozenset(
    {
        "__dict__",
        "__class__",
        "__globals__",
        "__builtins__",
        "__code__",
        "__closure__",
        "__subclasses__",
        "__getattribute__",
        "__setattr__",
        "__import__",
        "__loader__",
        "__spec__",
        "__bases__",
        "__mro__",
        "__reduce__",
        "__reduce_ex__",
    }
)
# dotted prefixes of module attributes (after alias resolution) and what using them means
_FORBIDDEN_ATTRS = {
    "os.system": Flag.PROCESS_CONTROL,
    "os.popen": Flag.PROCESS_CONTROL,
    "os.fork": Flag.PROCESS_CONTROL,
    "os.exec": Flag.PROCESS_CONTROL,
    "os.spawn": Flag.PROCESS_CONTROL,
    "os.posix_spawn": Flag.PROCESS_CONTROL,
    "os.kill": Flag.PROCESS_CONTROL,
    "os.setsid": Flag.PROCESS_CONTROL,
    "os.setpgid": Flag.PROCESS_CONTROL,
    "os.daemon": Flag.PROCESS_CONTROL,
    "os._exit": Flag.PROCESS_CONTROL,
    "os.putenv": Flag.ENVIRONMENT_CHANGED,
    "os.unsetenv": Flag.ENVIRONMENT_CHANGED,
    "os.environ.update": Flag.ENVIRONMENT_CHANGED,
    "os.environ.setdefault": Flag.ENVIRONMENT_CHANGED,
    "os.environ.pop": Flag.ENVIRONMENT_CHANGED,
    "os.environ.clear": Flag.ENVIRONMENT_CHANGED,
    "os.sched_setaffinity": Flag.RESOURCE_GRAB,
    "os.nice": Flag.RESOURCE_GRAB,
    "os.setpriority": Flag.RESOURCE_GRAB,
    "torch.cuda.set_device": Flag.RESOURCE_GRAB,
    "torch.cuda.set_per_process_memory_fraction": Flag.RESOURCE_GRAB,
    "torch.load": Flag.FILE_ACCESS,
    "torch.save": Flag.FILE_ACCESS,
    "torch.jit.load": Flag.FILE_ACCESS,
    "torch.jit.save": Flag.FILE_ACCESS,
    "torch.package": Flag.FILE_ACCESS,
    "torch.from_file": Flag.FILE_ACCESS,
    "torch.hub": Flag.NETWORK_ACCESS,
    "torch.distributed.TCPStore": Flag.NETWORK_ACCESS,
    "torch.distributed.FileStore": Flag.FILE_ACCESS,
    "torch.distributed.rpc": Flag.NETWORK_ACCESS,
    "torch.multiprocessing": Flag.PROCESS_CONTROL,
    "torch.utils.cpp_extension": Flag.NATIVE_CODE,
    "torch.utils.data": Flag.PROCESS_CONTROL,
    "torch.ops.load_library": Flag.NATIVE_CODE,
    "torch.classes": Flag.NATIVE_CODE,
    "torch._C": Flag.NATIVE_CODE,
    "torch.cuda.cudart": Flag.NATIVE_CODE,
    "numpy.load": Flag.FILE_ACCESS,
    "numpy.save": Flag.FILE_ACCESS,
    "numpy.fromfile": Flag.FILE_ACCESS,
    "numpy.memmap": Flag.FILE_ACCESS,
    "numpy.loadtxt": Flag.FILE_ACCESS,
    "numpy.genfromtxt": Flag.FILE_ACCESS,
    "numpy.ctypeslib": Flag.NATIVE_CODE,
    "glob": Flag.FILE_ACCESS,
    "time.sleep": Flag.PROCESS_CONTROL,
}
_FILE_METHODS = frozenset({"tofile", "write_text", "write_bytes", "read_text", "read_bytes"})
# os attributes outside this set are file or process operations: refused
_OS_ALLOWED = ("os.environ", "os.path", "os.getpid", "os.cpu_count", "os.sep")

# calls whose statements are protected as a whole: they set seeds, threads, process groups
_PROTECTED_CALLS = {
    "torch.manual_seed": Flag.SEED_CHANGED,
    "torch.cuda.manual_seed": Flag.SEED_CHANGED,
    "torch.cuda.manual_seed_all": Flag.SEED_CHANGED,
    "torch.seed": Flag.SEED_CHANGED,
    "torch.random.manual_seed": Flag.SEED_CHANGED,
    "numpy.random.seed": Flag.SEED_CHANGED,
    "manual_seed": Flag.SEED_CHANGED,  # a method, e.g. torch.Generator().manual_seed(...)
    "torch.set_num_threads": Flag.RESOURCE_GRAB,
    "torch.set_num_interop_threads": Flag.RESOURCE_GRAB,
    "torch.distributed.init_process_group": Flag.RESOURCE_GRAB,
    "torch.distributed.new_group": Flag.RESOURCE_GRAB,
}

# torch.compile / inductor options that cannot move training work into untimed compilation
COMPILE_KWARGS = frozenset({"fullgraph", "dynamic", "mode", "options", "backend"})
COMPILE_MODES = frozenset({"default", "reduce-overhead", "max-autotune-no-cudagraphs"})
COMPILE_BACKENDS = frozenset({"inductor"})
INDUCTOR_OPTIONS = frozenset(
    {
        "coordinate_descent_tuning",
        "triton.cudagraphs",
        "epilogue_fusion",
        "shape_padding",
        "freezing",
    }
)
_CONFIG_PREFIXES = {
    "torch._inductor.config.": INDUCTOR_OPTIONS,
    "torch._dynamo.config.": frozenset({"cache_size_limit", "suppress_errors", "compiled_autograd"}),
}


@dataclass(frozen=True)
class Violation:
    flag: Flag
    detail: str

    def __str__(self) -> str:
        return f"{self.flag.value}: {self.detail}"


def _dump(node: ast.AST) -> str:
    return ast.dump(node, annotate_fields=False, include_attributes=False)


class _Module:
    """One parsed script: qualified functions, imports, and its statements with their scope."""

    def __init__(self, tree: ast.Module) -> None:
        self.tree = tree
        self.functions: dict[str, ast.FunctionDef | ast.AsyncFunctionDef] = {}
        self.names: dict[str, list[str]] = {}  # bare function name -> qualnames
        self.scope_of: dict[int, str] = {}  # id(statement) -> enclosing qualname
        self.aliases: dict[str, str] = {}  # local name -> dotted module path
        self._walk(tree.body, "")
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for a in node.names:
                    if a.asname:
                        self.aliases[a.asname] = a.name
                    else:
                        root = a.name.split(".")[0]
                        self.aliases[root] = root
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for a in node.names:
                    self.aliases[a.asname or a.name] = f"{node.module}.{a.name}"

    def _walk(self, body: list[ast.stmt], scope: str, in_class: bool = False) -> None:
        for stmt in body:
            self.scope_of[id(stmt)] = scope
            if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                qual = f"{scope}.{stmt.name}" if scope else stmt.name
                if not isinstance(stmt, ast.ClassDef):
                    self.functions[qual] = stmt
                    if not in_class:  # a bare name never calls a method (GPT.forward is not forward)
                        self.names.setdefault(stmt.name, []).append(qual)
                self._walk(stmt.body, qual, in_class=isinstance(stmt, ast.ClassDef))
            else:
                for field in ("body", "orelse", "finalbody", "handlers"):
                    inner = getattr(stmt, field, None)
                    if isinstance(inner, list):
                        self._walk([s for s in inner if isinstance(s, ast.stmt)], scope, in_class)
                        for h in inner:
                            if isinstance(h, ast.ExceptHandler):
                                self._walk(h.body, scope, in_class)
                if isinstance(stmt, ast.Match):
                    for case in stmt.cases:
                        self._walk(case.body, scope, in_class)

    def dotted(self, node: ast.expr) -> str | None:
        """``torch.nn.functional.relu`` for ``F.relu`` when ``F`` is an imported module alias."""
        parts: list[str] = []
        while isinstance(node, ast.Attribute):
            parts.append(node.attr)
            node = node.value
        if isinstance(node, ast.Name) and node.id in self.aliases:
            return ".".join([self.aliases[node.id], *reversed(parts)])
        return None

    def simple_statements(self) -> Iterator[tuple[str, ast.stmt, list[ast.AST]]]:
        """(scope, statement, the expressions it owns) for every statement, compound headers included."""
        for stmt in _all_statements(self.tree):
            scope = self.scope_of.get(id(stmt), "")
            if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef):
                owned: list[ast.AST] = [*stmt.decorator_list, stmt.args]
            elif isinstance(stmt, ast.ClassDef):
                owned = [*stmt.decorator_list, *stmt.bases, *stmt.keywords]
            elif isinstance(stmt, ast.If | ast.While):
                owned = [stmt.test]
            elif isinstance(stmt, ast.For | ast.AsyncFor):
                owned = [stmt.target, stmt.iter]
            elif isinstance(stmt, ast.With | ast.AsyncWith):
                owned = list(stmt.items)
            elif isinstance(stmt, ast.Try):
                owned = [h.type for h in stmt.handlers if h.type is not None]
            elif isinstance(stmt, ast.Match):
                owned = [stmt.subject]
            else:
                owned = [stmt]
            yield scope, stmt, owned


def _all_statements(tree: ast.AST) -> Iterator[ast.stmt]:
    for node in ast.walk(tree):
        if isinstance(node, ast.stmt):
            yield node


_COMPOUND = (
    ast.FunctionDef,
    ast.AsyncFunctionDef,
    ast.ClassDef,
    ast.If,
    ast.For,
    ast.AsyncFor,
    ast.While,
    ast.With,
    ast.AsyncWith,
    ast.Try,
    ast.Match,
)


def _is_simple(stmt: ast.stmt) -> bool:
    """A statement with no statements inside (compared whole with record N's)."""
    return not isinstance(stmt, _COMPOUND) and not isinstance(stmt, getattr(ast, "TryStar", ()))


def _nodes(owned: list[ast.AST]) -> Iterator[ast.AST]:
    for part in owned:
        yield from ast.walk(part)


def _touches(stmt: ast.stmt, owned: list[ast.AST], protected: frozenset[str], in_class: bool) -> bool:
    for node in _nodes(owned):
        if isinstance(node, ast.Attribute) and node.attr in protected:
            return True
    if in_class and isinstance(stmt, ast.AnnAssign | ast.Assign):
        targets = [stmt.target] if isinstance(stmt, ast.AnnAssign) else stmt.targets
        return any(isinstance(t, ast.Name) and t.id in protected for t in targets)
    return False


def _is_progress_print(owned: list[ast.AST]) -> bool:
    return any(
        isinstance(n, ast.Constant) and isinstance(n.value, str) and "val_loss" in n.value
        for n in _nodes(owned)
    )


def _called_names(nodes: Iterator[ast.AST]) -> set[str]:
    return {n.func.id for n in nodes if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}


def _call_key(mod: _Module, call: ast.Call) -> str | None:
    """The protected-call name of ``call``, if it is one."""
    dotted = mod.dotted(call.func)
    if dotted in _PROTECTED_CALLS:
        return dotted
    if isinstance(call.func, ast.Attribute) and call.func.attr == "manual_seed" and dotted is None:
        return "manual_seed"
    return None


@dataclass(frozen=True)
class _Protection:
    statements: Counter[tuple[str, str]]
    """(scope, dump) of protected statements, with the flag each change earns."""
    flags: dict[tuple[str, str], Flag]
    functions: dict[str, str]
    """qualname -> dump of a protected function."""


def _protected_parts(
    mod: _Module, names: frozenset[str]
) -> tuple[list[tuple[str, ast.stmt, Flag]], set[str]]:
    """Protected statements (with the flag a change earns) and the names of functions they call."""
    class_scopes = {
        (f"{mod.scope_of[id(n)]}.{n.name}" if mod.scope_of.get(id(n)) else n.name)
        for n in ast.walk(mod.tree)
        if isinstance(n, ast.ClassDef)
    }
    found: list[tuple[str, ast.stmt, Flag]] = []
    called: set[str] = set()
    for scope, stmt, owned in mod.simple_statements():
        flag: Flag | None = None
        if _touches(stmt, owned, names, scope in class_scopes):
            flag = Flag.PROTECTED_HYPERPARAMETER_CHANGED
        elif _is_progress_print(owned):
            flag = Flag.PROGRESS_OUTPUT_FORGED
        else:
            for node in _nodes(owned):
                if isinstance(node, ast.Call) and (key := _call_key(mod, node)):
                    flag = _PROTECTED_CALLS[key]
                    break
        if flag is None:
            continue
        found.append((scope, stmt, flag))
        if flag is not Flag.PROGRESS_OUTPUT_FORGED:
            called |= _called_names(_nodes(owned))
    return found, called


def _statement_dump(stmt: ast.stmt, owned: list[ast.AST]) -> str:
    return "|".join(_dump(o) for o in owned) if owned != [stmt] else _dump(stmt)


def protection_of(baseline: str, protected_names: frozenset[str]) -> _Protection:
    """What record N protects. ``baseline`` is trusted: it is our own record file."""
    mod = _Module(ast.parse(baseline))
    names = protected_names | SCORER_OWNED
    found, called = _protected_parts(mod, names)
    owned_of = {id(s): o for _, s, o in mod.simple_statements()}
    statements: Counter[tuple[str, str]] = Counter()
    flags: dict[tuple[str, str], Flag] = {}
    for scope, stmt, flag in found:
        key = (scope, _statement_dump(stmt, owned_of[id(stmt)]))
        statements[key] += 1
        flags[key] = flag
    # the validation computation: the function whose result is printed as val_loss
    printed = {
        n.value.id
        for scope, stmt, _ in found
        if _is_progress_print(owned_of[id(stmt)])
        for n in ast.walk(stmt)
        if isinstance(n, ast.FormattedValue) and isinstance(n.value, ast.Name)
    }
    for stmt in _all_statements(mod.tree):
        if (
            isinstance(stmt, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id in printed for t in stmt.targets)
            and isinstance(stmt.value, ast.Call)
            and isinstance(stmt.value.func, ast.Name)
        ):
            called.add(stmt.value.func.id)
    functions: dict[str, str] = {}
    todo = [q for name in called for q in mod.names.get(name, [])]
    while todo:
        qual = todo.pop()
        if qual in functions:
            continue
        fn = mod.functions[qual]
        functions[qual] = _dump(fn)
        todo += [q for name in _called_names(ast.walk(fn)) for q in mod.names.get(name, [])]
    return _Protection(statements, flags, functions)


def check_script(
    baseline: str, submission: str, *, protected_names: frozenset[str], path: str
) -> list[Violation]:
    """Every rule ``submission`` breaks, compared with record N's ``baseline`` script."""
    try:
        tree = ast.parse(submission, filename=path)
    except SyntaxError as e:
        return [Violation(Flag.SYNTAX_ERROR, f"{path}:{e.lineno}: syntax error: {e.msg}")]
    except ValueError as e:  # e.g. NUL bytes
        return [Violation(Flag.SYNTAX_ERROR, f"{path}: cannot be parsed: {e}")]
    protection = protection_of(baseline, protected_names)
    base_mod = _Module(ast.parse(baseline))
    mod = _Module(tree)
    out: list[Violation] = []

    found, _ = _protected_parts(mod, protected_names | SCORER_OWNED)
    owned_of = {id(s): o for _, s, o in mod.simple_statements()}
    mine: Counter[tuple[str, str]] = Counter()
    mine_flag: dict[tuple[str, str], tuple[Flag, int]] = {}
    for scope, stmt, flag in found:
        key = (scope, _statement_dump(stmt, owned_of[id(stmt)]))
        mine[key] += 1
        mine_flag[key] = (flag, stmt.lineno)
    for key in sorted((mine - protection.statements).keys()):
        flag, line = mine_flag[key]
        out.append(
            Violation(flag, f"{path}:{line}: protected statement added or changed (in {key[0] or 'module'})")
        )
    for key in sorted((protection.statements - mine).keys()):
        out.append(
            Violation(
                protection.flags[key], f"protected statement of record N missing (in {key[0] or 'module'})"
            )
        )
    for qual, dump in sorted(protection.functions.items()):
        fn = mod.functions.get(qual)
        if fn is None or _dump(fn) != dump:
            out.append(Violation(Flag.PROTECTED_CODE_CHANGED, f"{path}: function {qual} must be unchanged"))

    protected_fns = {id(mod.functions[q]) for q in protection.functions if q in mod.functions}
    protected_stmts = {id(s) for _, s, _ in found}
    base_protected = {id(base_mod.functions[q]) for q in protection.functions}
    record_uses = _uses(base_mod, _inside_protected(base_mod.tree, base_protected))
    record_lines = {ast.dump(st) for st in _all_statements(base_mod.tree) if _is_simple(st)}
    out += _check_free_code(mod, tree, path, protected_fns, protected_stmts, record_uses, record_lines)
    return _unique(out)


def _uses(mod: _Module, protected: set[int]) -> frozenset[str]:
    """What record N imports and uses outside its protected functions: allowed in a submission too."""
    used = set(mod.aliases.values())
    for node in ast.walk(mod.tree):
        if id(node) in protected:
            continue
        if isinstance(node, ast.Attribute) and (dotted := mod.dotted(node)):
            used.add(dotted)
        elif isinstance(node, ast.Name) and node.id in _FORBIDDEN_NAMES:
            used.add(node.id)
    return frozenset(used)


def _inside_protected(tree: ast.Module, protected_fns: set[int]) -> set[int]:
    inside: set[int] = set()
    for node in ast.walk(tree):
        if id(node) in protected_fns:
            inside |= {id(n) for n in ast.walk(node)}
    return inside


def _check_free_code(
    mod: _Module,
    tree: ast.Module,
    path: str,
    protected_fns: set[int],
    protected_stmts: set[int],
    record_uses: frozenset[str],
    record_lines: set[str],
) -> list[Violation]:
    """``record_lines``: simple statements of record N; the record's own code breaks no rule
    (its docstring may name the metric, it may set TF32 flags)."""
    out: list[Violation] = []
    skip = _inside_protected(tree, protected_fns)
    for stmt in _all_statements(tree):
        if id(stmt) in protected_stmts:
            skip |= {id(n) for n in ast.walk(stmt) if not isinstance(n, ast.stmt)}
        elif _is_simple(stmt) and ast.dump(stmt) in record_lines:
            skip |= {id(n) for n in ast.walk(stmt)}
        elif isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant):
            skip.add(id(stmt.value))  # a docstring or bare string: evaluated, never printed

    def flag(f: Flag, node: ast.AST, what: str) -> None:
        out.append(Violation(f, f"{path}:{getattr(node, 'lineno', '?')}: {what}"))

    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            _check_import(node, record_uses, flag)
        elif (
            isinstance(node, ast.Name)
            and node.id in _FORBIDDEN_NAMES
            and node.id not in mod.aliases
            and node.id not in record_uses
        ):
            flag(_FORBIDDEN_NAMES[node.id], node, f"{node.id} is not allowed")
        elif isinstance(node, ast.Attribute):
            if node.attr in _FORBIDDEN_DUNDERS:
                flag(Flag.DYNAMIC_CODE, node, f"attribute {node.attr} is not allowed")
            elif node.attr in _FILE_METHODS:
                flag(Flag.FILE_ACCESS, node, f".{node.attr}() is not allowed")
            dotted = mod.dotted(node)
            if dotted is not None and dotted not in record_uses:
                _check_attribute(dotted, node, flag)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            if any(marker in node.value for marker in _PROGRESS_MARKERS):
                flag(
                    Flag.PROGRESS_OUTPUT_FORGED,
                    node,
                    f"metric text {node.value[:40]!r} outside the record's print",
                )
            if "CUDA_VISIBLE_DEVICES" in node.value or "TORCHINDUCTOR" in node.value:
                flag(
                    Flag.RESOURCE_GRAB,
                    node,
                    f"{node.value[:40]!r}: device and compiler settings are the scorer's",
                )
        elif isinstance(node, ast.Call):
            _check_call(mod, node, flag)
        elif isinstance(node, ast.Assign | ast.AugAssign | ast.AnnAssign | ast.Delete):
            targets = node.targets if isinstance(node, ast.Assign | ast.Delete) else [node.target]
            for target in targets:
                _check_store(mod, target, node, flag)
    return out


Flagger = Callable[[Flag, ast.AST, str], None]
"""Records a violation: its flag, the node, what was found."""


def _check_import(node: ast.Import | ast.ImportFrom, record_uses: frozenset[str], flag: Flagger) -> None:
    if isinstance(node, ast.ImportFrom):
        if node.level:
            flag(Flag.FORBIDDEN_IMPORT, node, "relative imports are not allowed")
            return
        modules = [node.module or ""] + [f"{node.module}.{a.name}" for a in node.names]
    else:
        modules = [a.name for a in node.names]
    modules = [m for m in modules if m not in record_uses]
    if not modules:
        return
    for name in modules:
        for prefix, f in _IMPORT_FLAGS.items():
            if name == prefix or name.startswith(prefix + "."):
                flag(f, node, f"import of {name}")
                return
        dotted = next((p for p in _FORBIDDEN_ATTRS if name == p or name.startswith(p + ".")), None)
        if dotted is not None:
            flag(_FORBIDDEN_ATTRS[dotted], node, f"import of {name}")
            return
    first = modules[0]
    if first not in _ALLOWED_MODULES and not any(m in _ALLOWED_MODULES for m in modules):
        flag(Flag.FORBIDDEN_IMPORT, node, f"import of {first} (not allowed in a training script)")


def _check_attribute(dotted: str, node: ast.AST, flag: Flagger) -> None:
    for prefix, f in _FORBIDDEN_ATTRS.items():
        if (
            dotted == prefix
            or dotted.startswith(prefix + ".")
            or (prefix.endswith(("exec", "spawn")) and dotted.startswith(prefix))
        ):
            flag(f, node, f"{dotted} is not allowed")
            return
    if dotted.startswith("os.") and not dotted.startswith(_OS_ALLOWED):
        flag(Flag.FILE_ACCESS, node, f"{dotted} is not allowed")
    elif dotted.startswith("torch._") and not dotted.startswith(
        ("torch._dynamo.config", "torch._inductor.config", "torch._foreach")
    ):
        flag(Flag.NATIVE_CODE, node, f"{dotted}: private torch internals are not allowed")


def _check_call(mod: _Module, node: ast.Call, flag: Flagger) -> None:
    if mod.dotted(node.func) == "torch.compile":
        for kw in node.keywords:
            if kw.arg not in COMPILE_KWARGS:
                flag(Flag.COMPILE_OPTION_NOT_ALLOWED, node, f"torch.compile({kw.arg}=...) is not allowed")
            elif kw.arg == "mode" and not _constant_in(kw.value, COMPILE_MODES):
                flag(Flag.COMPILE_OPTION_NOT_ALLOWED, node, "torch.compile mode not on the allowlist")
            elif kw.arg == "backend" and not _constant_in(kw.value, COMPILE_BACKENDS):
                flag(Flag.COMPILE_OPTION_NOT_ALLOWED, node, "torch.compile backend not on the allowlist")
            elif kw.arg == "options":
                keys = kw.value.keys if isinstance(kw.value, ast.Dict) else [None]
                if not all(k is not None and _constant_in(k, INDUCTOR_OPTIONS) for k in keys):
                    flag(Flag.COMPILE_OPTION_NOT_ALLOWED, node, "torch.compile options not on the allowlist")


def _constant_in(node: ast.expr, allowed: frozenset[str]) -> bool:
    return isinstance(node, ast.Constant) and node.value in allowed


def _check_store(mod: _Module, target: ast.expr, node: ast.AST, flag: Flagger) -> None:
    if isinstance(target, ast.Tuple | ast.List):
        for t in target.elts:
            _check_store(mod, t, node, flag)
        return
    if isinstance(target, ast.Subscript):
        if mod.dotted(target.value) == "os.environ":
            flag(Flag.ENVIRONMENT_CHANGED, node, "writes to os.environ are not allowed")
        return
    if not isinstance(target, ast.Attribute):
        return
    dotted = mod.dotted(target)
    if dotted is None:
        return
    for prefix, allowed in _CONFIG_PREFIXES.items():
        if dotted.startswith(prefix):
            if dotted[len(prefix) :] not in allowed:
                flag(Flag.COMPILE_OPTION_NOT_ALLOWED, node, f"{dotted} is not on the compile allowlist")
            return
    flag(Flag.TIMER_PATCHED, node, f"assignment to module attribute {dotted}")


def _unique(violations: list[Violation]) -> list[Violation]:
    seen: set[tuple[Flag, str]] = set()
    out = []
    for v in violations:
        if (v.flag, v.detail) not in seen:
            seen.add((v.flag, v.detail))
            out.append(v)
    return out
