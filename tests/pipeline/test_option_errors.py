"""A mistyped or wrong option names the user's function and the nearest option."""

from __future__ import annotations

import pytest

import headrace as hr


def test_a_mistyped_option_suggests_the_nearest() -> None:
    with pytest.raises(hr.PipelineError) as caught:
        hr.step(concurency=4)  # type: ignore[call-overload]
    message = str(caught.value)
    assert message.startswith("hr.step: unknown option 'concurency' (did you mean 'concurrency'?)")
    assert "options are batch, cache, circuit, concurrency," in message


def test_a_mistyped_option_on_a_plain_decoration_is_refused_too() -> None:
    def classify(x: int) -> int:
        return x

    with pytest.raises(hr.PipelineError, match="unknown option 'timout' \\(did you mean"):
        hr.step(classify, timout=3)  # type: ignore[call-overload]


def test_a_wrong_value_names_the_users_function_not_a_probe() -> None:
    with pytest.raises(hr.PipelineError) as caught:

        @hr.step(concurrency=-1)
        def classify(x: int) -> int:
            return x

    assert str(caught.value).startswith("step 'classify': concurrency must be a positive integer")
    with pytest.raises(hr.PipelineError, match=r"^step 'embed': "):

        @hr.step(batch=hr.Batch(max_size=4), executor="nowhere")  # type: ignore[call-overload]
        def embed(xs: list[int]) -> list[int]:
            return xs


def test_with_options_suggests_the_nearest_too() -> None:
    @hr.step
    def classify(x: int) -> int:
        return x

    with pytest.raises(hr.PipelineError, match="step 'classify': unknown option 'oredered'"):
        classify.with_options(oredered=True)
