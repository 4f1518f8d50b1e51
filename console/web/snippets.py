"""Code snippets for a model: a table of templates (task, language, client, source) that the models page
fills with the gateway's real base URL and the chosen model, the key always as `$YOUR_API_KEY` (taken
from the environment, so a snippet can be pasted and run as it is).

A model gets the snippets of the endpoints that serve it (see `console.web.models.endpoints`): chat,
streaming, Claude Messages and Gemini for chat models, embeddings for embedding models, image generation
for image models. The test suite runs every snippet the page can produce against a live gateway
(tests/test_snippets.py).

Placeholders in a source: `%BASE%` (the base URL, ending in `/v1`) and `%ROOT%` (without it) as they go
in a shell command; `%BASE_LIT%` and `%ROOT_LIT%` as Python and JavaScript string literals; `%MODEL%` as a
JSON, Python and JavaScript string literal (escaped for the single-quoted shell argument in shell
snippets); `%MODEL_PATH%` URL-quoted for a path.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote

from flask_babel import lazy_gettext as _


@dataclass(slots=True, frozen=True)
class Snippet:
    task: str  # chat, stream, embeddings, images, messages, gemini
    language: str  # shell, python, node: how the test suite runs it
    client: str  # what it is written with, as the page labels it
    source: str

    @property
    def id(self) -> str:
        return "snippet-" + re.sub(r"[^a-z0-9]+", "-", f"{self.task} {self.client}".lower()).strip("-")


@dataclass(slots=True, frozen=True)
class Filled:
    """One snippet with the base URL and the model filled in."""

    id: str
    task: str
    language: str
    client: str
    code: str


# the endpoint each task calls: a model gets a task's snippets when that endpoint serves it
TASK_ENDPOINTS = {
    "chat": "/v1/chat/completions",
    "stream": "/v1/chat/completions",
    "embeddings": "/v1/embeddings",
    "images": "/v1/images/generations",
    "messages": "/v1/messages",
    "gemini": "/v1beta/models/{model}:generateContent",
}
TASK_LABELS: dict[str, Callable[[], str]] = {
    "chat": lambda: _("Chat"),
    "stream": lambda: _("Streaming"),
    "embeddings": lambda: _("Embeddings"),
    "images": lambda: _("Image generation"),
    "messages": lambda: _("Claude Messages"),
    "gemini": lambda: _("Gemini generateContent"),
}

_OPENAI_PY = """import os

from openai import OpenAI

client = OpenAI(base_url=%BASE_LIT%, api_key=os.environ["YOUR_API_KEY"])
"""
_OPENAI_JS = """// save as hello.mjs; npm install openai; node hello.mjs
import OpenAI from "openai";

const client = new OpenAI({ baseURL: %BASE_LIT%, apiKey: process.env.YOUR_API_KEY });
"""
_OPENAI_PY_B64 = _OPENAI_PY.replace("import os", "import base64\nimport os")
_OPENAI_JS_FS = _OPENAI_JS.replace(
    "import OpenAI", 'import { writeFile } from "node:fs/promises";\nimport OpenAI'
)

SNIPPETS: tuple[Snippet, ...] = (
    Snippet("chat", "shell", "curl", """\
curl "%BASE%/chat/completions" \\
  -H "Authorization: Bearer $YOUR_API_KEY" \\
  -H "Content-Type: application/json" \\
  -d '{"model": %MODEL%, "messages": [{"role": "user", "content": "Hello!"}]}'"""),
    Snippet("chat", "python", "Python (openai)", _OPENAI_PY + """\
response = client.chat.completions.create(
    model=%MODEL%, messages=[{"role": "user", "content": "Hello!"}]
)
print(response.choices[0].message.content)"""),
    Snippet("chat", "node", "Node.js (openai)", _OPENAI_JS + """\
const response = await client.chat.completions.create({
  model: %MODEL%,
  messages: [{ role: "user", content: "Hello!" }],
});
console.log(response.choices[0].message.content);"""),
    Snippet("stream", "shell", "curl", """\
curl -N "%BASE%/chat/completions" \\
  -H "Authorization: Bearer $YOUR_API_KEY" \\
  -H "Content-Type: application/json" \\
  -d '{"model": %MODEL%, "stream": true, "messages": [{"role": "user", "content": "Hello!"}]}'"""),
    Snippet("stream", "python", "Python (openai)", _OPENAI_PY + """\
stream = client.chat.completions.create(
    model=%MODEL%, messages=[{"role": "user", "content": "Hello!"}], stream=True
)
for chunk in stream:
    if chunk.choices:
        print(chunk.choices[0].delta.content or "", end="", flush=True)
print()"""),
    Snippet("stream", "node", "Node.js (openai)", _OPENAI_JS + """\
const stream = await client.chat.completions.create({
  model: %MODEL%,
  messages: [{ role: "user", content: "Hello!" }],
  stream: true,
});
for await (const chunk of stream) {
  process.stdout.write(chunk.choices[0]?.delta?.content ?? "");
}
process.stdout.write("\\n");"""),
    Snippet("stream", "node", "fetch (Node.js 18+)", """\
