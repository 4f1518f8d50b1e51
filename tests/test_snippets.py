"""Every snippet the models page can produce, taken from the page a live gateway renders and run as written:
shell ones with bash (curl), Python ones with this interpreter (openai, anthropic, google-genai), Node ones
with `node` (the `openai` package installed with npm into a temporary folder), with `YOUR_API_KEY` in the
environment, against channels of each protocol on the fake upstream. Each must print the fake's answer.

Node is needed when CI=true; elsewhere its snippets are skipped when `node` (or npm, for the `openai`
package) is missing.
"""

from __future__ import annotations

import html
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from console.web.snippets import SNIPPETS
from tests.conftest import IN_CI, Gateway
from tests.fake_upstream import DEFAULT_CONTENT, DEFAULT_EMBEDDING_DIMENSIONS, FAKE_PNG_B64, FakeUpstream

CHAT_SNIPPETS = {
    "snippet-chat-curl", "snippet-chat-python-openai", "snippet-chat-node-js-openai",
    "snippet-stream-curl", "snippet-stream-python-openai", "snippet-stream-node-js-openai",
    "snippet-stream-fetch-node-js-18", "snippet-messages-curl", "snippet-messages-python-anthropic",
    "snippet-gemini-curl", "snippet-gemini-python-google-genai",
}  # fmt: skip
EMBEDDING_SNIPPETS = {
    "snippet-embeddings-curl",
    "snippet-embeddings-python-openai",
    "snippet-embeddings-node-js-openai",
}
IMAGE_SNIPPETS = {"snippet-images-curl", "snippet-images-python-openai", "snippet-images-node-js-openai"}
NODE_OPENAI = "openai@7"  # the major version the snippets are written for
RUN_TIMEOUT_S = 60


def test_these_tests_cover_every_snippet_the_page_can_produce() -> None:
    assert {s.id for s in SNIPPETS} == CHAT_SNIPPETS | EMBEDDING_SNIPPETS | IMAGE_SNIPPETS


