"""A corpus of broken recipes: each names its file:line:column, the field, and what is wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

import headrace as hr

BROKEN: dict[str, tuple[str, list[str]]] = {
    "condition_names_a_field_the_model_lacks": (
        """models:
  fast: {model: gpt-4o-mini}
nodes:
  - id: classify
    llm: {model: fast, output: recipe_helpers:Verdict}
  - {id: a, function: recipe_helpers:label}
edges:
  - {from: classify, to: a, when: "classify.ton == 'hopeful'"}
""",
        [
            "bad.yaml:8:35: edges[0].when: the condition: the output of 'classify' has no "
            "field 'ton' (did you mean 'tone'?); its fields: tone"
        ],
    ),
    "map_over_a_field_the_model_lacks": (
        """nodes:
  - {id: split, function: recipe_helpers:split_words}
  - id: each
    map: {over: wrds, do: {function: recipe_helpers:checked}}
""",
        [
            "bad.yaml:4:17: nodes[1].map.over: map.over: the output of 'split' has no field "
            "'wrds' (did you mean 'words'?); its fields: words, count"
        ],
    ),
    "unknown_top_key": (
        """nodes:
  - {id: a, function: recipe_helpers:clean}
nodse: []
""",
        ["bad.yaml:3:1: nodse: unknown key (did you mean 'nodes'?)"],
    ),
    "unknown_node_key": (
        """nodes:
  - id: a
    functon: recipe_helpers:clean
""",
        ["bad.yaml:3:5: nodes[0].functon: unknown key (did you mean 'function'?)"],
    ),
    "unknown_llm_key": (
        """models:
  fast: {model: gpt-4o-mini}
nodes:
  - id: a
    llm: {model: fast, output: recipe_helpers:Verdict, instructons: hi}
""",
        ["bad.yaml:5:56: nodes[0].llm.instructons: unknown key (did you mean 'instructions'?)"],
    ),
    "wrong_type_concurrency": (
        """nodes:
  - id: a
    function: recipe_helpers:clean
    concurrency: many
""",
        [
            "bad.yaml:4:18: nodes[0].concurrency: Input should be a valid integer, unable to parse string as an integer"
        ],
    ),
    "negative_retry": (
        """nodes:
  - id: a
    function: recipe_helpers:clean
    retry: {attempts: 0}
""",
        ["bad.yaml:4:23: nodes[0].retry.attempts: Input should be greater than or equal to 1"],
    ),
    "missing_nodes": (
        """name: empty
""",
        ["bad.yaml:1:1: nodes: nodes is required"],
    ),
    "empty_nodes": (
        """nodes: []
""",
        ["bad.yaml:1:8: nodes: List should have at least 1 item after validation, not 0"],
    ),
    "two_kinds": (
        """nodes:
  - id: a
    function: recipe_helpers:clean
    filter: "true"
""",
        [
            "bad.yaml:2:5: nodes[0]: a node has exactly one of function:, reduce:, llm:, model:, map:, filter:, route:, recipe: (it has function, filter)"
        ],
    ),
    "no_kind": (
        """nodes:
  - id: a
""",
        [
            "bad.yaml:2:5: nodes[0]: a node has exactly one of function:, reduce:, llm:, model:, map:, filter:, route:, recipe:"
        ],
    ),
    "missing_id": (
        """nodes:
  - function: recipe_helpers:clean
""",
        ["bad.yaml:2:5: nodes[0].id: id is required"],
    ),
    "bad_id": (
        """nodes:
  - id: 1st
    function: recipe_helpers:clean
""",
        ["bad.yaml:2:9: nodes[0].id: a node id is a letter, then letters, digits or _"],
    ),
    "duplicate_id": (
        """nodes:
  - {id: a, function: recipe_helpers:clean}
  - {id: a, function: recipe_helpers:length}
""",
        ["bad.yaml:3:10: nodes[1].id: node id 'a' is used twice (first at nodes[0])"],
    ),
    "reserved_id": (
        """nodes:
  - {id: input, function: recipe_helpers:clean}
