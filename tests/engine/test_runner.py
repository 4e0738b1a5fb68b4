import asyncio
import gc
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from services import arun_quietly

import headrace as hr
from headrace import HeadraceError, PipelineError, SourceError, StepFailed


def run(pipeline: Any, items: Any, **options: Any) -> hr.RunResult:
    return hr.run(pipeline, items, progress=False, **options)


# --- exactly-once accounting -------------------------------------------------

FATES = st.sampled_from(["ok", "fail1", "filter1", "fail2", "fail3", "filter3"])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    fates=st.lists(FATES, max_size=120),
    concurrency=st.integers(1, 8),
    batch_size=st.integers(1, 6),
    window=st.one_of(st.none(), st.integers(1, 40)),
    ordered=st.booleans(),
    yields=st.lists(st.integers(0, 3), min_size=1, max_size=7),
)
def test_every_item_ends_exactly_once(
    fates: list[str],
    concurrency: int,
    batch_size: int,
    window: int | None,
    ordered: bool,
    yields: list[int],
) -> None:
    async def pause(index: int) -> None:
        for _ in range(yields[index % len(yields)]):
            await asyncio.sleep(0)

    @hr.step(concurrency=concurrency)
    async def first(i: int) -> Any:
        await pause(i)
        if fates[i] == "fail1":
            raise ValueError(f"item {i}")
        return hr.FILTERED if fates[i] == "filter1" else i

    @hr.step(batch=hr.Batch(max_size=batch_size, max_wait="1ms"), concurrency=2)
    async def second(items: list[int]) -> list[int]:
        await pause(len(items))
        if any(fates[i] == "fail2" for i in items):
            raise RuntimeError("poisoned batch")
        return items

    def third(i: int) -> Any:
        if fates[i] == "fail3":
            raise KeyError(i)
        return hr.FILTERED if fates[i] == "filter3" else i

    result = run(first >> second >> third, range(len(fates)), window=window, ordered=ordered)

    expect_out = [i for i, f in enumerate(fates) if f == "ok"]
    expect_dead = {i: f"{f[-1]}" for i, f in enumerate(fates) if f.startswith("fail")}
    assert result.items_in == len(fates)
    assert result.items_in == result.items_out + result.items_dead + result.items_filtered
    assert (sorted(result.outputs) if not ordered else result.outputs) == expect_out
    names = {"1": "first", "2": "second", "3": "third"}
    assert {d.index: d.step for d in result.dead_letters} == {
        i: names[k] for i, k in expect_dead.items()
    }
    assert len(result.dead_letters) == len(expect_dead)
    assert result.items_filtered == sum(f.startswith("filter") for f in fates)


# --- ordering ----------------------------------------------------------------


def test_ordered_output_follows_input_order_despite_latency() -> None:
    @hr.step(concurrency=16)
    async def jitter(i: int) -> int:
        for _ in range((i * 7919) % 13):
            await asyncio.sleep(0)
        return i

    assert run(jitter, range(500), ordered=True).outputs == list(range(500))
    unordered = run(jitter, range(500)).outputs
    assert sorted(unordered) == list(range(500)) and unordered != list(range(500))


def test_reorder_buffer_is_bounded_by_the_window() -> None:
    state = {"started": -1, "while_held": -1}

    @hr.step(concurrency=64)
    async def first_is_slow(i: int) -> int:
        state["started"] = max(state["started"], i)
        if i == 0:
            for _ in range(2_000):  # plenty of loop turns for the others to run ahead
                await asyncio.sleep(0)
            state["while_held"] = state["started"]
        return i

    result = run(first_is_slow, range(200), ordered=True, window=8)
    assert result.outputs == list(range(200))
    # while item 0 was held, the other lanes finished items 1..7 and then waited
    assert state["while_held"] == 7


def test_ordered_step_releases_items_in_entry_order() -> None:
    seen: list[int] = []

    @hr.step(concurrency=8, ordered=True)
    async def jitter(i: int) -> int:
        for _ in range((i * 31) % 5):
            await asyncio.sleep(0)
        return i

    def record(i: int) -> int:
        seen.append(i)
        return i

    run(jitter >> record, range(100))
    assert seen == list(range(100))


# --- backpressure and memory ---------------------------------------------------


def test_slow_step_bounds_how_many_items_the_fast_step_started() -> None:
    counts = {"started": 0, "finished": 0, "pulled": 0, "gap": 0, "pull_gap": 0}

    def source() -> Iterator[int]:
        for i in range(400):
            counts["pulled"] += 1
            counts["pull_gap"] = max(counts["pull_gap"], counts["pulled"] - counts["finished"])
            yield i

    @hr.step(concurrency=64)
    async def fast(i: int) -> int:
        counts["started"] += 1
        counts["gap"] = max(counts["gap"], counts["started"] - counts["finished"])
        return i

    @hr.step(concurrency=2)
    async def slow(i: int) -> int:
        for _ in range(20):
            await asyncio.sleep(0)
        counts["finished"] += 1
        return i

    result = run(fast >> slow, source(), window=10)
    assert result.items_out == 400
    assert counts["gap"] == 10  # the window fills, and never more
    assert counts["pull_gap"] == 10


