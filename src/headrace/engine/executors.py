"""Where a step's body runs: the event loop, a thread pool, or a process pool.

Process pools receive work in chunks, so the cost of crossing a process boundary
is paid once per chunk, not once per item. The function travels *by reference*
(module and qualified name) and is imported in the worker; per-item results and
errors come back one by one, so one bad item does not fail its chunk.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import pickle
import signal
import sys
import threading
import time
import traceback
import types
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from ..errors import PipelineError, RemoteError, StepRaisedControl, StepTimeout
from ..loading.imports import import_object

__all__ = [
    "ItemFailure",
    "FunctionRef",
    "RemoteError",
    "apply_batch",
    "apply_each",
    "function_ref",
    "ProcessPool",
    "close_thread_pool",
    "open_thread_pool",
]


class ItemFailure:
    """One item's failure inside a chunk or batch result; the item becomes a dead letter."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


class FunctionRef:
    """A picklable reference to a module-level function, resolved in the worker."""

    __slots__ = ("module", "qualname")

    def __init__(self, module: str, qualname: str) -> None:
        self.module = module
        self.qualname = qualname

    def __getstate__(self) -> tuple[str, str]:
        return (self.module, self.qualname)

    def __setstate__(self, state: tuple[str, str]) -> None:
        self.module, self.qualname = state

    def resolve(self) -> Callable[..., Any]:
        """Import the module and return the function (unwrapping a step object)."""
        target = import_object(self.module, self.qualname, private=True)
        fn: Callable[..., Any] = getattr(target, "fn", target)  # a @hr.step name is a Step
        return fn


_resolved: dict[tuple[str, str], Callable[..., Any]] = {}


def _callable(target: FunctionRef | Callable[..., Any]) -> Callable[..., Any]:
    if not isinstance(target, FunctionRef):
        return target
    key = (target.module, target.qualname)
    fn = _resolved.get(key)
    if fn is None:
        fn = _resolved[key] = target.resolve()
    return fn


def function_ref(fn: Callable[..., Any], step: str) -> FunctionRef | Callable[..., Any]:
    """Return what to send a worker for ``fn``: a reference, or ``fn`` itself if it pickles.

    Raises:
        PipelineError: ``fn`` cannot reach a worker process, with how to fix it.
    """
    if isinstance(fn, types.FunctionType):
        module, qualname = fn.__module__, fn.__qualname__
        if "<lambda>" in qualname or "<locals>" in qualname:
            raise PipelineError(
                f"step {step!r} uses executor='process', but its function {fn.__name__} is a "
                "lambda or is defined inside another function; worker processes import "
                "functions by name, so define it at the top level of a module"
            )
        main = sys.modules.get("__main__")
        if module == "__main__" and getattr(main, "__file__", None) is None:
            raise PipelineError(
                f"step {step!r} uses executor='process', but its function was defined in an "
                "interactive session; worker processes import functions by name, so move it "
                "into a module file"
            )
        ref = FunctionRef(module, qualname)
        try:
            found = ref.resolve()
        except PipelineError as exc:
            raise PipelineError(
                f"step {step!r} uses executor='process', but {module}.{qualname} cannot be "
                f"imported by name ({exc}); define it at the top level of a module"
            ) from exc
        # a copy of the same function passes: cloudpickle ships a decorated function
        # by value (its name holds the step), so on a Ray worker it is not the module's
        if found is not fn and getattr(found, "__code__", None) != fn.__code__:
            raise PipelineError(
                f"step {step!r} uses executor='process', but the name {module}.{qualname} "
                "refers to another object; worker processes import functions by name"
            )
        return ref
    try:
        pickle.dumps(fn)
    except Exception as exc:
        raise PipelineError(
            f"step {step!r} uses executor='process', but its callable cannot be pickled "
            f"({type(exc).__name__}: {exc}); use a module-level function"
        ) from exc
    return fn