""",
        [
            "bad.yaml:2:10: nodes[0].id: 'input' is a name expressions use (input, output, record); pick another id"
        ],
    ),
    "edge_to_unknown_node": (
        """nodes:
  - {id: clean, function: recipe_helpers:clean}
  - {id: size, function: recipe_helpers:length}
edges:
  - clean -> sise
""",
        [
            "bad.yaml:5:5: edges[0]: edge clean -> sise names node 'sise', which is not defined (did you mean 'size'?)"
        ],
    ),
    "cycle": (
        """nodes:
  - {id: a, function: recipe_helpers:clean}
  - {id: b, function: recipe_helpers:clean}
  - {id: c, function: recipe_helpers:clean}
edges:
  - a -> b
  - b -> c
  - c -> b
""",
        ["bad.yaml:8:5: edges[2]: the edges make a cycle: b -> c -> b"],
    ),
    "unreachable": (
        """nodes:
  - {id: a, function: recipe_helpers:clean}
  - {id: b, function: recipe_helpers:length}
  - {id: c, function: recipe_helpers:shout}
edges:
  - a -> b
""",
        ["bad.yaml:4:5: nodes[2]: node 'c' is unreachable: no edge leads to it or from it"],
    ),
    "unknown_model_alias": (
        """models:
  fast: {model: gpt-4o-mini}
nodes:
  - id: tone
    llm: {model: fsat, output: recipe_helpers:Verdict}
""",
        ["bad.yaml:5:18: nodes[0].llm.model: unknown model alias 'fsat' (did you mean 'fast'?)"],
    ),
    "condition_does_not_parse": (
        """nodes:
  - {id: a, function: recipe_helpers:clean}
  - {id: b, function: recipe_helpers:length}
edges:
  - {from: a, to: b, when: "a.text =="}
""",
        [
            "bad.yaml:5:28: edges[0].when: the condition: 'a.text ==' does not parse: unexpected 'end of template'"
        ],
    ),
    "condition_calls": (
        """nodes:
  - {id: a, function: recipe_helpers:clean}
  - {id: b, function: recipe_helpers:length}
edges:
  - {from: a, to: b, when: "a.text.startswith('x')"}
""",
        [
            "bad.yaml:5:28: edges[0].when: the condition: \"a.text.startswith('x')\" calls are not allowed; use a filter such as |lower or |length"
        ],
    ),
    "edge_text_malformed": (
        """nodes:
  - {id: a, function: recipe_helpers:clean}
  - {id: b, function: recipe_helpers:length}
edges:
  - a => b
""",
        ["bad.yaml:5:5: edges[0]: an edge reads 'a -> b' or 'a -> [b, c]', got 'a => b'"],
    ),
    "module_not_found": (
        """nodes:
  - {id: a, function: no_such_module:clean}
""",
        [
            "bad.yaml:2:23: nodes[0].function: cannot import 'no_such_module': No module named 'no_such_module'"
        ],
    ),
    "attribute_not_found": (
        """nodes:
  - {id: a, function: recipe_helpers:cleen}
""",
        ["bad.yaml:2:23: nodes[0].function: 'recipe_helpers' has no attribute 'cleen'"],
    ),
    "not_an_import_path": (
        """nodes:
  - {id: a, function: recipe_helpers.clean}
""",
        [
            "bad.yaml:2:23: nodes[0].function: 'recipe_helpers.clean' is not an import path: write module.name:function (parts are letters, digits and _, not starting with _)"
        ],
    ),
    "private_attribute": (
        """nodes:
  - {id: a, function: "os:__builtins__"}
""",
        [
            "bad.yaml:2:23: nodes[0].function: 'os:__builtins__' is not an import path: write module.name:function (parts are letters, digits and _, not starting with _)"
        ],
    ),
    "not_callable": (
        """nodes:
  - {id: a, function: recipe_helpers:NOT_A_FUNCTION}
""",
        ["bad.yaml:2:23: nodes[0].function: recipe_helpers:NOT_A_FUNCTION is int, not a function"],
    ),
    "output_not_a_model": (
        """models:
  fast: {model: gpt-4o-mini}