def test_default_window_fills_every_steps_slots() -> None:
    a = hr.step(lambda x: x, concurrency=3)
    b = hr.step(lambda xs: xs, concurrency=2, batch=hr.Batch(max_size=5))
    assert hr.default_window(a >> b) == 16  # at least 16
    assert hr.default_window(hr.step(lambda x: x, concurrency=40) >> b) == 50


class Item:
    live = 0
    peak = 0

    def __init__(self, i: int) -> None:
        self.i = i
        self.payload = "x" * 200
        Item.live += 1
        Item.peak = max(Item.peak, Item.live)

    def __del__(self) -> None:
        Item.live -= 1


def test_live_items_are_bounded_by_the_window_not_the_dataset() -> None:
    gc.collect()
    Item.live = Item.peak = 0

    @hr.step(concurrency=8)
    async def touch(item: Item) -> Item:
        await asyncio.sleep(0)
        return item

    @hr.step(concurrency=4)
    async def touch_again(item: Item) -> Item:
        await asyncio.sleep(0)
        return item

    result = run(
        touch >> touch_again, (Item(i) for i in range(2_000)), sink=lambda item: None, window=12
    )
    assert result.items_out == 2_000
    # at most one item per lane, plus the one the source is making
    assert Item.peak <= 12 + 1


# --- sources -------------------------------------------------------------------


def test_async_iterables_are_read_lazily() -> None:
    pulled: list[int] = []

    async def source() -> AsyncIterator[int]:
        for i in range(50):
            pulled.append(i)
            await asyncio.sleep(0)
            yield i

    result = run(hr.step(lambda x: x * 2), source())
    assert sorted(result.outputs) == [i * 2 for i in range(50)]
    assert pulled == list(range(50))


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (42, "the source must be an iterable or async iterable of items, got int"),
        (
            "abc",
            "the source is a str, which would run one item per character; pass a list of "
            "items or a reader such as a generator",
        ),
    ],
)
def test_a_source_that_is_not_items_is_refused_before_anything_runs(
    source: Any, message: str
) -> None:
    calls: list[Any] = []
    with pytest.raises(SourceError) as caught:
        run(hr.step(calls.append), source)
    assert str(caught.value) == message
    assert calls == []


def test_a_source_that_raises_finishes_what_it_yielded_then_reports() -> None:
    def source() -> Iterator[int]:
        yield from range(3)
        raise OSError("disk gone")

    with pytest.raises(SourceError) as caught:
        run(hr.step(lambda x: x), source())
    assert str(caught.value) == (
        "the source raised OSError: disk gone after 3 items; the items read before it "
        "finished (see .result)"
    )
    assert sorted(caught.value.result.outputs) == [0, 1, 2]
    assert isinstance(caught.value.__cause__, OSError)


# --- sinks ---------------------------------------------------------------------


def test_a_sync_sink_receives_every_output_instead_of_the_result() -> None:
    received: list[int] = []
    result = run(hr.step(lambda x: x + 1), range(10), sink=received.append, ordered=True)
    assert received == list(range(1, 11))
    assert result.outputs == [] and result.items_out == 10


def test_an_async_sink_is_awaited() -> None:
    received: list[int] = []

    async def sink(value: int) -> None:
        await asyncio.sleep(0)
        received.append(value)

    run(hr.step(lambda x: x), range(20), sink=sink)
    assert sorted(received) == list(range(20))


def test_a_failing_sink_stops_the_run() -> None:
    def sink(value: int) -> None:
        if value == 5:
            raise OSError("full")

    with pytest.raises(OSError, match="full"):
        run(hr.step(lambda x: x), range(100), sink=sink, window=1)


# --- errors ----------------------------------------------------------------------


def test_on_error_raise_stops_at_the_first_failure_with_the_evidence() -> None:
    def fragile(x: int) -> int:
        if x == 3:
            raise ValueError("three")
        return x

    with pytest.raises(StepFailed) as caught:
        run(fragile, range(10), on_error="raise", window=1)
    failure = caught.value
    assert (failure.step, failure.index, failure.attempts) == ("fragile", 3, 1)
    assert isinstance(failure.__cause__, ValueError)
    assert str(failure) == "step 'fragile' failed: ValueError: three"


def test_dead_letters_carry_step_error_and_item() -> None:
    def fragile(x: int) -> int:
        raise ValueError(f"bad {x}")

    [dead] = run(fragile, [7]).dead_letters
    assert dead.to_dict() == {
        "index": 0,
        "item": 7,
        "step": "fragile",
        "error_type": "ValueError",
        "message": "bad 7",
        "attempts": 1,
    }


