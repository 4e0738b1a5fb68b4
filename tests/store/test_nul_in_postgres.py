"""U+0000 in a key or a value, with a PostgreSQL run store and table: PostgreSQL's text
cannot hold it. It used to end the run at its first commit, and every resume the same
way; now a value the table cannot hold is that item's dead letter naming the field,
and a key with a NUL is stored and read back exactly."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import headrace as hr
from headrace.io.sql import connect


def _items() -> list[dict[str, Any]]:
    items = [{"id": f"k{n}", "text": f"t{n}"} for n in range(30)]
    items[3]["text"] = "bad\x00value"  # a NUL in a value
    items[5]["id"] = "key\x00with-nul"  # and in a key
    items[7]["text"] = "a literal \\u0000 is fine"  # backslash, u0000: text, not a NUL
    return items


@hr.step
def nested(row: dict[str, Any]) -> dict[str, Any]:
    return {"id": row["id"], "text": row["text"], "extra": {"t": row["text"]}}


def test_a_nul_is_an_items_dead_letter_and_the_run_ends_and_resumes(
    tmp_path: Path, postgres_url: str, table_name: str, run_name: str
) -> None:
    def go(**options: Any) -> hr.RunResult:
        return hr.run(
            nested,
            _items(),
            key="id",
            sink=hr.write_sql(postgres_url, table_name, key="id"),
            run_dir=tmp_path / run_name,
            run_store=postgres_url,
            progress=False,
            **options,
        )

    result = go()
    dead = {d.index: d for d in result.dead_letters}
    assert sorted(dead) == [3, 5]  # the value, and the key (the key column holds it)
    assert "field 'text' holds the character U+0000" in dead[3].message
    assert "field 'id' holds the character U+0000" in dead[5].message
    assert result.items_out == 28
    db = connect(postgres_url)
    try:
        keys = {r[0] for r in db.execute(f'SELECT id FROM "{table_name}"').fetchall()}
    finally:
        db.close()
    assert len(keys) == 28 and "k7" in keys
    again = go(resume=True)  # the stored key with a NUL reads back exactly
    assert again.metrics.items_skipped == 30
    retried = go(retry_dead=True)
    assert retried.items_dead == 2
