"""Local models as steps: embeddings, VADER sentiment and a transformers pipeline, all
loaded from disk (the bundled MiniLM, VADER's lexicon, a tiny model built here)."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from services import run_quietly

import headrace as hr
from headrace.errors import PipelineError

pytest.importorskip("sentence_transformers", reason="needs headrace[models]")
pytestmark = pytest.mark.slow  # loads PyTorch and models: skip locally with -m "not slow"

os.environ["HF_HUB_OFFLINE"] = "1"


def _run(step: Any, items: list[Any], **options: Any) -> hr.RunResult:
    return hr.run(step, items, ordered=True, progress=False, **options)


def _cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


# -- embeddings ---------------------------------------------------------------------


def test_an_embedding_kept_with_its_record_is_a_list_of_doubles_in_parquet(
    tmp_path: Path,
) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    records = [{"id": n, "text": f"sentence number {n}"} for n in range(6)]
    run_quietly(
        hr.with_input(hr.models.embed(field="text"), field="embedding"),
        records,
        key="id",
        sink=hr.write_parquet(tmp_path / "out"),
        run_dir=tmp_path / "run",
    )
    table = pq.read_table(tmp_path / "out")
    assert table.schema.field("embedding").type == pa.list_(pa.float64())
    assert all(len(v) == 384 for v in table.column("embedding").to_pylist())


def test_embeddings_have_the_models_shape_and_identical_texts_a_cosine_of_one() -> None:
    texts = ["The economy is growing.", "The economy is growing.", "Jobs are plentiful."]
    result = _run(hr.models.embed(), texts)
    first, again, other = result.outputs
    assert len(first) == 384 and all(isinstance(x, float) for x in first)
    assert _cosine(first, again) == pytest.approx(1.0, abs=1e-6)
    assert _cosine(first, other) < 0.99
    assert math.sqrt(sum(x * x for x in first)) == pytest.approx(1.0, abs=1e-5)  # normalised


def test_embeddings_are_deterministic_across_runs_and_batch_neighbours() -> None:
    text = "We must keep faith with the generations to come."
    alone = _run(hr.models.embed(), [text]).outputs[0]
    fillers = [f"filler sentence {i} about the budget of the navy" for i in range(40)]
    among = _run(hr.models.embed(), [*fillers[:20], text, *fillers[20:]]).outputs[20]
    assert among == pytest.approx(alone, abs=1e-5)


def test_embeddings_place_related_texts_closer_than_unrelated_ones() -> None:
    economy, wages, cat = _run(
        hr.models.embed(),
        ["Unemployment fell and wages rose.", "Workers earn more and jobs are up.", "A cat."],
    ).outputs
    assert _cosine(economy, wages) > _cosine(economy, cat) + 0.2


def test_items_are_coalesced_into_batches_of_at_most_max_size() -> None:
    step = hr.models.embed(field="text", batch=hr.Batch(max_size=8, max_wait="50ms"))
    result = _run(step, [{"text": f"line {i}"} for i in range(50)])
    assert len(result.outputs) == 50
    sizes = result.metrics.step("embed").batch_sizes
    assert max(sizes) <= 8
    assert sum(size * count for size, count in sizes.items()) == 50
    assert sum(sizes.values()) < 50  # batched, not one call per item


def test_an_item_without_the_field_is_one_dead_letter_naming_the_field() -> None:
    items: list[Any] = [{"text": f"line {i}"} for i in range(12)]
    items[5] = {"body": "no text here"}
    items[9] = {"text": 42}
    result = _run(hr.models.embed(field="text", batch=hr.Batch(max_size=16)), items)
    assert len(result.outputs) == 10
    dead = {d.index: d for d in result.dead_letters}
    assert set(dead) == {5, 9}
    assert dead[5].error_type == "ModelInputError"
    assert dead[5].message == "the item has no field 'text' (it has: body)"
    assert dead[9].message == "field 'text' must be a string, got int"
    assert result.metrics.step("embed").batch_splits == 0  # failed before the model ran


def test_steps_on_the_same_model_share_one_loaded_copy() -> None:
    a, b = hr.models.embed(device="cpu"), hr.models.embed(device="cpu", name="again")
    assert a.loaded() is b.loaded()


def test_a_model_that_is_not_a_local_directory_is_refused_where_the_step_is_defined(
    tmp_path: Path,
) -> None:
    with pytest.raises(PipelineError, match="local model directory"):
        hr.models.embed("sentence-transformers/all-MiniLM-L6-v2")
    with pytest.raises(PipelineError, match="local model directory"):
        hr.models.pipeline("text-classification", tmp_path / "missing")


def test_the_fingerprint_names_the_bundled_model_and_follows_the_options() -> None:
    plain, again = hr.models.embed(), hr.models.embed(batch=hr.Batch(8), device="cpu")
    assert plain.fingerprint == again.fingerprint  # execution policies do not change it
    assert hr.models.embed(normalize=False).fingerprint != plain.fingerprint
    assert plain.model_identity()["model"] == hr.models.DEFAULT_MODEL


def test_importing_headrace_and_its_models_module_does_not_import_torch() -> None:
    code = "import sys, headrace as hr; hr.models.embed(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# -- sentiment ----------------------------------------------------------------------


def test_vader_scores_known_sentences_by_their_polarity() -> None:
    happy, grim, flat = _run(
        hr.models.sentiment(),
        [
            "I love this wonderful, happy day!",
            "This is a terrible, horrible disaster.",
            "The committee met on Tuesday.",
        ],
    ).outputs
    assert happy["compound"] > 0.5 and happy["positive"] == 1.0
    assert grim["compound"] < -0.5 and grim["negative"] == 1.0
    assert flat["compound"] == 0.0 and flat["neutral"] == 1.0


def test_a_documents_score_is_the_mean_of_its_sentences() -> None:
    text = "We are a hopeful nation. The future is bright! But war is terrible."
    [scored] = _run(hr.models.sentiment(field="text", sentences=True), [{"text": text}]).outputs
    by_sentence = scored["by_sentence"]
    assert [s["text"] for s in by_sentence] == [
        "We are a hopeful nation.",
        "The future is bright!",
        "But war is terrible.",
    ]
    mean = sum(s["compound"] for s in by_sentence) / 3
    assert scored["compound"] == pytest.approx(mean, abs=1e-4)
    assert (scored["sentences"], scored["positive"], scored["negative"]) == (3, 0.6667, 0.3333)


def test_sentences_split_after_end_marks_only_before_a_new_sentence() -> None:
    text = 'He said "Go." Then 3 left. Mr. Smith stayed? Yes! e.g. this'
    assert hr.models.split_sentences(text) == [
        'He said "Go."',
        "Then 3 left.",
        "Mr.",
        "Smith stayed?",
        "Yes! e.g. this",
    ]


# -- transformers pipelines ---------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_classifier(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A two-label BERT with random weights and a 15-word vocabulary, saved locally."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizer

    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("tiny")
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    words += ["the", "a", "good", "bad", "day", "night", "is", "was", "very", "not"]
    vocab = root / "vocab.txt"
    vocab.write_text("\n".join(words) + "\n")
    config = BertConfig(
        vocab_size=len(words),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=64,
        id2label={0: "NEG", 1: "POS"},
        label2id={"NEG": 0, "POS": 1},
    )
    model_dir = root / "model"
    BertForSequenceClassification(config).save_pretrained(model_dir)
    BertTokenizer(vocab_file=str(vocab)).save_pretrained(model_dir)
    return model_dir


def test_a_local_text_classification_pipeline_runs_batched_in_item_order(
    tiny_classifier: Path,
) -> None:
    texts = ["the day is good", "a very bad night", "not good", "the night was very very bad"] * 6
    step = hr.models.pipeline(
        "text-classification", tiny_classifier, batch=hr.Batch(max_size=8), device="cpu"
    )
    result = _run(step, texts)
    assert len(result.outputs) == len(texts)
    for output in result.outputs:
        assert output["label"] in {"NEG", "POS"} and 0.0 <= output["score"] <= 1.0
    # sorted by length for the model and put back: each text gets its own answer
    direct = step.loaded()(texts)
    assert [o["score"] for o in result.outputs] == pytest.approx([d["score"] for d in direct])
    assert max(result.metrics.step("text-classification").batch_sizes) <= 8


def test_pipeline_options_reach_each_call(tiny_classifier: Path) -> None:
    step = hr.models.pipeline(
        "text-classification", tiny_classifier, options={"top_k": None}, name="all_labels"
    )
    [labels] = _run(step, ["the day is good"]).outputs
    assert sorted(label["label"] for label in labels) == ["NEG", "POS"]
    assert sum(label["score"] for label in labels) == pytest.approx(1.0, abs=1e-5)
