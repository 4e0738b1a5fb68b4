"""A batch-tier run for the kill tests, killing itself at one point of the protocol.

python batch_job.py SIM_URL RUN_DIR SOURCE OUT [KILL_AT]

KILL_AT names the point (see ``POINTS``): the process SIGKILLs itself right after
that call returns, as a power cut would stop it there. Without it the run goes to
its end. ``BATCH_API=anthropic`` in the environment speaks Anthropic's batches.
The requests are structured (a typed output, a Jinja prompt), in batches of at
most 10, retried on per-request errors.
"""

from __future__ import annotations

import functools
import os
import signal
import sys
from typing import Any

from pydantic import BaseModel

import headrace as hr
from headrace.llm.tier.anthropic_batches import AnthropicBatches
from headrace.llm.tier.ledger import Ledger
from headrace.llm.tier.openai_batches import OpenAIBatches


class Verdict(BaseModel):
    tone: str
    score: int


def _after(owner: type, name: str, when: Any = None) -> None:
    """SIGKILL this process right after ``owner.name`` returns (when ``when(args)``)."""
    original = getattr(owner, name)
    if name in ("save", "write_output", "write_input"):

        @functools.wraps(original)
        def plain(*args: Any, **kwargs: Any) -> Any:
            result = original(*args, **kwargs)
            if when is None or when(args):
                os.kill(os.getpid(), signal.SIGKILL)
            return result

        setattr(owner, name, plain)
        return

    @functools.wraps(original)
    async def waited(*args: Any, **kwargs: Any) -> Any:
        result = await original(*args, **kwargs)
        if when is None or when(args):
            os.kill(os.getpid(), signal.SIGKILL)
        return result

    setattr(owner, name, waited)


API = os.environ.get("BATCH_API", "openai")  # the provider's batch API the run speaks
SHAPE = AnthropicBatches if API == "anthropic" else OpenAIBatches

POINTS = {
    "intended": lambda: _after(Ledger, "save", lambda a: a[1].state == "intended"),
    "uploaded": lambda: _after(OpenAIBatches, "upload"),
    "created": lambda: _after(SHAPE, "create"),
    "polling": lambda: _after(SHAPE, "retrieve"),
    "downloaded": lambda: _after(SHAPE, "answers"),
    "kept": lambda: _after(Ledger, "write_output"),
    "collected": lambda: _after(Ledger, "save", lambda a: a[1].state == "collected"),
}


def main(sim_url: str, run_dir: str, source: str, out: str, kill_at: str | None) -> None:
    if kill_at:
        POINTS[kill_at]()
    retry = hr.Retry(attempts=8, backoff=0.01)
    client = hr.llm.Client(base_url=sim_url, retry=retry, batch_api=API)  # type: ignore[arg-type]
    step = hr.llm.transduce(
        Verdict,
        client=client,
        model="sim-chat",
        instructions="Judge the tone.",
        template="Judge the tone of: {{ text }}",
        tier=hr.llm.BatchTier(max_requests=10, gather=0.1, poll=0.1),
    )
    hr.run(
        hr.with_input(step),
        hr.read_jsonl(source, key="id"),
        sink=hr.write_jsonl(out),
        run_dir=run_dir,
        progress=False,
    )


if __name__ == "__main__":
    main(*sys.argv[1:5], sys.argv[5] if len(sys.argv) > 5 else None)
