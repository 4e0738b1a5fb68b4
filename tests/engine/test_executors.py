import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import workers

import headrace as hr
from headrace import PipelineError


def run(pipeline: Any, items: Any, **options: Any) -> hr.RunResult:
    return hr.run(pipeline, items, progress=False, **options)


# --- threads -----------------------------------------------------------------------


def test_thread_executor_runs_blocking_calls_off_the_event_loop() -> None:
    names: set[str] = set()
    loop_thread = threading.get_ident()
    seen_threads: set[int] = set()

    def blocking(x: int) -> int:
        names.add(threading.current_thread().name)
        seen_threads.add(threading.get_ident())
        time.sleep(0.001)
        return x * 2

    result = run(hr.step(blocking, executor="thread", concurrency=4), range(40))
    assert sorted(result.outputs) == [x * 2 for x in range(40)]
    assert loop_thread not in seen_threads
    assert all(name.startswith("headrace-blocking") for name in names)
    assert 1 < len(names) <= 4


def test_an_exception_in_a_thread_worker_is_a_dead_letter() -> None:
    def fragile(x: int) -> int:
        if x == 1:
            raise LookupError("missing")
        return x

    result = run(hr.step(fragile, executor="thread"), range(3))
    [dead] = result.dead_letters
    assert (dead.index, dead.step, dead.error_type, dead.message) == (
        1,
        "fragile",
        "LookupError",
        "missing",
    )


def test_a_thread_step_timeout_fails_the_item() -> None:
    def slow(x: int) -> int:
        if x == 0:
            time.sleep(0.5)
        return x

    result = run(hr.step(slow, executor="thread", timeout="50ms", concurrency=2), [0, 1])
    assert result.outputs == [1]
    assert result.dead_letters[0].error_type == "StepTimeout"


def test_batched_steps_run_on_threads_too() -> None:
    def tag(xs: list[int]) -> list[str]:
        return [f"{threading.current_thread().name}:{x}" for x in xs]

    step = hr.step(tag, executor="thread", batch=hr.Batch(max_size=5))
    result = run(step, range(12))
    assert len(result.outputs) == 12
    assert all(out.startswith("headrace-tag") for out in result.outputs)


# --- processes -------------------------------------------------------------------------


@pytest.mark.slow
def test_process_executor_returns_every_result_in_chunks() -> None:
    result = run(hr.step(workers.cube, executor="process", concurrency=2), range(200), ordered=True)
    assert result.outputs == [x**3 for x in range(200)]
    metrics = result.metrics.step("cube")
    assert metrics.items == 200
    assert metrics.calls < 200  # items travel in chunks
    assert max(metrics.batch_sizes) <= 16
    assert metrics.latency.count == 200  # timed per item inside the worker


@pytest.mark.slow
def test_process_executor_runs_in_other_processes() -> None:
    result = run(hr.step(workers.worker_pid, executor="process", concurrency=2), range(64))
    assert os.getpid() not in set(result.outputs)


@pytest.mark.slow
def test_a_decorated_module_function_can_run_in_processes() -> None:
    result = run(workers.decorated_square, range(10), ordered=True)
    assert result.outputs == [x * x for x in range(10)]


@pytest.mark.slow
def test_an_exception_in_a_worker_process_is_a_dead_letter_alone() -> None:
    result = run(hr.step(workers.fail_on_three, executor="process", concurrency=2), range(8))
    assert sorted(result.outputs) == [0, 1, 2, 4, 5, 6, 7]
    [dead] = result.dead_letters
    assert (dead.item, dead.step, dead.error_type, dead.message) == (
        3,
        "fail_on_three",
        "ValueError",
        "three is not allowed",
    )


@pytest.mark.slow
def test_an_exception_that_cannot_be_pickled_still_reports_its_type() -> None:
    [dead] = run(
        hr.step(workers.raise_unpicklable, executor="process", concurrency=1), [1]
    ).dead_letters
    assert dead.error_type == "RemoteError"
    assert dead.message == "workers.Unpicklable: holds a lock"
    assert "raise Unpicklable" in dead.error.remote_traceback  # type: ignore[union-attr]


@pytest.mark.slow
def test_a_per_item_timeout_interrupts_the_item_inside_the_worker() -> None:
    step = hr.step(workers.hang_on_two, executor="process", concurrency=1, timeout="200ms")
    result = run(step, range(4))
    assert sorted(result.outputs) == [0, 1, 3]
    [dead] = result.dead_letters
    assert (dead.item, dead.error_type) == (2, "StepTimeout")


@pytest.mark.slow
def test_batched_functions_run_whole_batches_in_workers() -> None:
    step = hr.step(
        workers.sum_batch, executor="process", concurrency=2, batch=hr.Batch(max_size=10)
    )
    result = run(step, range(35), ordered=True)
    assert result.outputs == [x + 100 for x in range(35)]
    assert max(result.metrics.step("sum_batch").batch_sizes) <= 10


