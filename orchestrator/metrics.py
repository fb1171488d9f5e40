"""Prometheus metrics of the orchestrator: one registry, and the hooks the core calls.

Names follow Prometheus conventions (``speedrun_`` prefix, base units in the name,
``_total`` counters). Labels are bounded sets only: task, agent, model, backend,
state, outcome, reason, operation, role, phase; never an attempt id.

Where the numbers come from:
- the lifecycle and the journal ingest call the hooks below (one line each);
- ``refresh_from_store`` sets the gauges that describe the store as a whole
  (attempts per active state, age of the oldest one), so they hold across restarts
  and across several orchestrators sharing one store;
- ``speedrun serve`` exposes the registry at /metrics; one-shot commands write it
  to ``Settings.metrics_textfile`` (node_exporter textfile-collector format).

prometheus-client is the ``metrics`` extra. Without it every hook is a no-op and
only exporting (``serve``, the textfile) fails, with a clear message.
"""

from __future__ import annotations

import contextlib
import time
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator import __version__
from orchestrator.domain import ACTIVE_STATES, Attempt, AttemptState, ToolCall
from orchestrator.errors import ToolBudgetExceeded, UsageError

if TYPE_CHECKING:
    from orchestrator.sandbox.api import JournalPage
    from orchestrator.store.base import Store

try:
    import prometheus_client as _prom
except ImportError:  # the metrics extra is not installed
    _prom = None  # type: ignore[assignment]

# Tool API operations (route names of orchestrator.sandbox.server); anything else the
# journal holds (an unmatched path an agent made up) is counted as "other".
TOOL_OPERATIONS = frozenset(
    {
        "list_files",
        "read_file",
        "write_file",
        "apply_patch",
        "run_experiment",
        "experiment_status",
        "experiment_log",
        "submit",
    }
)
NO_MODEL = "none"
_SECONDS_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200)
_FAST_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_FSR_BUCKETS = (-1, -0.5, -0.25, 0, 0.1, 0.25, 0.5, 0.75, 0.9, 1, 1.1, 1.25, 1.5, 2)


class _Noop:
    """Stands in for a metric when prometheus-client is absent."""

    def labels(self, *_a: Any, **_k: Any) -> _Noop:
        return self

    def inc(self, *_a: Any) -> None: ...
    def set(self, *_a: Any) -> None: ...
    def observe(self, *_a: Any) -> None: ...


REGISTRY: Any = _prom.CollectorRegistry(auto_describe=True) if _prom else None


def _metric(kind: str, name: str, doc: str, labels: Iterable[str] = (), **kw: Any) -> Any:
    if _prom is None:
        return _Noop()
    return getattr(_prom, kind)(name, doc, list(labels), registry=REGISTRY, **kw)


