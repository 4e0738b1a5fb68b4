import asyncio
import importlib
from pathlib import Path

import pytest

import headrace as hr
from headrace import PipelineError


async def shout(text: str) -> str:
    await asyncio.sleep(0)
    return text.upper()


def test_bare_and_configured_decorators_make_steps() -> None:
    bare = hr.step(shout)
    configured = hr.step(concurrency=3, timeout="2s", name="loud")(shout)
    assert isinstance(bare, hr.FunctionStep) and bare.name == "shout"
    assert (configured.name, configured.concurrency, configured.timeout_s) == ("loud", 3, 2.0)


def test_a_step_keeps_its_function_for_direct_calls_but_is_not_callable() -> None:
    @hr.step
    def add_one(x: int) -> int:
        return x + 1

    assert add_one.fn(41) == 42
    assert not callable(add_one)


def test_default_concurrency_depends_on_the_executor() -> None:
    def work(x: int) -> int:
        return x

    assert hr.step(work).concurrency == 64
    assert hr.step(work, executor="process").concurrency >= 1
    assert hr.step(work, executor="thread").concurrency >= 5


def test_fingerprint_changes_with_code_name_and_version_but_not_policies() -> None:
    def f(x: int) -> int:
        return x + 1

    def g(x: int) -> int:
        return x + 2

    base = hr.step(f)
    assert hr.step(f).fingerprint == base.fingerprint
    assert hr.step(f, concurrency=3, timeout=1, executor="thread").fingerprint == base.fingerprint
    assert hr.step(g, name="f").fingerprint != base.fingerprint
    assert hr.step(f, version="2").fingerprint != base.fingerprint
    assert base.named("other").fingerprint != base.fingerprint
    assert (base >> hr.step(g)).fingerprint != (hr.step(g) >> base).fingerprint


def test_fingerprint_ignores_comments_docstring_and_decorator_options(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "first_version.py").write_text(
        "import headrace as hr\n\n@hr.step(concurrency=2, name='f')\ndef f(x):\n"
        "    'A docstring.'\n    return x + 1  # a comment\n"
    )
    (tmp_path / "second_version.py").write_text(
        "import headrace as hr\n\n\n@hr.step(concurrency=9, name='f')\ndef f(x):\n"
        "    return (x +\n            1)\n"
    )
    (tmp_path / "third_version.py").write_text(
        "import headrace as hr\n\n@hr.step(name='f')\ndef f(x):\n    return x + 2\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    first = importlib.import_module("first_version").f
    second = importlib.import_module("second_version").f
    third = importlib.import_module("third_version").f
    assert first.fingerprint == second.fingerprint
    assert first.fingerprint != third.fingerprint


def test_with_options_copies_and_validates() -> None:
    base = hr.step(shout, concurrency=2)
    copy = base.with_options(name="again", concurrency=5)
    assert (copy.name, copy.concurrency, base.concurrency) == ("again", 5, 2)
    with pytest.raises(PipelineError, match=r"unknown option 'retries' \(did you mean 'retry'"):
        base.with_options(retries=3)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"concurrency": 0}, "step 'shout': concurrency must be a positive integer, got 0"),
        (
            {"executor": "gpu"},
            "step 'shout': executor must be one of async, thread, process, got 'gpu'",
        ),
        (
            {"executor": "thread"},
            "step 'shout' is an async function, which runs on the event "
            "loop; executor='thread' is for sync functions",
        ),
        ({"timeout": "soon"}, "step 'shout': timeout='soon' is not a duration"),
        ({"timeout": -1}, "step 'shout': timeout must not be negative, got -1"),
        ({"batch": 8}, "step 'shout': batch must be hr.Batch"),
    ],
)
def test_bad_options_are_refused_where_the_step_is_defined(
    options: dict[str, object], message: str
) -> None:
    with pytest.raises(PipelineError) as caught:
        hr.step(shout, **options)  # type: ignore[call-overload]
    assert str(caught.value).startswith(message)


def test_a_timeout_on_a_sync_function_on_the_loop_is_refused() -> None:
    def slow(x: int) -> int:
        return x

    with pytest.raises(PipelineError, match="a timeout cannot interrupt a sync function"):
        hr.step(slow, timeout=1)


def test_decorator_option_values_are_checked_where_the_function_is_decorated() -> None:
    decorate = hr.step(concurrency=-2)  # the function's name is not known yet
    with pytest.raises(PipelineError, match="step 'shout': concurrency must be a positive"):
        decorate(shout)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_size": 0}, "Batch max_size must be a positive integer, got 0"),
        ({"max_wait": "1 fortnight"}, "Batch max_wait='1 fortnight' is not a duration"),
    ],
)
def test_batch_options_are_validated(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(PipelineError) as caught:
        hr.Batch(**kwargs)  # type: ignore[arg-type]
    assert str(caught.value).startswith(message)


def test_batch_parses_durations() -> None:
    assert hr.Batch(max_size=8, max_wait="250ms").max_wait_s == pytest.approx(0.25)
    assert hr.Batch(max_wait=2).max_wait_s == 2.0