def test_a_lambda_for_the_process_executor_is_refused_before_anything_runs() -> None:
    with pytest.raises(PipelineError) as caught:
        run(hr.step(lambda x: x, executor="process"), [1])
    assert str(caught.value) == (
        "step 'lambda' uses executor='process', but its function <lambda> is a lambda or is "
        "defined inside another function; worker processes import functions by name, so "
        "define it at the top level of a module"
    )


def test_a_local_function_for_the_process_executor_is_refused() -> None:
    def local(x: int) -> int:
        return x

    with pytest.raises(PipelineError, match="is a lambda or is defined inside another function"):
        run(hr.step(local, executor="process"), [1])


def test_an_unpicklable_callable_object_is_refused_with_the_pickle_error() -> None:
    class Holder:
        def __init__(self) -> None:
            self.lock = threading.Lock()

        def __call__(self, x: int) -> int:
            return x

    with pytest.raises(PipelineError, match="its callable cannot be pickled"):
        run(hr.step(Holder(), executor="process"), [1])


# --- Ctrl-C ------------------------------------------------------------------------------

THREAD_SCRIPT = textwrap.dedent(
    """
    import signal, sys, threading, time
    signal.signal(signal.SIGINT, signal.default_int_handler)
    import headrace as hr

    def blocking(x):
        time.sleep(0.05)
        return x

    def started(x):
        print("started", flush=True)
        return x

    try:
        hr.run(hr.step(blocking, executor="thread", concurrency=4) >> started,
               range(100_000), progress=False)
    finally:
        print("threads left:", [t.name for t in threading.enumerate()
                                if t.name.startswith("headrace-")], flush=True)
    """
)


@pytest.mark.slow
def test_ctrl_c_during_a_thread_run_stops_it_and_its_pool(tmp_path: Path) -> None:
    out = tmp_path / "stdout.txt"
    with out.open("wb") as stdout:
        child = subprocess.Popen(
            [sys.executable, "-c", THREAD_SCRIPT], stdout=stdout, stderr=subprocess.DEVNULL
        )
    try:
        deadline = time.monotonic() + 60
        while "started" not in out.read_text():
            assert child.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        child.send_signal(signal.SIGINT)
        child.wait(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode != 0
    # the pool's threads finish their current call and are gone when the run ends
    assert "threads left: []" in out.read_text()


SCRIPT = textwrap.dedent(
    """
    import signal
    import sys
    # as at a terminal, whatever the test runner's own SIGINT disposition is
    signal.signal(signal.SIGINT, signal.default_int_handler)
    sys.path.insert(0, {tests!r})
    import headrace as hr
    import workers

    if __name__ == "__main__":
        step = hr.step(workers.record_pid_then_spin, executor="process", concurrency=2)
        hr.run(step, range(10_000), progress=False)
    """
)


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return "\nState:\tZ" not in status


def _processes_with_marker(marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if f"HEADRACE_TEST_MARKER={marker}".encode() in environ and _alive(int(entry.name)):
            found.append(int(entry.name))
    return found


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGKILL], ids=["ctrl-c", "sigkill"])
def test_an_interrupted_process_run_leaves_no_child_process(
    tmp_path: Path, signum: signal.Signals
) -> None:
    script = tmp_path / "interrupted.py"
    script.write_text(SCRIPT.format(tests=str(Path(__file__).parent.parent)))
    pid_dir = tmp_path / "pids"
    pid_dir.mkdir()
    marker = f"{os.getpid()}-{time.monotonic_ns()}"
    env = {**os.environ, "HEADRACE_PID_DIR": str(pid_dir), "HEADRACE_TEST_MARKER": marker}
    log = tmp_path / "stderr.txt"
    # a file, not a pipe: reading a pipe to its end would also wait for every
    # process that inherited it
    with log.open("wb") as stderr:
        child = subprocess.Popen(
            [sys.executable, str(script)], env=env, stdout=subprocess.DEVNULL, stderr=stderr
        )
    try:
        deadline = time.monotonic() + 60
        while len(list(pid_dir.iterdir())) < 2:  # both workers are busy
            assert child.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "workers never started: " + log.read_text()
            time.sleep(0.05)
        child.send_signal(signum)
        child.wait(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode != 0
    if signum == signal.SIGINT:
        assert "KeyboardInterrupt" in log.read_text()
    workers_seen = [int(p.name) for p in pid_dir.iterdir()]
    deadline = time.monotonic() + 10
    while (any(_alive(pid) for pid in workers_seen) or _processes_with_marker(marker)) and (
        time.monotonic() < deadline
    ):
        time.sleep(0.05)
    assert [pid for pid in workers_seen if _alive(pid)] == []
    assert _processes_with_marker(marker) == []


@pytest.mark.slow
def test_a_worker_killed_by_an_item_costs_only_that_item() -> None:
    step = hr.step(workers.die_on_5_and_23, executor="process", concurrency=2)
    result = run(step, range(80))
    assert sorted(result.outputs) == [x for x in range(80) if x not in (5, 23)]
    assert sorted((d.item, d.error_type) for d in result.dead_letters) == [
        (5, "BrokenProcessPool"),
        (23, "BrokenProcessPool"),
    ]