# --- attempts --------------------------------------------------------------------------
ATTEMPTS_IN_STATE = _metric(
    "Gauge", "speedrun_attempts_in_state", "Attempts in each active state (from the store).", ["state"]
)
OLDEST_IN_STATE = _metric(
    "Gauge",
    "speedrun_attempt_oldest_in_state_seconds",
    "How long the oldest attempt in each active state has been in it (0 when none).",
    ["state"],
)
ATTEMPTS_FINISHED = _metric(
    "Counter",
    "speedrun_attempts_finished_total",
    "Attempts that reached an outcome.",
    ["task", "agent", "model", "backend", "outcome"],
)
ATTEMPT_DURATION = _metric(
    "Histogram",
    "speedrun_attempt_duration_seconds",
    "Creation to outcome, per attempt.",
    ["backend", "outcome"],
    buckets=_SECONDS_BUCKETS,
)
QUEUE_WAIT = _metric(
    "Histogram",
    "speedrun_attempt_queue_wait_seconds",
    "Creation to the start of provisioning.",
    ["backend"],
    buckets=_SECONDS_BUCKETS,
)
BUDGET_OVERRUNS = _metric(
    "Counter",
    "speedrun_budget_overruns_total",
    "Attempts or calls stopped by a budget (wall_time, experiments, tokens, cost).",
    ["task", "agent", "budget"],
)
# --- sandboxes -------------------------------------------------------------------------
SANDBOX_STARTS = _metric(
    "Counter",
    "speedrun_sandbox_starts_total",
    "Sandbox starts by result (ok, failed).",
    ["backend", "result"],
)
PROVISIONING = _metric(
    "Histogram",
    "speedrun_sandbox_provisioning_seconds",
    "Time to start a sandbox until its tool API answers.",
    ["backend"],
    buckets=_SECONDS_BUCKETS,
)
IMAGE_PULL = _metric(
    "Histogram",
    "speedrun_image_pull_seconds",
    "Image pulls, where the backend can tell.",
    ["backend"],
    buckets=_SECONDS_BUCKETS,
)
LEAKED_REMOVED = _metric(
    "Counter",
    "speedrun_leaked_resources_removed_total",
    "Leftover processes, folders, containers or pods removed by cleanup.",
    ["backend"],
)
# --- tool API and experiments ------------------------------------------------------------
TOOL_CALLS = _metric(
    "Counter",
    "speedrun_tool_calls_total",
    "Tool API calls by operation and HTTP status.",
    ["operation", "code"],
)
TOOL_CALL_DURATION = _metric(
    "Histogram",
    "speedrun_tool_call_duration_seconds",
    "Tool API call latency inside the sandbox.",
    ["operation"],
    buckets=_FAST_BUCKETS,
)
EXPERIMENTS = _metric(
    "Counter", "speedrun_experiments_total", "Agent experiments by how they ended.", ["task", "reason"]
)
EXPERIMENT_DURATION = _metric(
    "Histogram",
    "speedrun_experiment_duration_seconds",
    "Wall time of agent experiments.",
    ["task"],
    buckets=_SECONDS_BUCKETS,
)
# --- scorer ----------------------------------------------------------------------------
SCORER_SESSIONS = _metric(
    "Counter",
    "speedrun_scorer_sessions_total",
    "Scoring sessions by result (ok, failed: the scorer itself broke).",
    ["task", "backend", "result"],
)
SCORER_SESSION_DURATION = _metric(
    "Histogram",
    "speedrun_scorer_session_duration_seconds",
    "Wall time of a scoring session (all runs, all repeats).",
    ["backend"],
    buckets=_SECONDS_BUCKETS,
)
SCORER_RUNS = _metric(
    "Counter",
    "speedrun_scorer_runs_total",
    "Scorer runs by role and how the process ended.",
    ["task", "role", "reason"],
)
SCORER_RUN_DURATION = _metric(
    "Histogram",
    "speedrun_scorer_run_duration_seconds",
    "Wall time of one scorer run.",
    ["task", "role"],
    buckets=_SECONDS_BUCKETS,
)
FSR = _metric(
    "Histogram",
    "speedrun_fsr_ratio",
    "Fraction of speedup recovered by scored submissions.",
    ["task", "agent", "model"],
    buckets=_FSR_BUCKETS,
)
INTEGRITY_FLAGS = _metric(
    "Counter",
    "speedrun_integrity_flags_total",
    "Flags the scorer raised on runs (crashed, timed_out, reported_time_exceeds_wall, ...).",
    ["task", "role", "reason"],
)
# --- spend -----------------------------------------------------------------------------
GPU_SECONDS = _metric(
    "Counter",
    "speedrun_gpu_seconds_total",
    "GPU-seconds used (wall time x GPUs visible), by phase (experiment, scoring).",
    ["task", "model", "phase"],
)
LLM_TOKENS = _metric(
    "Counter", "speedrun_llm_tokens_total", "LLM tokens by direction.", ["task", "model", "direction"]
)
LLM_COST = _metric(
    "Counter", "speedrun_llm_cost_dollars_total", "LLM spend in US dollars.", ["task", "model"]
)
BUILD_INFO = _metric(
    "Gauge", "speedrun_build_info", "The running orchestrator's version (always 1).", ["version"]
)
BUILD_INFO.labels(__version__).set(1)


