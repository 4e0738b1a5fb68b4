"""The most common job: a JSONL file through a typed LLM extraction into Parquet, durably.

    headrace sim --port 8000 & sleep 1
    OPENAI_BASE_URL=http://127.0.0.1:8000/v1 python examples/extract/extract.py

Against a real provider, set OPENAI_BASE_URL and OPENAI_API_KEY instead.
"""

from pathlib import Path
from typing import Literal

import pyarrow.parquet as pq
from pydantic import BaseModel

import headrace as hr

HERE = Path(__file__).parent


class PackageInfo(BaseModel):
    """What the model reads out of a package's one-line description."""

    kind: Literal["library", "tool", "framework", "plugin"]
    topics: list[str]
    audience: Literal["developers", "data scientists", "operators"]


client = hr.llm.Client(rate=hr.Rate.auto())  # reads $OPENAI_BASE_URL and $OPENAI_API_KEY
extract = hr.llm.transduce(
    PackageInfo,
    client=client,
    model="gpt-4o-mini",
    instructions="Classify the Python package from its description.",
    fields=["package", "description"],
    pack=8,  # eight packages in each request
)

if __name__ == "__main__":
    result = hr.run(
        hr.with_input(extract),  # each record, with the answer's fields added
        hr.read_jsonl(HERE / "packages.jsonl", key="package"),
        sink=hr.write_parquet("out/packages"),  # topics becomes a list<string> column
        run_dir="out/run",  # killed? run it again: it resumes
        max_dead=0,  # raise hr.TooManyDead if any item failed
    )
    print(result.summary())
    table = pq.read_table("out/packages")
    print()
    print(table.schema)
    for row in table.slice(0, 2).to_pylist():
        print(row)
