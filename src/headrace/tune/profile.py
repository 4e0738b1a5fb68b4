"""``headrace profile``: where a run's time goes, from samples of every thread's stack.

A thread started here reads every thread's stack (``sys._current_frames()``) every
few milliseconds while a sample of the input runs through the pipeline, durably, as
a real run would. Each sample is put in one place, in this order:

- **a step's own code**: a frame of the function a step runs (``@hr.step``'s
  function, a local model's forward pass) is on the stack; a model step loading
  its model (the first batch in a process) is its own line, *loading its model*;
- **waiting**: the event loop is idle in its selector (on the network, a rate
  limit, a timer, a process step's workers);
- **headrace**: a headrace frame is on the stack, named by its part (engine,
  store, llm client, cache, source and sink, limits);
- **libraries**: the rest (asyncio's and aiohttp's own work between callbacks).

Idle worker threads (waiting for work) are left out, so a thread's time is its busy
time. Steps on the process executor run in other processes: their time shows as
waiting here, and as the step's busy time in the run's metrics.

The sampler needs the GIL to look, so it looks when a thread gives the GIL up: at
I/O, and at the interpreter's forced switches. While it samples, the switch interval
is shortened to a tenth of the sampling interval so that it looks often inside busy
Python code too; still, samples of threads that compete for the GIL lean towards
where they give it up (handing a result back to the loop), so a thread step's
sampled share is a lower bound, and :meth:`ProfiledRun.measured` gives its CPU and
busy time as its calls measured them. The stacks are written as a speedscope
profile and an SVG flame graph.
"""

from __future__ import annotations

import sys
import threading
import time
import types
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..engine.result import RunResult
from ..io.records import Source
from ..models.model_step import load_once
from ..pipeline.step import Step
from ..sim import SimConfig
from .flame import Frame, flame_svg, speedscope
from .knobs import all_steps, point_at, simulated, without_caches

__all__ = ["Profile", "ProfiledRun", "StackSampler", "profile_run", "step_code"]

HEADRACE = str(Path(__file__).resolve().parent.parent)
PARTS = {
    "engine": "engine",
    "store": "store",
    "llm": "llm client",
    "cache": "cache",
    "io": "source and sink",
    "limits": "limits",
    "models": "local models",
}
IDLE = (
    ("selectors.py", "select"),
    ("threading.py", "wait"),
    ("queue.py", "get"),
    ("thread.py", "_worker"),
    ("threading.py", "_wait_for_tstate_lock"),
    ("connection.py", "_recv"),
)
WAITING = "waiting (network, rate limits, timers, other processes)"
LOADING = load_once.__code__
"""Where a model step loads its model: its own line, not the step's own code."""
LIBRARIES = "libraries (asyncio, the HTTP client, ...)"


def step_code(root: Step[Any, Any]) -> dict[types.CodeType, str]:
    """The code of each step's own function (what counts as the step's time), by step."""
    found: dict[types.CodeType, str] = {}
    for step in all_steps(root):
        fn = getattr(step, "fn", None) or getattr(step, "run_batch", None)
        fn = getattr(fn, "__func__", fn)
        if not isinstance(fn, types.FunctionType) and callable(fn):
            fn = type(fn).__call__  # a callable object: its __call__ is the step's code
        code = getattr(fn, "__code__", None)
        if isinstance(code, types.CodeType):
            found.setdefault(code, step.name)
    return found


def _is_callback(function: str, file: str) -> bool:
    """asyncio's frame that runs one callback or task step (``Handle._run``)."""
    return function == "Handle._run" and file.endswith("events.py")


def _stack(frame: types.FrameType | None) -> tuple[list[Frame], list[types.CodeType]]:
    frames: list[Frame] = []
    codes: list[types.CodeType] = []
    while frame is not None:
        code = frame.f_code
        codes.append(code)
        frames.append((code.co_qualname, code.co_filename, code.co_firstlineno))
        frame = frame.f_back
    frames.reverse()
    codes.reverse()
    return frames, codes


@dataclass(slots=True)
class Profile:
    """What the sampler saw: seconds per place, per thread kind, and the stacks."""

    interval_s: float
    loop: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    threads: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    thread_names: dict[str, set[str]] = field(default_factory=dict)
    stacks: defaultdict[tuple[str, tuple[Frame, ...]], float] = field(
        default_factory=lambda: defaultdict(float)
    )
    ticks: int = 0
    wall_s: float = 0.0

    def table(self) -> str:
        """A short table: the event loop's time by place, then the worker threads'."""
        lines = [f"the event loop's {self.wall_s:.2f} s:"]
        total = sum(self.loop.values()) or 1.0
        for place, seconds in _largest(self.loop):
            lines.append(f"  {place:<58} {seconds / total:>6.1%} {seconds:>8.2f} s")
        if self.threads:
            lines.append("worker threads, busy:")
            for place, seconds in _largest(self.threads):
                count = len(self.thread_names.get(place, ()))
                threads = f"({count} thread{'s' if count != 1 else ''})"
                lines.append(f"  {place:<58} {threads:>14} {seconds:>6.2f} s")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """The seconds per place, rounded (for tests and ``--json``)."""
        return {
            "wall_s": round(self.wall_s, 3),
            "interval_s": self.interval_s,
            "ticks": self.ticks,
            "loop": {k: round(v, 4) for k, v in _largest(self.loop)},
            "threads": {k: round(v, 4) for k, v in _largest(self.threads)},
        }

    def frames(self) -> Iterator[tuple[str, tuple[Frame, ...], float]]:
        """Each distinct stack: the thread kind, the frames root first, its seconds."""
        for (kind, stack), seconds in self.stacks.items():
            yield kind, stack, float(seconds)