nodes:
  - id: tone
    llm: {model: fast, output: recipe_helpers:clean}
""",
        ["bad.yaml:5:32: nodes[0].llm.output: recipe_helpers:clean is not a Pydantic model class"],
    ),
    "rate_on_llm_node": (
        """models:
  fast: {model: gpt-4o-mini}
nodes:
  - id: tone
    llm: {model: fast, output: recipe_helpers:Verdict}
    rate: {requests: 10}
""",
        [
            "bad.yaml:6:5: nodes[0].rate: rate does not apply to an llm node; set it on the model alias (models.fast.rate)"
        ],
    ),
    "policy_on_filter": (
        """nodes:
  - {id: a, function: recipe_helpers:clean}
  - id: long
    filter: "a.text | length > 3"
    retry: {attempts: 2}
""",
        ["bad.yaml:5:5: nodes[1].retry: retry does not apply to a filter node"],
    ),
    "rate_without_limit": (
        """nodes:
  - id: a
    function: recipe_helpers:clean
    rate: {per: minute}
""",
        ["bad.yaml:4:11: nodes[0].rate: a rate needs requests:, tokens:, or the value auto"],
    ),
    "bad_duration": (
        """nodes:
  - id: a
    function: recipe_helpers:clean
    executor: thread
    timeout: soon
""",
        [
            "bad.yaml:5:14: nodes[0].timeout: timeout='soon' is not a duration: use seconds (0.5) or a number with a unit, one of us, ms, s, m, h, d (e.g. '10ms', '7d')"
        ],
    ),
    "complete_without_prompt": (
        """models:
  fast: {model: gpt-4o-mini}
nodes:
  - id: a
    llm: {model: fast}
""",
        ["bad.yaml:5:10: nodes[0].llm: a complete node needs prompt: (or output: to transduce)"],
    ),
    "template_does_not_parse": (
        """models:
  fast: {model: gpt-4o-mini}
nodes:
  - id: a
    llm: {model: fast, prompt: "Say {{ text "}