// save as stream.mjs; node stream.mjs (no package needed)
const response = await fetch(%BASE_LIT% + "/chat/completions", {
  method: "POST",
  headers: {
    Authorization: `Bearer ${process.env.YOUR_API_KEY}`,
    "Content-Type": "application/json",
  },
  body: JSON.stringify({
    model: %MODEL%,
    stream: true,
    messages: [{ role: "user", content: "Hello!" }],
  }),
});
if (!response.ok) throw new Error(`${response.status}: ${await response.text()}`);
const reader = response.body.getReader();
const decoder = new TextDecoder();
let buffer = "";
for (;;) {
  const { done, value } = await reader.read();
  if (done) break;
  buffer += decoder.decode(value, { stream: true });
  const lines = buffer.split("\\n");
  buffer = lines.pop();
  for (const line of lines) {
    if (!line.startsWith("data: ") || line === "data: [DONE]") continue;
    const delta = JSON.parse(line.slice(6)).choices?.[0]?.delta?.content;
    if (delta) process.stdout.write(delta);
  }
}
process.stdout.write("\\n");"""),
    Snippet("embeddings", "shell", "curl", """\
curl "%BASE%/embeddings" \\
  -H "Authorization: Bearer $YOUR_API_KEY" \\
  -H "Content-Type: application/json" \\
  -d '{"model": %MODEL%, "input": "Hello!"}'"""),
    Snippet("embeddings", "python", "Python (openai)", _OPENAI_PY + """\
response = client.embeddings.create(model=%MODEL%, input="Hello!")
print(len(response.data[0].embedding), response.data[0].embedding[:4])"""),
    Snippet("embeddings", "node", "Node.js (openai)", _OPENAI_JS + """\
const response = await client.embeddings.create({ model: %MODEL%, input: "Hello!" });
console.log(response.data[0].embedding.length, response.data[0].embedding.slice(0, 4));"""),
    Snippet("images", "shell", "curl", """\
curl "%BASE%/images/generations" \\
  -H "Authorization: Bearer $YOUR_API_KEY" \\
  -H "Content-Type: application/json" \\
  -d '{"model": %MODEL%, "prompt": "A lighthouse at dawn, in watercolour", "size": "1024x1024"}'"""),
    Snippet("images", "python", "Python (openai)", _OPENAI_PY_B64 + """\
result = client.images.generate(
    model=%MODEL%, prompt="A lighthouse at dawn, in watercolour", size="1024x1024"
)
image = result.data[0]
if image.b64_json:  # gpt-image models answer the image itself
    with open("image.png", "wb") as f:
        f.write(base64.b64decode(image.b64_json))
    print("saved image.png")
else:  # dall-e models answer a link to it
    print(image.url)"""),
    Snippet("images", "node", "Node.js (openai)", _OPENAI_JS_FS + """\
const result = await client.images.generate({
  model: %MODEL%,
  prompt: "A lighthouse at dawn, in watercolour",
  size: "1024x1024",
});
const image = result.data[0];
if (image.b64_json) {
  // gpt-image models answer the image itself
  await writeFile("image.png", Buffer.from(image.b64_json, "base64"));
  console.log("saved image.png");
} else {
  console.log(image.url); // dall-e models answer a link to it
}"""),
    Snippet("messages", "shell", "curl", """\
curl "%ROOT%/v1/messages" \\
  -H "x-api-key: $YOUR_API_KEY" \\
  -H "anthropic-version: 2023-06-01" \\
  -H "Content-Type: application/json" \\
  -d '{"model": %MODEL%, "max_tokens": 1024, "messages": [{"role": "user", "content": "Hello!"}]}'"""),
    Snippet("messages", "python", "Python (anthropic)", """\
import os

from anthropic import Anthropic

client = Anthropic(base_url=%ROOT_LIT%, api_key=os.environ["YOUR_API_KEY"])
message = client.messages.create(
    model=%MODEL%, max_tokens=1024, messages=[{"role": "user", "content": "Hello!"}]
)
print("".join(block.text for block in message.content if block.type == "text"))"""),
    Snippet("gemini", "shell", "curl", """\
curl "%ROOT%/v1beta/models/%MODEL_PATH%:generateContent" \\
  -H "x-goog-api-key: $YOUR_API_KEY" \\
  -H "Content-Type: application/json" \\
  -d '{"contents": [{"role": "user", "parts": [{"text": "Hello!"}]}]}'"""),
    Snippet("gemini", "python", "Python (google-genai)", """\
import os

from google import genai
from google.genai import types

client = genai.Client(
    api_key=os.environ["YOUR_API_KEY"], http_options=types.HttpOptions(base_url=%ROOT_LIT%)
)
response = client.models.generate_content(model=%MODEL%, contents="Hello!")
print(response.text)"""),
)  # fmt: skip


def _shell_quoted(literal: str) -> str:
    """A JSON literal inside a single-quoted shell argument: a quote closes, escapes and reopens it."""
    return literal.replace("'", "'\\''")


def fill(snippet: Snippet, base_url: str, model: str) -> Filled:
    root = base_url.removesuffix("/v1")
    model_literal = json.dumps(model, ensure_ascii=False)
    if snippet.language == "shell":
        model_literal = _shell_quoted(model_literal)
    code = snippet.source
    for placeholder, value in (
        ("%BASE_LIT%", json.dumps(base_url)),
        ("%ROOT_LIT%", json.dumps(root)),
        ("%BASE%", base_url),
        ("%ROOT%", root),
        ("%MODEL_PATH%", quote(model, safe="")),
        ("%MODEL%", model_literal),
    ):
        code = code.replace(placeholder, value)
    return Filled(snippet.id, snippet.task, snippet.language, snippet.client, code)


def for_model(model: str, endpoint_paths: set[str], base_url: str) -> list[tuple[str, list[Filled]]]:
    """The snippets of every task whose endpoint serves `model`, grouped by task: (task label, snippets)."""
    groups: list[tuple[str, list[Filled]]] = []
    for task, path in TASK_ENDPOINTS.items():
        if path not in endpoint_paths:
            continue
        filled = [fill(s, base_url, model) for s in SNIPPETS if s.task == task]
        groups.append((str(TASK_LABELS[task]()), filled))
    return groups