def test_validate_turns_a_wrongly_typed_output_into_a_dead_letter() -> None:
    @hr.step(validate=True)
    def to_int(x: str) -> int:
        return x  # type: ignore[return-value]

    [dead] = run(to_int, ["5"]).dead_letters
    assert dead.error_type == "OutputTypeError"
    assert (
        dead.message == "step 'to_int' returned str, expected int: Input should be a valid integer"
    )


def test_validate_without_a_return_annotation_is_refused_before_anything_runs() -> None:
    calls: list[int] = []

    def untyped(x):  # type: ignore[no-untyped-def]
        calls.append(x)
        return x

    with pytest.raises(PipelineError, match="has validate=True but its function has no return"):
        run(hr.step(untyped, validate=True), [1, 2])
    assert calls == []


def test_timeout_fails_only_the_slow_item() -> None:
    @hr.step(timeout="50ms")
    async def sometimes_slow(x: int) -> int:
        if x == 1:
            await asyncio.sleep(30)
        return x

    result = run(sometimes_slow, [0, 1, 2])
    assert sorted(result.outputs) == [0, 2]
    [dead] = result.dead_letters
    assert (dead.error_type, dead.message) == (
        "StepTimeout",
        "step 'sometimes_slow' took longer than its timeout of 0.05s",
    )


def test_a_timeout_error_raised_by_the_step_itself_is_not_a_step_timeout() -> None:
    @hr.step(timeout=10)
    async def raises_timeout(x: int) -> int:
        raise TimeoutError("upstream timed out")

    [dead] = run(raises_timeout, [1]).dead_letters
    assert (dead.error_type, dead.message) == ("TimeoutError", "upstream timed out")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"window": 0}, "window must be a positive integer, got 0"),
        ({"on_error": "ignore"}, "on_error must be 'dead_letter' or 'raise', got 'ignore'"),
        ({"sink": "out.jsonl"}, "sink must be callable or a headrace sink, got str"),
        (
            {"key": "id"},
            "key= identifies items in a durable run; give run_dir=... (or a file sink) too",
        ),
    ],
)
def test_bad_run_options_are_refused(options: dict[str, Any], message: str) -> None:
    with pytest.raises(PipelineError) as caught:
        run(hr.step(lambda x: x), [1], **options)
    assert str(caught.value) == message


def test_run_inside_an_event_loop_points_to_arun() -> None:
    async def inside() -> None:
        with pytest.raises(HeadraceError, match=r"use `await hr\.arun"):
            hr.run(hr.step(lambda x: x), [1])
        result = await arun_quietly(hr.step(lambda x: x), [1])
        assert result.outputs == [1]

    asyncio.run(inside())


def test_summary_shows_the_accounting_and_every_step() -> None:
    def fragile(x: int) -> int:
        if x == 2:
            raise ValueError
        return x

    result = run(hr.step(fragile) >> hr.filter(lambda x: x != 3, name="not3"), range(5))
    text = result.summary()
    assert text.splitlines()[0] == "items: in 5 = out 3 + dead 1 + filtered 1"
    assert "fragile" in text and "not3" in text and "p95 ms" in text
    data = result.metrics.to_dict()
    assert [s["name"] for s in data["steps"]] == ["fragile", "not3"]
    assert data["steps"][0]["errors"] == 1


def test_progress_lines_are_plain_when_not_on_a_terminal(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import headrace.metrics.progress as progress

    original = progress.run_progress

    async def quick(counts: Any, finished: asyncio.Event, **kw: Any) -> None:
        await original(counts, finished, log_interval_s=0.01)

    monkeypatch.setattr("headrace.engine.run_loop.run_progress", quick)

    @hr.step
    async def slowish(x: int) -> int:
        await asyncio.sleep(0.005)
        return x

    hr.run(slowish, range(40), window=2)
    err = capsys.readouterr().err
    assert "headrace: " in err and "/40 items done, 0 dead" in err
    assert err.strip().splitlines()[-1].startswith("headrace: 40/40 items done")


def test_a_latency_bound_step_keeps_its_allowed_concurrency_busy() -> None:
    @hr.step(concurrency=16)
    async def api_call(i: int) -> int:
        await asyncio.sleep(0.002)
        return i

    result = run(api_call, range(400))
    stats = result.metrics.step("api_call").limiter.statistics()  # type: ignore[union-attr]
    assert stats.peak == 16
    assert stats.admitted == 400


def test_progress_bar_on_a_terminal_shows_counts(monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    from headrace.metrics.progress import Counts, run_progress

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.delenv("CI", raising=False)
    screen = Terminal()

    async def scenario() -> None:
        finished = asyncio.Event()
        counts = iter([Counts(0, 0, 10), Counts(4, 1, 10)])
        last = [Counts(10, 1, 10)]

        def read() -> Counts:
            return next(counts, last[0])

        task = asyncio.create_task(run_progress(read, finished, stream=screen))
        await asyncio.sleep(0.25)
        finished.set()
        await task

    asyncio.run(scenario())
    text = screen.getvalue()
    assert "headrace" in text and "10/10" in text and "dead 1" in text
