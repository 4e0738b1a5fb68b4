"""A small LLM pipeline to profile and bench: clean the text, then judge its tone.

``headrace bench`` points its client at ``headrace sim`` (``--sim``); without
``--sim`` it would call the endpoint at ``$OPENAI_BASE_URL``.
"""

from typing import Literal

from pydantic import BaseModel

import headrace as hr


class Tone(BaseModel):
    tone: Literal["hopeful", "grim", "neutral"]


@hr.step(executor="thread", concurrency=2)
def clean(record: dict[str, str]) -> dict[str, str]:
    words = " ".join(record["text"].split())
    return {**record, "text": words[:2000]}


llm = hr.llm.Client(models={"fast": "gpt-4o-mini"})
tone = hr.llm.transduce(
    Tone, client=llm, model="fast", instructions="Judge the tone.", fields=["text"], name="tone"
)
pipeline = clean >> tone