@pytest.fixture(scope="session")
def node_folder(tmp_path_factory: pytest.TempPathFactory) -> Path | str:
    """A folder whose node_modules holds `openai`, or why there is none (a reason to skip)."""
    if shutil.which("node") is None:
        if IN_CI:
            pytest.fail("node is not installed (CI=true: the Node snippets must run)")
        return "node is not installed"
    folder = tmp_path_factory.mktemp("node-snippets")
    (folder / "package.json").write_text('{"name": "snippets", "private": true, "type": "module"}')
    npm = shutil.which("npm")
    if npm is None:
        if IN_CI:
            pytest.fail("npm is not installed (CI=true: the Node openai snippets must run)")
        return folder  # the fetch snippets need no package; the openai ones skip
    installed = subprocess.run(
        [npm, "install", "--no-audit", "--no-fund", "--loglevel=error", NODE_OPENAI],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if installed.returncode != 0 and IN_CI:
        pytest.fail(f"npm install {NODE_OPENAI} failed:\n{installed.stderr}")
    return folder


def _signed_in(gateway: Gateway) -> requests.Session:
    """A browser session of a new user of the default group, signed in through the console's form."""
    password = "pw-" + secrets.token_hex(8)
    user = gateway.user(10, password=password)
    session = requests.Session()
    session.headers["Accept"] = "text/html"
    login = session.get(gateway.url + "/login").text
    token = re.search(r'<meta name="csrf-token" content="([^"]+)"', login).group(1)
    form = {"username": user["username"], "password": password, "csrf_token": token}
    assert session.post(gateway.url + "/login", data=form, allow_redirects=False).status_code == 302
    session.user = user  # type: ignore[attr-defined]
    return session


def page_snippets(session: requests.Session, gateway: Gateway, model: str) -> dict[str, tuple[str, str]]:
    """The snippets on the models page for `model`: id -> (language, code), as a reader copies them."""
    page = session.get(gateway.url + "/models", params={"model": model})
    assert page.status_code == 200, page.text[:500]
    found = re.findall(
        r'<pre id="([^"]+)" data-task="[^"]+" data-language="([^"]+)">(.*?)</pre>', page.text, re.S
    )
    assert f'<code class="chosen-model">{html.escape(model)}</code>' in page.text
    return {name: (language, html.unescape(code)) for name, language, code in found}


def run(language: str, code: str, key: str, node_folder: Path | str, tmp_path: Path) -> str:
    env = {**os.environ, "YOUR_API_KEY": key}
    for proxy in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        env.pop(proxy, None)  # the gateway is on loopback
    if language == "shell":
        command, cwd = ["bash", "-c", code], tmp_path
    elif language == "python":
        command, cwd = [sys.executable, "-c", code], tmp_path
    else:
        if isinstance(node_folder, str):
            pytest.skip(node_folder)
        if 'from "openai"' in code and not (node_folder / "node_modules" / "openai").is_dir():
            pytest.skip(f"npm could not install {NODE_OPENAI}")
        script = node_folder / f"snippet-{secrets.token_hex(4)}.mjs"
        script.write_text(code)
        command, cwd = ["node", str(script)], node_folder
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    assert done.returncode == 0, f"{language} snippet failed:\n{code}\n--- stderr:\n{done.stderr}"
    return done.stdout


def run_all(
    snippets: dict[str, tuple[str, str]], key: str, node_folder: Path | str, tmp_path: Path
) -> list[tuple[str, tuple[str, str], str]]:
    """Each snippet run at once (interpreters start slowly): (id, (language, code), what it printed).
    Node ones are left out where there is no node (and not CI)."""
    wanted = {n: s for n, s in snippets.items() if s[0] != "node" or not isinstance(node_folder, str)}
    with ThreadPoolExecutor(max_workers=len(wanted)) as pool:
        started = {n: pool.submit(run, *s, key, node_folder, tmp_path) for n, s in wanted.items()}
        return [(n, wanted[n], started[n].result()) for n in sorted(started)]


def streamed_text(sse: str) -> str:
    """The content of an OpenAI chat stream as curl prints it."""
    text = []
    for line in sse.splitlines():
        if line.startswith("data: ") and line != "data: [DONE]":
            for choice in json.loads(line[6:]).get("choices", []):
                text.append(choice.get("delta", {}).get("content") or "")
    assert "data: [DONE]" in sse
    return "".join(text)


@pytest.fixture
def served(gateway: Gateway, upstream: FakeUpstream, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh priced model on a channel of the type the test names."""
    kind, family = request.param
    model = f"{family}-{secrets.token_hex(4)}"
    base = upstream.base_url if kind == "openai" else upstream.root_url
    gateway.channel(upstream, [model], type=kind, base_url=base)
    gateway.price(model)
    yield model


@pytest.mark.parametrize(
    "served",
    [("openai", "gpt-4o"), ("anthropic", "claude-sonnet-4"), ("gemini", "gemini-2.5-flash")],
    indirect=True,
    ids=["openai-channel", "anthropic-channel", "gemini-channel"],
)
def test_every_chat_snippet_prints_the_answer(
    gateway: Gateway, served: str, node_folder: Path | str, tmp_path: Path
) -> None:
    session = _signed_in(gateway)
    key = gateway.key(session.user)["key"]  # type: ignore[attr-defined]
    snippets = page_snippets(session, gateway, served)
    assert set(snippets) == CHAT_SNIPPETS
    ran = []
    for name, (_language, _code), out in run_all(snippets, key, node_folder, tmp_path):
        if name == "snippet-stream-curl":
            assert streamed_text(out) == DEFAULT_CONTENT, out
        else:
            assert DEFAULT_CONTENT in out, f"{name} printed {out!r}"
        ran.append(name)
    assert len(ran) >= 7  # every shell and Python snippet at least


@pytest.mark.parametrize(
    "served",
    [("openai", "text-embedding-3"), ("gemini", "gemini-embedding")],
    indirect=True,
    ids=["openai-channel", "gemini-channel"],
)
def test_every_embeddings_snippet_prints_a_vector(
    gateway: Gateway, served: str, node_folder: Path | str, tmp_path: Path
) -> None:
    session = _signed_in(gateway)
    key = gateway.key(session.user)["key"]  # type: ignore[attr-defined]
    snippets = page_snippets(session, gateway, served)
    assert set(snippets) == EMBEDDING_SNIPPETS
    for name, (language, _code), out in run_all(snippets, key, node_folder, tmp_path):
        if language == "shell":
            assert len(json.loads(out)["data"][0]["embedding"]) == DEFAULT_EMBEDDING_DIMENSIONS
        else:
            assert out.split()[0] == str(DEFAULT_EMBEDDING_DIMENSIONS), f"{name} printed {out!r}"


@pytest.mark.parametrize(
    "served",
    [("openai", "gpt-image-1"), ("openai", "dall-e-3")],
    indirect=True,
    ids=["gpt-image", "dall-e"],
)
def test_every_image_snippet_saves_the_image_or_prints_its_link(
    gateway: Gateway, served: str, node_folder: Path | str, tmp_path: Path
) -> None:
    session = _signed_in(gateway)
    key = gateway.key(session.user)["key"]  # type: ignore[attr-defined]
    snippets = page_snippets(session, gateway, served)
    assert set(snippets) == IMAGE_SNIPPETS
    ran = run_all(snippets, key, node_folder, tmp_path)
    for name, (language, _code), out in ran:
        if language == "shell":
            image = json.loads(out)["data"][0]
            assert image.get("b64_json") == FAKE_PNG_B64 or image["url"].endswith(".png"), out
        elif served.startswith("gpt-image"):
            assert out.strip() == "saved image.png", f"{name} printed {out!r}"
        else:
            assert re.fullmatch(r"https://\S+\.png", out.strip()), f"{name} printed {out!r}"
    if served.startswith("gpt-image"):  # the Python one wrote into tmp_path, the Node one into its folder
        assert (tmp_path / "image.png").read_bytes()[:4] == b"\x89PNG"
    assert gateway.logs_of(session.user, len(ran))[0]["endpoint"] == "images"  # type: ignore[attr-defined]


def test_the_langchain_integration_runs_as_written(
    gateway: Gateway, upstream: FakeUpstream, tmp_path: Path
) -> None:
    """The integrations page's LangChain steps, with the reader's key and a model of theirs put where the
    page says: `langchain-openai` talks to the gateway's chat completions."""
    model = "gpt-4o-mini-" + secrets.token_hex(3)
    gateway.channel(upstream, [model])
    gateway.price(model)
    session = _signed_in(gateway)
    key = gateway.key(session.user)["key"]  # type: ignore[attr-defined]
    page = session.get(gateway.url + "/integrations").text
    code = html.unescape(re.search(r'<pre id="langchain-python">(.*?)</pre>', page, re.S).group(1))
    assert f'base_url="{gateway.url}/v1"' in code
    code = code.replace('"sk-..."', json.dumps(key)).replace('"gpt-4o-mini"', json.dumps(model))
    assert DEFAULT_CONTENT in run("python", code, key, "", tmp_path)
    assert gateway.logs_of(session.user, 1)[0]["model"] == model  # type: ignore[attr-defined]


def test_a_wrong_key_fails_each_kind_of_snippet_loudly(
    gateway: Gateway, upstream: FakeUpstream, node_folder: Path | str, tmp_path: Path
) -> None:
    """A snippet must not look as if it worked when the key is wrong: the SDKs raise, fetch throws."""
    model = "gpt-4o-" + secrets.token_hex(4)
    gateway.channel(upstream, [model])
    gateway.price(model)
    session = _signed_in(gateway)
    snippets = page_snippets(session, gateway, model)
    for name in ("snippet-chat-python-openai", "snippet-stream-fetch-node-js-18"):
        language, code = snippets[name]
        if language == "node" and isinstance(node_folder, str):
            continue
        with pytest.raises(AssertionError, match="snippet failed"):
            run(language, code, "sk-not-a-key", node_folder, tmp_path)