def model_of(attempt: Attempt) -> str:
    """The LLM behind the attempt's agent, or ``none`` (oracle, null, file)."""
    return str(attempt.config.model or NO_MODEL)


# Attempts in flight in this process: their labels, and experiments already counted.
_IN_FLIGHT: dict[str, tuple[str, str, set[int]]] = {}
# Control runs are shared by every attempt of a scoring session: count them once.
_SEEN_CONTROL_RUNS: OrderedDict[tuple[str, str], None] = OrderedDict()
_SEEN_CAP = 4096


# --- hooks (one line each in the core) ---------------------------------------------------


def attempt_provisioning(attempt: Attempt) -> None:
    """The attempt left the queue."""
    _IN_FLIGHT[attempt.id] = (attempt.task_id, attempt.agent, set())
    QUEUE_WAIT.labels(attempt.backend).observe(max(0.0, time.time() - attempt.created_at))


@contextlib.contextmanager
def sandbox_start(backend: str) -> Iterator[None]:
    started = time.monotonic()
    try:
        yield
    except BaseException:
        SANDBOX_STARTS.labels(backend, "failed").inc()
        raise
    SANDBOX_STARTS.labels(backend, "ok").inc()
    PROVISIONING.labels(backend).observe(time.monotonic() - started)


def image_pulled(backend: str, seconds: float) -> None:
    IMAGE_PULL.labels(backend).observe(seconds)


def journal_page(attempt_id: str, page: JournalPage) -> None:
    """New tool calls of a journal page, and experiments that ended since the last page."""
    task, agent, counted = _IN_FLIGHT.get(attempt_id, ("unknown", "unknown", set()))
    tool_calls(page.calls)
    for call in page.calls:
        if call.error == ToolBudgetExceeded.code:  # the experiment cap
            BUDGET_OVERRUNS.labels(task, agent, "experiments").inc()
    for e in page.experiments:
        if e.status == "finished" and e.number not in counted:
            counted.add(e.number)
            EXPERIMENTS.labels(task, e.reason or "unknown").inc()
            if e.wall_s is not None:
                EXPERIMENT_DURATION.labels(task).observe(e.wall_s)


def tool_calls(calls: Iterable[ToolCall]) -> None:
    for call in calls:
        op = call.op if call.op in TOOL_OPERATIONS else "other"
        TOOL_CALLS.labels(op, str(call.status)).inc()
        TOOL_CALL_DURATION.labels(op).observe(call.duration_ms / 1000)


def budget_overrun(attempt: Attempt, budget: str) -> None:
    BUDGET_OVERRUNS.labels(attempt.task_id, attempt.agent, budget).inc()


def llm_usage(task: str, model: str, *, input_tokens: int, output_tokens: int, cost_dollars: float) -> None:
    """For agent runtimes: what one model call used."""
    LLM_TOKENS.labels(task, model, "input").inc(input_tokens)
    LLM_TOKENS.labels(task, model, "output").inc(output_tokens)
    LLM_COST.labels(task, model).inc(cost_dollars)


@contextlib.contextmanager
def scoring_session(task: str, backend: str) -> Iterator[None]:
    started = time.monotonic()
    try:
        yield
    except BaseException:
        SCORER_SESSIONS.labels(task, backend, "failed").inc()
        raise
    finally:
        SCORER_SESSION_DURATION.labels(backend).observe(time.monotonic() - started)
    SCORER_SESSIONS.labels(task, backend, "ok").inc()