def _transportable(exc: BaseException) -> BaseException:
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:
        return RemoteError(
            f"{type(exc).__module__}.{type(exc).__qualname__}",
            str(exc),
            "".join(traceback.format_exception(exc)),
        )
    return exc


def _on_alarm(signum: int, frame: Any) -> None:
    raise _AlarmTimeout


class _AlarmTimeout(BaseException):
    """Raised in a worker when an item's time is up; not an Exception, so user code can't eat it."""


def apply_each(
    target: FunctionRef | Callable[..., Any], items: list[Any], timeout_s: float | None, step: str
) -> list[tuple[Any, float]]:
    """Run in a worker: call the function on each item; return (output or ItemFailure, seconds).

    A per-item ``timeout_s`` interrupts the item's Python code with SIGALRM.
    """
    fn = _callable(target)
    results: list[tuple[Any, float]] = []
    for item in items:
        started = time.perf_counter()
        try:
            if timeout_s is not None:
                signal.setitimer(signal.ITIMER_REAL, timeout_s)
            try:
                value: Any = fn(item)
            finally:
                if timeout_s is not None:
                    signal.setitimer(signal.ITIMER_REAL, 0)
        except _AlarmTimeout:
            value = ItemFailure(StepTimeout(step, timeout_s or 0.0))
        except (StopIteration, StopAsyncIteration) as exc:  # cannot cross a future
            value = ItemFailure(StepRaisedControl(exc))
        except Exception as exc:
            value = ItemFailure(_transportable(exc))
        except BaseException as exc:  # SystemExit, KeyboardInterrupt: this item's failure
            value = ItemFailure(StepRaisedControl(exc))
        results.append((value, time.perf_counter() - started))
    return results


def apply_batch(
    target: FunctionRef | Callable[..., Any], items: list[Any], timeout_s: float | None, step: str
) -> Any:
    """Run in a worker: call a batched function on the whole list, within ``timeout_s``."""
    fn = _callable(target)
    if timeout_s is not None:
        signal.setitimer(signal.ITIMER_REAL, timeout_s)
    try:
        return fn(items)
    except _AlarmTimeout:
        raise StepTimeout(step, timeout_s or 0.0) from None
    except (StopIteration, StopAsyncIteration) as exc:  # cannot cross a future
        raise StepRaisedControl(exc) from None
    except Exception:
        raise
    except BaseException as exc:  # SystemExit, KeyboardInterrupt: the batch's failure
        raise StepRaisedControl(exc) from None
    finally:
        if timeout_s is not None:
            signal.setitimer(signal.ITIMER_REAL, 0)


def _init_worker(owner_pid: int) -> None:
    # Ctrl-C goes to the whole foreground process group; the parent decides what
    # happens to the workers, so they must not die half-way through a chunk.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGALRM, _on_alarm)
    threading.Thread(
        target=_exit_when_orphaned, args=(owner_pid,), name="headrace-owner-watch", daemon=True
    ).start()


def _exit_when_orphaned(owner_pid: int, interval_s: float = 0.5) -> None:
    """End this worker once the process that owns the pool is gone (killed with SIGKILL, say).

    Workers are children of the forkserver, not of the owner, so the kernel's
    parent-death signal cannot be used; the owner's pid is polled instead.
    """
    while True:
        time.sleep(interval_s)
        if not _alive(owner_pid):
            os._exit(1)


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs: a killed process nobody has reaped yet (a zombie) does not."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # the pid now belongs to another user's process
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            # the state follows the parenthesised command name: "pid (comm) S ..."
            return stat.read().rpartition(b")")[2].split()[0] != b"Z"
    except (FileNotFoundError, IndexError):
        return True  # no /proc (not Linux): kill(pid, 0) is all we can know


