"""The pipeline docs/durable.md's commands run: each paragraph, shouted.

    headrace run examples.durable.loud:pipeline --input examples/sotu/paragraphs.jsonl \\
        --key id --output out/loud.parquet --run-dir .headrace/loud
"""

import asyncio

import headrace as hr


@hr.step(concurrency=2)
async def shout(paragraph: dict[str, str]) -> dict[str, str]:
    """The paragraph in capitals (after a pause, as a call to a service would take)."""
    await asyncio.sleep(0.1)
    return {"id": paragraph["id"], "loud": paragraph["text"].upper()}


pipeline = shout