def attempt_finished(attempt: Attempt, result: dict[str, Any] | None = None) -> None:
    """An attempt reached its outcome; ``result`` is its stored score, when it was scored."""
    outcome = attempt.outcome.value if attempt.outcome else "unknown"
    model = model_of(attempt)
    ATTEMPTS_FINISHED.labels(attempt.task_id, attempt.agent, model, attempt.backend, outcome).inc()
    ATTEMPT_DURATION.labels(attempt.backend, outcome).observe(
        max(0.0, attempt.updated_at - attempt.created_at)
    )
    _IN_FLIGHT.pop(attempt.id, None)
    if result is None:
        return
    if result.get("fsr") is not None:
        FSR.labels(attempt.task_id, attempt.agent, model).observe(result["fsr"])
    gpus = len((result.get("fingerprint") or {}).get("gpus") or [])
    session = str(result.get("session_id", ""))
    for run in result.get("runs", []):
        role = run["role"]
        if role != "submission":
            key = (session, run["label"])
            if key in _SEEN_CONTROL_RUNS:
                continue
            _SEEN_CONTROL_RUNS[key] = None
            if len(_SEEN_CONTROL_RUNS) > _SEEN_CAP:
                _SEEN_CONTROL_RUNS.popitem(last=False)
        elif run.get("attempt_id") != attempt.id:
            continue
        SCORER_RUNS.labels(attempt.task_id, role, run["reason"]).inc()
        SCORER_RUN_DURATION.labels(attempt.task_id, role).observe(run["wall_s"])
        GPU_SECONDS.labels(attempt.task_id, model if role == "submission" else NO_MODEL, "scoring").inc(
            run["wall_s"] * gpus
        )
        for flag in run.get("flags", []):
            INTEGRITY_FLAGS.labels(attempt.task_id, role, flag).inc()
    if not result.get("runs"):  # refused before running: the flags are the submission's
        for flag in result.get("flags", []):
            INTEGRITY_FLAGS.labels(attempt.task_id, "submission", flag).inc()


def leaked_resources_removed(backend: str, count: int) -> None:
    LEAKED_REMOVED.labels(backend).inc(count)


# --- export ------------------------------------------------------------------------------


async def refresh_from_store(store: Store) -> None:
    """Set the store-wide gauges: attempts per active state and the oldest one's age."""
    active = await store.list_attempts(states=ACTIVE_STATES, limit=1_000_000)
    now = time.time()
    for state in AttemptState:
        if state is AttemptState.FINISHED:
            continue
        in_state = [a for a in active if a.state is state]
        ATTEMPTS_IN_STATE.labels(state.value).set(len(in_state))
        OLDEST_IN_STATE.labels(state.value).set(max((now - a.updated_at for a in in_state), default=0.0))


def require_client() -> Any:
    """The prometheus_client module. Raises: UsageError without the metrics extra."""
    if _prom is None:
        raise UsageError("metrics need prometheus-client: pip install 'speedrun-orchestrator[metrics]'")
    return _prom


def exposition() -> bytes:
    """The registry in the Prometheus text format."""
    text: bytes = require_client().generate_latest(REGISTRY)
    return text


def write_textfile(path: Path) -> None:
    """Atomically write the registry for node_exporter's textfile collector."""
    path.parent.mkdir(parents=True, exist_ok=True)
    require_client().write_to_textfile(str(path), REGISTRY)


def exported_names() -> frozenset[str]:
    """Every series name the registry can expose (``_total``, ``_bucket``, ... included)."""
    suffixes = {
        "counter": ("_total", "_created"),
        "gauge": ("",),
        "histogram": ("_bucket", "_sum", "_count", "_created"),
        "summary": ("", "_sum", "_count", "_created"),
        "info": ("_info",),
    }
    names: set[str] = set()
    for family in require_client() and REGISTRY.collect():
        names.update(family.name + s for s in suffixes.get(family.type, ("",)))
    return frozenset(names)


async def export_textfile(store: Store, path: Path | None) -> None:
    """For one-shot commands: refresh the store gauges and write the textfile, if one is set."""
    if path is None:
        return
    await refresh_from_store(store)
    write_textfile(path)