class ProcessPool:
    """A process pool for one step that survives workers dying.

    A worker killed mid-chunk (a segfault, the OOM killer) breaks a
    ``ProcessPoolExecutor`` for good, and with it every chunk in flight. Here a
    fresh pool takes over, and each broken chunk's items are re-run one at a time
    in a private one-worker *quarantine* pool: a break there can only be that
    item's doing, so only the item that kills its worker becomes a dead letter.

    Workers ignore SIGINT and start with ``forkserver``: forking a process that
    runs threads (the event loop's default executor, thread-pool steps) can
    deadlock the child.
    """

    def __init__(self, workers: int) -> None:
        self._workers = workers
        self._pool = _start_pool(workers)
        self.replaced = 0

    async def call(
        self, fn: Callable[..., list[Any]], target: Any, items: list[Any], *args: Any
    ) -> list[Any]:
        """Run ``fn(target, items, *args)`` in a worker; it returns one outcome per item.

        ``fn`` is :func:`apply_each` (outcomes are ``(value, seconds)`` pairs) or
        :func:`apply_batch` (outcomes are values).
        """
        pool = self._pool
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(pool, fn, target, items, *args)
        except BrokenProcessPool:
            if pool is self._pool:  # the first call to see it breaks replaces it
                _stop(pool)
                self._pool = _start_pool(self._workers)
                self.replaced += 1
        return await _quarantined(fn, target, items, args, timed=fn is apply_each)

    def close(self, *, aborted: bool) -> None:
        """Shut down; on abort, cancel queued chunks and stop the workers now."""
        if aborted:
            _stop(self._pool)
        else:
            self._pool.shutdown(wait=True)


async def _quarantined(
    fn: Callable[..., list[Any]], target: Any, items: list[Any], args: tuple[Any, ...], timed: bool
) -> list[Any]:
    loop = asyncio.get_running_loop()
    outcomes: list[Any] = []
    pool = _start_pool(1)
    try:
        for item in items:
            try:
                outcomes.extend(await loop.run_in_executor(pool, fn, target, [item], *args))
                continue
            except BrokenProcessPool as exc:
                _stop(pool)
                pool = _start_pool(1)
                failure = ItemFailure(exc)
            except Exception as exc:  # the batch function raised for this item alone
                failure = ItemFailure(exc)
            outcomes.append((failure, 0.0) if timed else failure)
    finally:
        _stop(pool)
    return outcomes


def _start_pool(workers: int) -> ProcessPoolExecutor:
    methods = multiprocessing.get_all_start_methods()
    method = "forkserver" if "forkserver" in methods else "spawn"
    return ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context(method),
        initializer=_init_worker,
        initargs=(os.getpid(),),
    )


def _stop(pool: ProcessPoolExecutor) -> None:
    """Cancel queued chunks and end the workers now, mid-chunk if need be."""
    terminate = getattr(pool, "terminate_workers", None)  # public from Python 3.14
    if terminate is not None:
        terminate()
        return
    # Before 3.14 there is no public way; shutdown() forgets the processes, so
    # take them first.
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        process.terminate()
    for process in processes:
        process.join(timeout=5)
        if process.is_alive():
            process.kill()
            process.join()


def open_thread_pool(workers: int, name: str) -> ThreadPoolExecutor:
    """Start a thread pool for one step."""
    return ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"headrace-{name}")


def close_thread_pool(pool: ThreadPoolExecutor, *, aborted: bool, grace_s: float = 5.0) -> None:
    """Shut a thread pool down; on abort, drop queued calls and wait ``grace_s`` at most.

    Python threads cannot be stopped: calls already running finish. A run that
    ends by error or Ctrl-C waits for them a little, so it leaves no thread of
    its own behind, but never hangs on a call that does not return.
    """
    if not aborted:
        pool.shutdown(wait=True)
        return
    closer = threading.Thread(
        target=pool.shutdown, kwargs={"wait": True, "cancel_futures": True}, daemon=True
    )
    closer.start()
    closer.join(grace_s)