""",
        [
            "bad.yaml:5:10: nodes[0].llm: step 'a' prompt: the template does not parse: unexpected end of template, expected 'end of print statement'."
        ],
    ),
    "yaml_syntax": (
        """nodes:
  - id: a
    function: [recipe_helpers:clean
""",
        ["bad.yaml:4:1: YAML: expected ',' or ']', but got '<stream end>'"],
    ),
    "duplicate_key": (
        """nodes:
  - id: a
    function: recipe_helpers:clean
    function: recipe_helpers:length
""",
        ["bad.yaml:4:5: nodes[0].function: this key is given twice"],
    ),
    "two_sources": (
        """source: {jsonl: a.jsonl, csv: b.csv}
nodes:
  - {id: a, function: recipe_helpers:clean}
""",
        ["bad.yaml:1:9: source: give exactly one of jsonl:, csv:, parquet:, dir:"],
    ),
    "route_to_unknown": (
        """nodes:
  - {id: a, function: recipe_helpers:clean}
  - id: pick
    route: {on: "a.text | length > 3", to: {"True": long, "False": short}}
  - {id: long, function: recipe_helpers:length}
edges:
  - a -> pick
""",
        [
            "bad.yaml:4:68: nodes[1].route.to.False: edge pick -> short names node 'short', which is not defined"
        ],
    ),
    "map_of_filter": (
        """nodes:
  - id: each
    map: {do: {filter: "true"}}
""",
        [
            "bad.yaml:3:15: nodes[0].map.do: a map runs a function, llm, model, recipe node on each element, not a filter node"
        ],
    ),
    "output_unknown": (
        """nodes:
  - {id: a, function: recipe_helpers:clean}
output: b
""",
        ["bad.yaml:3:9: output: output names node 'b', which is not defined"],
    ),
    "on_error_literal": (
        """nodes:
  - id: each
    map: {do: {function: recipe_helpers:checked}, on_error: ignore}
""",
        ["bad.yaml:3:61: nodes[0].map.on_error: Input should be 'fail' or 'skip'"],
    ),
    "sub_recipe_missing": (
        """nodes:
  - {id: sub, recipe: nowhere.yaml}
""",
        ["bad.yaml:2:23: nodes[0].recipe: there is no recipe file 'nowhere.yaml'"],
    ),
}


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # errors name files relative to the current directory


def problems(text: str, name: str = "bad.yaml", **options: object) -> list[str]:
    Path(name).write_text(text)
    with pytest.raises(hr.recipe.RecipeError) as caught:
        hr.recipe.load(name, **options)  # type: ignore[arg-type]
    return [str(p) for p in caught.value.problems]


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_a_broken_recipe_names_the_place_and_the_field(name: str) -> None:
    text, expected = BROKEN[name]
    assert problems(text) == expected


def test_the_corpus_is_large_enough() -> None:
    assert len(BROKEN) >= 25


def test_every_problem_is_reported_at_once() -> None:
    found = problems(
        """models:
  fast: {model: gpt-4o-mini}
nodes:
  - id: tone
    llm: {model: fsat, output: recipe_helpers:Verdict}
    rate: {requests: 10}
  - {id: b, function: recipe_helpers:nope}
"""
    )
    assert found == [
        "bad.yaml:5:18: nodes[0].llm.model: unknown model alias 'fsat' (did you mean 'fast'?)",
        "bad.yaml:6:5: nodes[0].rate: rate does not apply to an llm node; set it on the model "
        "alias (models.fsat.rate)",
        "bad.yaml:7:23: nodes[1].function: 'recipe_helpers' has no attribute 'nope'",
    ]


def test_an_override_that_breaks_the_recipe_is_named_as_the_option() -> None:
    text = "nodes:\n  - {id: a, function: recipe_helpers:clean}\n"
    assert problems(text, overrides=["nodes.a.concurrency=lots"]) == [
        "--set nodes.a.concurrency=lots: nodes[0].concurrency: Input should be a valid "
        "integer, unable to parse string as an integer"
    ]
    assert problems(text, overrides=["nodes.zz.concurrency=3"]) == [
        "--set nodes.zz.concurrency=3: nodes: no element with id 'zz'"
    ]


def test_allow_refuses_modules_outside_its_prefixes() -> None:
    text = "nodes:\n  - {id: a, function: recipe_helpers:clean}\n"
    assert problems(text, allow=["mypkg"]) == [
        "bad.yaml:2:23: nodes[0].function: module 'recipe_helpers' is not allowed here "
        "(--allow mypkg)"
    ]
    Path("ok.yaml").write_text(text)
    assert hr.recipe.load("ok.yaml", allow=["recipe_helpers"]).name == "ok"


def test_sub_recipes_and_includes_that_refer_to_each_other_are_refused() -> None:
    Path("a.yaml").write_text("nodes:\n  - {id: inner, recipe: b.yaml}\n")
    Path("b.yaml").write_text("nodes:\n  - {id: back, recipe: a.yaml}\n")
    assert problems(Path("a.yaml").read_text(), name="a.yaml") == [
        "b.yaml:2:24: nodes[0].recipe: the recipes include each other: a.yaml -> b.yaml -> a.yaml"
    ]
    Path("m1.yaml").write_text("include: [m2.yaml]\nmodels: {fast: {model: x}}\n")
    Path("m2.yaml").write_text("include: [m1.yaml]\n")
    text = "include: [m1.yaml]\nnodes:\n  - {id: a, function: recipe_helpers:clean}\n"
    assert problems(text) == [
        "m2.yaml:1:11: include[0]: the files include each other: bad.yaml -> m1.yaml -> "
        "m2.yaml -> m1.yaml"
    ]


def test_an_included_file_holds_models_only() -> None:
    Path("shared.yaml").write_text("models: {fast: {model: x}}\nnodes: []\n")
    text = "include: [shared.yaml]\nnodes:\n  - {id: a, function: recipe_helpers:clean}\n"
    assert problems(text) == [
        "shared.yaml:2:1: nodes: an included file holds models: and include: only"
    ]
