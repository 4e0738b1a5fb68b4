"""A recipe's keys go only to the hosts the user bound them to, and its source and
sink stay inside its folder unless the command line allows a path."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from services import run_quietly

import headrace as hr
from headrace.errors import PipelineError
from headrace.llm import Client
from headrace.recipe.document import RecipeError

NODE = "nodes:\n  - {id: say, llm: {model: m, prompt: '{{ text }}'}}\n"


def recipe(tmp_path: Path, models: str, rest: str = NODE) -> Path:
    path = tmp_path / "r.yaml"
    path.write_text(f"models:\n  m: {models}\n{rest}")
    return path


@pytest.fixture(autouse=True)
def keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-user-openai-key-123456")
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_user-token-123456")
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.delenv("HEADRACE_SECRETS_FILE", raising=False)


def test_a_recipe_cannot_send_the_openai_key_to_another_host(tmp_path: Path) -> None:
    path = recipe(tmp_path, "{model: gpt, base_url: 'https://evil.example/v1'}")
    with pytest.raises(RecipeError) as refused:
        hr.recipe.load(path)
    assert (
        "llm.model: the key OPENAI_API_KEY is bound to api.openai.com, so it is not sent to "
        "evil.example: bind it with OPENAI_API_KEY_HOSTS=evil.example" in str(refused.value)
    )


@pytest.mark.parametrize(
    ("base_url", "shown"),
    [
        ("http://api.openai.com/v1", "http://api.openai.com:80"),  # the bound host, in clear
        ("https://api.openai.com:8443/v1", "https://api.openai.com:8443"),  # another port
    ],
)
def test_a_key_is_bound_to_an_origin_not_a_host(tmp_path: Path, base_url: str, shown: str) -> None:
    with pytest.raises(RecipeError, match=f"so it is not sent to {shown}: bind it"):
        hr.recipe.load(recipe(tmp_path, f"{{model: gpt, base_url: '{base_url}'}}"))


def test_a_key_crosses_plain_http_only_to_loopback_or_a_bound_http_origin(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(PipelineError, match="is plain http: the key OPENAI_API_KEY would cross"):
        Client("http://api.openai.com/v1")  # Python: base_url alone does not allow http
    with pytest.raises(PipelineError, match=r"not sent to http://10\.0\.0\.5:8000"):
        Client("http://10.0.0.5:8000/v1", key_hosts={"10.0.0.5"})  # https:443 was bound
    inside = Client("http://10.0.0.5:8000/v1", key_hosts={"http://10.0.0.5:8000"})
    assert inside.sends_key  # bound with its scheme and port: the user's own network
    assert Client("http://127.0.0.1:9/v1").sends_key  # this machine
    monkeypatch.delenv("OPENAI_API_KEY")
    Client("http://10.0.0.5:8000/v1")  # no key in the environment: nothing to leak


@pytest.mark.parametrize(
    "base_url", ["http://user:PASSWORD@127.0.0.1:9/v1", "https://:PASSWORD@gw.example/v1"]
)
def test_a_base_url_with_a_password_is_refused_in_one_line(
    base_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(PipelineError, match="holds a user name or password") as refused:
        Client(base_url)
    assert "PASSWORD" not in str(refused.value)
    monkeypatch.setenv("OPENAI_BASE_URL", base_url)
    with pytest.raises(PipelineError, match="holds a user name or password") as refused:
        Client()
    assert "PASSWORD" not in str(refused.value)


def test_a_key_echoed_in_an_encoding_is_redacted() -> None:
    import base64

    from headrace.llm.secrets import Secret, redact

    key = "sk-user-openai-key-123456"
    for prefix in ("", "a", "ab", "user:"):
        echoed = base64.b64encode((prefix + key).encode()).decode()
        text = redact(f"bad credentials {echoed}", Secret(key))
        assert echoed not in text and "***" in text
        urlsafe = base64.urlsafe_b64encode((prefix + key).encode()).decode()
        assert urlsafe not in redact(urlsafe, Secret(key))
    assert key.encode().hex() not in redact(f"x {key.encode().hex()} y", Secret(key))


def test_a_recipe_cannot_send_any_other_variable(tmp_path: Path) -> None:
    path = recipe(
        tmp_path, "{model: gpt, base_url: 'https://evil.example/v1', api_key_env: GITHUB_TOKEN}"
    )
    with pytest.raises(RecipeError, match="the key GITHUB_TOKEN is bound to no host"):
        hr.recipe.load(path)
    # nor to OpenAI's host, which GITHUB_TOKEN was never bound to
    path = recipe(tmp_path, "{model: gpt, api_key_env: GITHUB_TOKEN}")
    with pytest.raises(RecipeError, match=r"not sent to api\.openai\.com"):
        hr.recipe.load(path)


def test_a_binding_in_the_environment_or_secrets_file_lets_the_key_go(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secrets = tmp_path / "secrets.env"
    secrets.write_text("OPENAI_API_KEY_HOSTS=gateway.example, other.example\n")
    monkeypatch.setenv("HEADRACE_SECRETS_FILE", str(secrets))
    loaded = hr.recipe.load(
        recipe(tmp_path, "{model: gpt, base_url: 'https://gateway.example/v1'}")
    )
    assert loaded.name == "r"
    monkeypatch.setenv("OPENAI_BASE_URL", "https://proxy.internal/v1")
    assert hr.recipe.load(recipe(tmp_path, "{model: gpt, base_url: 'https://proxy.internal/v1'}"))


def test_a_loopback_endpoint_the_key_is_not_bound_to_gets_no_key() -> None:
    local = Client("http://127.0.0.1:9/v1", key_hosts={"api.openai.com"})
    assert local.api_key() is None  # a local listener never sees the user's key
    bound = Client("http://127.0.0.1:9/v1", key_hosts={"http://127.0.0.1:9"})
    key = bound.api_key()
    assert key is not None and key.reveal() == "sk-user-openai-key-123456"
    with pytest.raises(PipelineError, match=r"not sent to evil\.example"):
        Client("https://evil.example/v1", key_hosts={"api.openai.com"})
    assert Client("https://mine.example/v1").sends_key  # Python: base_url is the binding


@pytest.mark.parametrize(
    "section",
    [
        "source: {jsonl: ../outside.jsonl}",
        "source: {dir: /etc}",
        "sink: {csv: /tmp/notes.txt, columns: {'touch X': string}}",
        "sink: {jsonl: ../../out.jsonl}",
        "sink: {sql: 'sqlite:////tmp/elsewhere.db', table: t}",
    ],
)
def test_source_and_sink_stay_inside_the_recipe_folder(tmp_path: Path, section: str) -> None:
    folder = tmp_path / "recipe"
    folder.mkdir()
    path = folder / "r.yaml"
    path.write_text(f"{section}\nnodes:\n  - {{id: f, function: json:dumps}}\n")
    loaded = hr.recipe.load(path)  # confined where used, not where loaded
    with pytest.raises(
        RecipeError, match=r"r.yaml:1:\d+: (source|sink)\.\w+: .* is outside the recipe's folder"
    ):
        loaded.source() if section.startswith("source") else loaded.sink()
    with pytest.raises(RecipeError, match="is outside the recipe's folder"):
        loaded.check_paths()  # what headrace validate checks


def test_a_section_outside_the_folder_replaced_on_the_command_line_is_not_refused(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "recipe"
    folder.mkdir()
    (folder / "in.jsonl").write_text('{"id": 1, "text": "a"}\n')
    path = folder / "r.yaml"
    path.write_text(
        "source: {jsonl: ../../elsewhere.jsonl, key: id}\nsink: {jsonl: /tmp/notes.jsonl}\n"
        "nodes:\n  - {id: f, function: json:dumps}\n"
    )
    command = [sys.executable, "-m", "headrace", "run", str(path)]
    given = ["--input", str(folder / "in.jsonl")]
    ran = subprocess.run(
        [*command, *given, "--output", str(folder / "out.jsonl"), "--run-dir", str(folder / "run")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert ran.returncode == 0, ran.stderr
    assert (folder / "out.jsonl").read_text().count("\n") == 1
    half = subprocess.run(
        [*command, *given, "--run-dir", str(folder / "run2")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert half.returncode == 1 and "sink.jsonl: '/tmp/notes.jsonl' is outside" in half.stderr


def test_allow_path_lets_a_recipe_reach_a_named_folder(tmp_path: Path) -> None:
    folder = tmp_path / "recipe"
    folder.mkdir()
    data = tmp_path / "data"
    data.mkdir()
    (data / "in.jsonl").write_text('{"id": 1}\n')
    path = folder / "r.yaml"
    path.write_text(
        "source: {jsonl: ../data/in.jsonl, key: id}\nnodes:\n  - {id: f, function: json:dumps}\n"
    )
    assert hr.recipe.load(path, allow_paths=[data]).source() is not None
    cli = [sys.executable, "-m", "headrace", "validate", str(path)]
    refused = subprocess.run(cli, capture_output=True, text=True, cwd=tmp_path)
    assert refused.returncode == 1 and "is outside the recipe's folder" in refused.stderr
    allowed = subprocess.run(
        [*cli, "--allow-path", str(data)], capture_output=True, text=True, cwd=tmp_path
    )
    assert allowed.returncode == 0, allowed.stderr


def test_a_recipe_from_outside_the_project_needs_allow_or_trusted(tmp_path: Path) -> None:
    downloaded = tmp_path / "downloads"
    downloaded.mkdir()
    project = tmp_path / "project"
    project.mkdir()
    path = downloaded / "r.yaml"
    path.write_text("nodes:\n  - {id: f, function: os:system}\n")
    cli = [sys.executable, "-m", "headrace", "validate", str(path)]

    def validate(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*cli, *extra], capture_output=True, text=True, cwd=project)

    refused = validate()
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines() == [
        f"error: {path} is outside this project (the current directory), and a recipe can "
        "name any function to run; give --allow PACKAGE for each package it may import, or "
        "--trusted if you trust it"
    ]
    narrowed = validate("--allow", "json")
    assert narrowed.returncode == 1 and "module 'os' is not allowed here" in narrowed.stderr
    assert validate("--trusted").returncode == 0


@pytest.mark.parametrize("name", ["/abs/dir", "../../x", "a/b", "..", ".hidden"])
def test_a_recipe_name_is_a_plain_name(tmp_path: Path, name: str) -> None:
    path = tmp_path / "r.yaml"
    path.write_text(f"name: '{name}'\nnodes:\n  - {{id: f, function: json:dumps}}\n")
    with pytest.raises(RecipeError, match=r"r.yaml:1:\d+: name: .* must be a plain name"):
        hr.recipe.load(path)


def test_fresh_never_discards_a_run_another_recipe_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    for folder in ("mine", "downloaded"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "in.jsonl").write_text("".join(f'{{"id": {n}}}\n' for n in range(30)))
        (tmp_path / folder / "r.yaml").write_text(
            "name: project\nsource: {jsonl: in.jsonl, key: id}\nsink: {jsonl: out.jsonl}\n"
            "nodes:\n  - {id: f, function: json:dumps}\n"
        )
    mine = hr.recipe.load(tmp_path / "mine" / "r.yaml")
    assert mine.run(progress=False).items_out == 30
    store = tmp_path / ".headrace" / "project" / "run.sqlite"
    before = store.read_bytes()
    other = hr.recipe.load(tmp_path / "downloaded" / "r.yaml")
    with pytest.raises(hr.HeadraceError, match=r"holds a run made by recipe .*mine/r\.yaml") as no:
        other.run(fresh=True, progress=False)
    assert "30 items finished" in str(no.value) and "remove" in str(no.value)
    assert store.read_bytes() == before  # not discarded
    assert mine.run(fresh=True, progress=False).items_out == 30  # its own: starts over


def test_a_dir_source_does_not_follow_a_link_out_of_its_directory(tmp_path: Path) -> None:
    secret = tmp_path / "outside" / "secret.txt"
    secret.parent.mkdir()
    secret.write_text("the secret")
    docs = tmp_path / "recipe" / "docs"
    docs.mkdir(parents=True)
    (docs / "a.txt").write_text("mine")
    (docs / "b.txt").symlink_to(secret)
    (docs / "c.txt").symlink_to(docs / "a.txt")  # a link inside is read
    result = run_quietly(lambda r: r, hr.read_dir(docs))
    assert sorted(r["text"] for r in result.outputs) == ["mine", "mine"]
    (dead,) = result.dead_letters
    assert "outside the directory" in dead.message and "the secret" not in str(dead)


def test_include_cannot_reach_outside_the_recipe_folder(tmp_path: Path) -> None:
    outside = tmp_path / "outside.yaml"
    outside.write_text("models:\n  m: {model: gpt}\n")
    folder = tmp_path / "recipe"
    folder.mkdir()
    (folder / "linked.yaml").symlink_to(outside)
    for name in ("../outside.yaml", "linked.yaml"):
        path = folder / "r.yaml"
        path.write_text(f"include: ['{name}']\nnodes:\n  - {{id: f, function: json:dumps}}\n")
        with pytest.raises(RecipeError, match="leads out of the recipe's folder"):
            hr.recipe.load(path)
