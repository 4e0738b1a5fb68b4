"""hr.graph: fan-out, fan-in, conditions, routers and filters, per item; and the sandbox."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from services import run_quietly

import headrace as hr
from headrace.sandbox import Expression, ExpressionError


def texts(*values: str) -> list[dict[str, Any]]:
    return [{"id": i, "text": v} for i, v in enumerate(values)]


def test_fan_in_waits_for_every_parent_and_gets_their_outputs_by_id() -> None:
    seen: list[str] = []

    @hr.step
    async def slow(record: dict[str, Any]) -> str:
        await asyncio.sleep(0.02)
        seen.append("slow")
        return "slow:" + record["text"]

    @hr.step
    def fast(record: dict[str, Any]) -> str:
        seen.append("fast")
        return "fast:" + record["text"]

    @hr.step
    def join(parts: dict[str, Any]) -> dict[str, Any]:
        seen.append("join")
        return parts

    pipeline = hr.graph({"slow": slow, "fast": fast, "join": join}, ["[slow, fast] -> join"])
    result = run_quietly(pipeline, texts("a", "b"), ordered=True)
    assert result.outputs == [
        {"slow": "slow:a", "fast": "fast:a"},
        {"slow": "slow:b", "fast": "fast:b"},
    ]
    assert seen.index("join") > seen.index("slow")  # the first join waited for a slow parent
    assert seen.count("join") == 2


def test_a_condition_skips_the_branch_and_what_only_it_leads_to() -> None:
    deep_calls: list[str] = []

    @hr.step
    def tone(record: dict[str, Any]) -> dict[str, str]:
        return {"tone": "combative" if "!" in record["text"] else "calm"}

    @hr.step
    def deep(value: dict[str, Any]) -> str:
        deep_calls.append(value["tone"])
        return "deep"

    @hr.step
    def after(value: str) -> str:
        return value + "+after"

    pipeline = hr.graph(
        {"tone": tone, "deep": deep, "after": after},
        [
            hr.edge("tone", "deep", when=Expression("tone.tone == 'combative'")),
            "deep -> after",
        ],
        output=["tone", "after"],
    )
    result = run_quietly(pipeline, texts("fight!", "rest"), ordered=True)
    assert result.outputs == [
        {"tone": {"tone": "combative"}, "after": "deep+after"},
        {"tone": {"tone": "calm"}, "after": None},
    ]
    assert deep_calls == ["combative"]


def test_an_item_whose_single_output_node_is_skipped_ends_as_filtered() -> None:
    pipeline = hr.graph(
        {"a": lambda r: r["text"], "b": lambda t: t.upper()},
        [hr.edge("a", "b", when=lambda names: names["output"] != "skip")],
    )
    result = run_quietly(pipeline, texts("go", "skip"))
    assert result.outputs == ["GO"]
    assert result.items_filtered == 1 and result.items_in == 2


def test_a_router_takes_one_branch_and_counts_it() -> None:
    pipeline = hr.graph(
        {
            "pick": hr.node(choose=lambda names: len(names["text"]) > 3),
            "long": lambda r: "long",
            "short": lambda r: "short",
            "out": hr.node(),
        },
        [
            hr.edge("pick", "long", branch=True),
            hr.edge("pick", "short", branch=False),
            "[long, short] -> out",
        ],
    )
    result = run_quietly(pipeline, texts("tiny", "hi", "longer"), ordered=True)
    assert result.outputs == [{"long": "long"}, {"short": "short"}, {"long": "long"}]
    assert result.metrics.step("pick").branches == {"True": 2, "False": 1}


def test_a_router_without_a_matching_branch_fails_the_item() -> None:
    pipeline = hr.graph(
        {"pick": hr.node(choose=lambda names: names["text"]), "a": lambda r: "a"},
        [hr.edge("pick", "a", branch="a")],
    )
    result = run_quietly(pipeline, texts("a", "zzz"))
    assert result.outputs == ["a"]
    [dead] = result.dead_letters
    assert dead.error_type == "NoRoute" and "'zzz'" in dead.message


def test_a_filter_node_drops_the_whole_item() -> None:
    pipeline = hr.graph(
        {"keep": hr.node(keep=Expression("text | length > 2")), "up": lambda r: r["text"].upper()},
        ["keep -> up"],
    )
    result = run_quietly(pipeline, texts("yes", "no"))
    assert result.outputs == ["YES"]
    assert result.items_filtered == 1
    assert result.metrics.step("keep").filtered == 1


def test_a_failed_node_fails_the_item_and_cancels_its_siblings() -> None:
    started: list[str] = []

    @hr.step
    async def slow(record: dict[str, Any]) -> str:
        started.append("slow")
        await asyncio.sleep(5)
        return "never"

    @hr.step
    def broken(record: dict[str, Any]) -> str:
        raise ValueError("broken on purpose")

    pipeline = hr.graph({"slow": slow, "broken": broken, "j": hr.node()}, ["[slow, broken] -> j"])
    result = run_quietly(pipeline, texts("x"))
    [dead] = result.dead_letters
    assert dead.step == "broken" and "broken on purpose" in dead.message
    assert result.items_dead == 1 and started == ["slow"]


def test_a_context_node_sees_the_record_and_its_ancestors() -> None:
    @hr.step
    def describe(names: dict[str, Any]) -> str:
        return f"{names['text']}|{names['record']['id']}|{names['size']}|{names['input']}"

    pipeline = hr.graph(
        {"size": lambda r: len(r["text"]), "describe": hr.node(describe, input="context")},
        ["size -> describe"],
    )
    assert run_quietly(pipeline, texts("abc")).outputs == ["abc|0|3|3"]


def test_graph_errors_name_the_node_or_the_edge() -> None:
    with pytest.raises(hr.GraphError, match="cycle: a -> b -> a") as caught:
        hr.graph({"a": str, "b": str}, ["a -> b", "b -> a"])
    assert caught.value.edge == 1
    with pytest.raises(hr.GraphError, match="unreachable") as unreached:
        hr.graph({"a": str, "b": str, "c": str}, ["a -> b"])
    assert unreached.value.node == "c"
    with pytest.raises(hr.GraphError, match="did you mean 'bb'"):
        hr.graph({"a": str, "bb": str}, ["a -> b"])
    with pytest.raises(hr.GraphError, match="defines itself"):
        hr.graph({"input": str}, [])


def test_the_fingerprint_follows_conditions_by_their_text() -> None:
    def build(condition: str) -> hr.Graph:
        return hr.graph(
            {"a": hr.step(str, name="a"), "b": hr.step(str, name="b")},
            [hr.edge("a", "b", when=Expression(condition))],
        )

    assert build("a == 'x'").fingerprint == build("a == 'x'").fingerprint
    assert build("a == 'x'").fingerprint != build("a == 'y'").fingerprint


def test_map_skips_failed_elements_when_asked() -> None:
    @hr.step
    def checked(word: str) -> str:
        if word == "bad":
            raise ValueError("bad word")
        return word.upper()

    skip = hr.map(checked, over="words", on_error="skip", name="each")
    result = run_quietly(skip, [{"words": ["a", "bad", "b"]}])
    assert result.outputs == [["A", "B"]]
    assert result.metrics.step("each").skipped == 1
    fail = hr.map(checked, over="words", name="each")
    failed = run_quietly(fail, [{"words": ["a", "bad"]}])
    assert failed.items_dead == 1 and "bad word" in failed.dead_letters[0].message


@pytest.mark.parametrize(
    ("source", "refused"),
    [
        ("''.__class__.__mro__", "names starting with _"),
        ("record.__init__.__globals__", "names starting with _"),
        ("record['__class__']", "names starting with _"),
        ("__import__", "names starting with _"),
        ("text.upper()", "calls are not allowed"),
        ("cycler", None),
        ("range(10)", "calls are not allowed"),
        ("text | attr('__class__')", "No filter named 'attr'"),
        ("text | format('x')", "No filter named 'format'"),
        ("lipsum", None),
    ],
)
def test_sandbox_escapes_are_refused_where_the_expression_is_defined(
    source: str, refused: str | None
) -> None:
    if refused is not None:
        with pytest.raises(hr.PipelineError, match=refused):
            Expression(source, where="test")
    else:  # Jinja's globals are gone: the name is simply undefined
        with pytest.raises(ExpressionError, match="undefined"):
            Expression(source, where="test")({"text": "x"})


@pytest.mark.parametrize(
    ("source", "refused"),
    [
        ("2 ** 100000", "larger than 4096 bits"),
        ("(2 ** 64) ** 100", "larger than 4096 bits"),
        ("'a' * 10 ** 9", "a repeat of 1,000,000,000 items"),
        ("[0] * 1000000", "a repeat of 1,000,000 items"),
        ("'%999999999s' % 'x'", "string formatting with % is not allowed"),
        ("text.mro", "undefined"),
        ("missing_name", "undefined"),
        ("(['x' * 100000] * 100000) | join", r"\|join of more than 10,000,000 items"),
        ("([[0] * 100000] * 100000) | sum(start=[])", r"\|sum of more than 10,000,000 items"),
        ("([['x' * 100000]] * 100000) | join", r"\|join of more than 10,000,000 items"),
        ("([['x' * 100000]] * 100000) | tojson", r"\|tojson of more than 10,000,000 items"),
    ],
)
def test_bombs_and_walks_are_refused_when_they_run(source: str, refused: str) -> None:
    expression = Expression(source, where="test")
    with pytest.raises(ExpressionError, match=refused):
        expression({"text": "x"})


def test_safe_expressions_still_work() -> None:
    names = {"text": "Hello", "tone": {"tone": "combative"}, "n": 3}
    assert Expression("tone.tone == 'combative' and n * 2 == 6", where="t")(names) is True
    assert Expression("text | lower ~ '!' ", where="t")(names) == "hello!"
    assert Expression("2 ** 10 + ('ab' * 3) | length", where="t")(names) == 1024 + 6