def _largest(seconds: dict[str, float]) -> list[tuple[str, float]]:
    return sorted(seconds.items(), key=lambda kv: -kv[1])


class StackSampler:
    """Samples every thread's stack every ``interval_s`` from a daemon thread.

    ``loop_thread`` is the ident of the thread that runs the event loop; its idle
    samples are waiting, other threads' idle samples are left out.
    """

    def __init__(
        self, codes: dict[types.CodeType, str], loop_thread: int, interval_s: float = 0.005
    ) -> None:
        self.codes = codes
        self.loop_thread = loop_thread
        self.profile = Profile(interval_s)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="headrace-profiler", daemon=True)

    def __enter__(self) -> Profile:
        # a thread waiting for the GIL gets it when the running one gives it up; a
        # CPU-bound thread gives it up every switch interval (5 ms), and the sampler
        # rarely wins then: a shorter interval lets it see threads busy in Python
        self._switch = sys.getswitchinterval()
        sys.setswitchinterval(min(self._switch, self.profile.interval_s / 10))
        self._started = time.perf_counter()
        self._thread.start()
        return self.profile

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.profile.wall_s = time.perf_counter() - self._started
        sys.setswitchinterval(self._switch)

    def _run(self) -> None:
        me = threading.get_ident()
        names = {t.ident: t.name for t in threading.enumerate()}
        last = time.perf_counter()
        while not self._stop.wait(self.profile.interval_s):
            now = time.perf_counter()
            weight, last = now - last, now
            self.profile.ticks += 1
            for ident, frame in sys._current_frames().items():
                if ident == me:
                    continue
                if ident not in names:
                    names = {t.ident: t.name for t in threading.enumerate()}
                self._record(ident, names.get(ident, str(ident)), frame, weight)

    def _record(self, ident: int, name: str, frame: types.FrameType, weight: float) -> None:
        frames, codes = _stack(frame)
        on_loop = ident == self.loop_thread
        leaf = frames[-1] if frames else ("", "", 0)
        idle = any(leaf[1].endswith(file) and leaf[0].endswith(fn) for file, fn in IDLE)
        if on_loop:  # what runs the loop (the CLI, asyncio.run) is not the callback's work
            inner = [i for i, (fn, file, _) in enumerate(frames) if _is_callback(fn, file)]
            codes = codes[inner[-1] + 1 :] if inner else codes
        place = WAITING if idle and on_loop else self._place(codes)
        if idle and not on_loop and not place.startswith("step "):
            return  # a worker thread waiting for work
        kind = "loop" if on_loop else "thread"
        (self.profile.loop if on_loop else self.profile.threads)[place] += weight
        if not on_loop:
            self.profile.thread_names.setdefault(place, set()).add(name)
        self.profile.stacks[(kind, tuple(frames))] += weight

    def _place(self, codes: list[types.CodeType]) -> str:
        loading = LOADING in codes
        for code in reversed(codes):  # the innermost step function
            step = self.codes.get(code)
            if step is not None:
                return f"step {step}: {'loading its model' if loading else 'its own code'}"
        for code in reversed(codes):
            path = code.co_filename
            if path.startswith(HEADRACE):
                part = path[len(HEADRACE) :].lstrip("/\\").split("/")[0].removesuffix(".py")
                return f"headrace: {PARTS.get(part, part)}"
        return LIBRARIES


@dataclass(frozen=True, slots=True)
class ProfiledRun:
    """A profiled run: what the sampler saw, the run's result, the files written."""

    profile: Profile
    result: RunResult
    files: list[Path]

    def measured(self) -> str:
        """The thread steps' CPU and busy time as their calls measured them (exact,
        where the samples of threads competing for the GIL are not)."""
        lines = [
            f"  step {s.name}: {s.cpu_s:.2f} s of CPU in {s.busy_s:.2f} s busy"
            for s in self.result.metrics.steps
            if s.executor == "thread"
        ]
        return "\n".join(["thread steps, measured by their calls:", *lines]) if lines else ""


def profile_run(
    root: Step[Any, Any],
    source: Source,
    run_dir: Path,
    *,
    interval_s: float = 0.005,
    sim: SimConfig | None = None,
    title: str = "pipeline",
) -> ProfiledRun:
    """Run ``source`` through ``root`` durably in ``run_dir`` (started afresh, its output
    in ``run_dir/output.jsonl``) while sampling the stacks; write
    ``profile.speedscope.json`` and ``profile.svg`` there. Steps' caches are turned off,
    and with ``sim`` the LLM clients call a ``headrace sim``. ``root`` is changed in
    place: give a pipeline loaded for this."""
    from ..engine.runner import run
    from ..io import sink_at
    from ..report.page import write_atomically

    without_caches(root)
    run_dir.mkdir(parents=True, exist_ok=True)
    with simulated(sim) as server:
        if server is not None:
            point_at(root, server.url)
        sink = sink_at(str(run_dir / "output.jsonl"))
        with StackSampler(step_code(root), threading.get_ident(), interval_s) as seen:
            result = run(
                root, source, sink=sink, run_dir=run_dir, fresh=True, overwrite=True, progress=False
            )
    files = [
        write_atomically(run_dir / "profile.speedscope.json", speedscope(seen, title)),
        write_atomically(
            run_dir / "profile.svg", flame_svg(seen, f"headrace profile: {title}").encode()
        ),
    ]
    return ProfiledRun(seen, result, files)
