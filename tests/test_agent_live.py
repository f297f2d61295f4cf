"""Agent loops through the real SDKs against the real server: a three-turn tool loop that ends for
each provider family, a four-step scenario, two sessions in parallel, strict mode's 404 through
each SDK's exception class, and the admin API's session and scenario endpoints."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anthropic
import boto3
import httpx
import ollama
import openai
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from google import genai
from google.genai import errors as genai_errors
from google.genai import types as gtypes

from tests.conftest import Live, ServerThread, make_store, serving

RULES = """
rules:
  - name: hotels found
    match: {tool_result: get_hotels}
    reply: "Hotel Lutetia has a room."
  - name: weather known
    match: {tool_result: {name: get_weather, contains: sunny}}
    tool_calls: [{name: get_hotels, arguments: {city: Paris}}]
  - name: trip asked
    match: {contains: "trip", turn: 1, tools: [get_weather, get_hotels]}
    tool_calls: [{name: get_weather, arguments: {city: Paris}}]
  - name: thanks
    match: {turn: ">=2", contains: "thanks"}
    reply: "Enjoy Paris."
scenarios:
  - name: booking
    steps:
      - name: ask city
        match: {contains: "book a room"}
        reply: "Which city?"
      - match: {contains: "paris"}
        reply: "Which dates?"
      - match: {contains: "june"}
        reply: "Shall I book it?"
      - match: {contains: "yes"}
        reply: "Booked."
"""
TOOL_RESULTS = {"get_weather": "sunny, 24C", "get_hotels": "Lutetia: 1 room"}
SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}}
#: A loop that does not end within this many requests is the bug this issue is about.
MAX_STEPS = 6


@pytest.fixture
def server(tmp_path: Path) -> Any:
    path = tmp_path / "responses.yml"
    path.write_text(RULES)
    with ServerThread(make_store(path)) as running:
        yield running


def journal(live: Live, **params: str) -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = httpx.get(live.root + "/_mock/journal", params=params).json()["data"]
    return data


def run_loop(step: Callable[[], bool]) -> int:
    """Call `step` (one request; True while the model asks for tools) until the loop ends."""
    for n in range(1, MAX_STEPS + 1):
        if not step():
            return n
    raise AssertionError(f"the tool loop did not end in {MAX_STEPS} requests")


def assert_agent_journal(live: Live) -> None:
    rules = [(e["rule"], e["status"]) for e in journal(live)]
    assert rules == [("trip asked", 200), ("weather known", 200), ("hotels found", 200), ("thanks", 200)]


# -- a three-turn tool loop per provider family --------------------------------------------------


@pytest.mark.parametrize("family", ["openai", "azure"])
def test_openai_chat_tool_loop_ends(server: Live, family: str) -> None:
    if family == "azure":
        client: openai.OpenAI = openai.AzureOpenAI(
            azure_endpoint=server.root, api_version="2024-10-21", api_key="k", max_retries=0
        )
    else:
        client = openai.OpenAI(base_url=server.openai_url, api_key="k", max_retries=0)
    tools: Any = [{"type": "function", "function": {"name": n, "parameters": SCHEMA}} for n in TOOL_RESULTS]
    messages: list[Any] = [{"role": "user", "content": "Plan a trip to Paris"}]

    def step() -> bool:
        message = client.chat.completions.create(model="gpt-4o", messages=messages, tools=tools).choices[0].message
        messages.append(message.model_dump(exclude_none=True))
        for c in message.tool_calls or []:
            name = c.function.name  # type: ignore[union-attr]
            messages.append({"role": "tool", "tool_call_id": c.id, "content": TOOL_RESULTS[name]})
        return bool(message.tool_calls)

    assert run_loop(step) == 3
    assert messages[-1]["content"] == "Hotel Lutetia has a room."
    messages.append({"role": "user", "content": "thanks! and the trip?"})
    assert (
        client.chat.completions.create(model="gpt-4o", messages=messages).choices[0].message.content == "Enjoy Paris."
    )
    assert_agent_journal(server)


def test_openai_responses_tool_loop_ends(server: Live) -> None:
    client = openai.OpenAI(base_url=server.openai_url, api_key="k", max_retries=0)
    tools: Any = [{"type": "function", "name": n, "parameters": SCHEMA} for n in TOOL_RESULTS]
    items: list[Any] = [{"role": "user", "content": "Plan a trip to Paris"}]
    last: list[str] = []

    def step() -> bool:
        response = client.responses.create(model="gpt-4o", input=items, tools=tools)
        calls = [o for o in response.output if o.type == "function_call"]
        for output in response.output:
            items.append(output.model_dump(exclude_none=True))
        for c in calls:
            items.append({"type": "function_call_output", "call_id": c.call_id, "output": TOOL_RESULTS[c.name]})
        last[:] = [response.output_text]
        return bool(calls)

    assert run_loop(step) == 3
    assert last == ["Hotel Lutetia has a room."]
    items.append({"role": "user", "content": "thanks! and the trip?"})
    assert client.responses.create(model="gpt-4o", input=items).output_text == "Enjoy Paris."
    assert_agent_journal(server)


def test_anthropic_tool_loop_ends(server: Live) -> None:
    client = anthropic.Anthropic(base_url=server.anthropic_url, api_key="k", max_retries=0)
    tools: Any = [{"name": n, "input_schema": SCHEMA} for n in TOOL_RESULTS]
    messages: list[Any] = [{"role": "user", "content": "Plan a trip to Paris"}]
    model = "claude-sonnet-4-6"

    def step() -> bool:
        reply = client.messages.create(model=model, max_tokens=256, messages=messages, tools=tools)
        messages.append({"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in reply.content]})
        uses = [b for b in reply.content if b.type == "tool_use"]
        if uses:
            results = [{"type": "tool_result", "tool_use_id": b.id, "content": TOOL_RESULTS[b.name]} for b in uses]
            messages.append({"role": "user", "content": results})
        return bool(uses)

    assert run_loop(step) == 3
    assert messages[-1]["content"][0]["text"] == "Hotel Lutetia has a room."
    messages.append({"role": "user", "content": "thanks! and the trip?"})
    reply = client.messages.create(model=model, max_tokens=64, messages=messages)
    assert reply.content[0].text == "Enjoy Paris."  # type: ignore[union-attr]
    assert_agent_journal(server)


def test_gemini_tool_loop_ends(server: Live) -> None:
    http = httpx.Client()
    client = genai.Client(api_key="k", http_options={"base_url": server.root, "httpx_client": http})  # type: ignore[arg-type]
    declarations = [gtypes.FunctionDeclaration(name=n, parameters_json_schema=SCHEMA) for n in TOOL_RESULTS]
    config = gtypes.GenerateContentConfig(tools=[gtypes.Tool(function_declarations=declarations)])
    contents: list[Any] = [gtypes.Content(role="user", parts=[gtypes.Part(text="Plan a trip to Paris")])]
    text: list[str] = []
    try:

        def step() -> bool:
            response = client.models.generate_content(model="gemini-2.5-flash", contents=contents, config=config)
            content = response.candidates[0].content  # type: ignore[index]
            contents.append(content)
            calls = response.function_calls or []
            if calls:
                parts = [
                    gtypes.Part.from_function_response(
                        name=c.name or "", response={"result": TOOL_RESULTS[c.name or ""]}
                    )
                    for c in calls
                ]
                contents.append(gtypes.Content(role="user", parts=parts))
            text[:] = [response.text or ""]
            return bool(calls)

        assert run_loop(step) == 3
        assert text == ["Hotel Lutetia has a room."]
        contents.append(gtypes.Content(role="user", parts=[gtypes.Part(text="thanks! and the trip?")]))
        response = client.models.generate_content(model="gemini-2.5-flash", contents=contents, config=config)
        assert response.text == "Enjoy Paris."
    finally:
        http.close()
    assert_agent_journal(server)


def test_bedrock_invoke_tool_loop_ends(server: Live) -> None:
    client = bedrock(server)
    tools = [{"name": n, "input_schema": SCHEMA} for n in TOOL_RESULTS]
    messages: list[Any] = [{"role": "user", "content": "Plan a trip to Paris"}]
    model = "anthropic.claude-sonnet-4-5-20250929-v1:0"

    def invoke(**extra: Any) -> Any:
        body = {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 256, "messages": messages, **extra}
        return json.loads(client.invoke_model(modelId=model, body=json.dumps(body))["body"].read())

    def step() -> bool:
        reply = invoke(tools=tools)
        messages.append({"role": "assistant", "content": reply["content"]})
        uses = [b for b in reply["content"] if b["type"] == "tool_use"]
        if uses:
            results = [
                {"type": "tool_result", "tool_use_id": b["id"], "content": TOOL_RESULTS[b["name"]]} for b in uses
            ]
            messages.append({"role": "user", "content": results})
        return bool(uses)

    assert run_loop(step) == 3
    messages.append({"role": "user", "content": "thanks! and the trip?"})
    assert invoke()["content"][0]["text"] == "Enjoy Paris."
    assert_agent_journal(server)


def test_ollama_tool_loop_ends(server: Live) -> None:
    client = ollama.Client(host=server.root)
    tools: Any = [{"type": "function", "function": {"name": n, "parameters": SCHEMA}} for n in TOOL_RESULTS]
    messages: list[Any] = [{"role": "user", "content": "Plan a trip to Paris"}]

    def step() -> bool:
        message = client.chat(model="llama3.2", messages=messages, tools=tools).message
        messages.append(message.model_dump(exclude_none=True))
        for c in message.tool_calls or []:
            messages.append({"role": "tool", "tool_name": c.function.name, "content": TOOL_RESULTS[c.function.name]})
        return bool(message.tool_calls)

    assert run_loop(step) == 3
    assert messages[-1]["content"] == "Hotel Lutetia has a room."
    messages.append({"role": "user", "content": "thanks! and the trip?"})
    assert client.chat(model="llama3.2", messages=messages).message.content == "Enjoy Paris."
    assert_agent_journal(server)


def bedrock(live: Live) -> Any:
    return boto3.client(
        "bedrock-runtime",
        endpoint_url=live.root,
        region_name="us-east-1",
        aws_access_key_id="x",
        aws_secret_access_key="y",
        config=Config(retries={"mode": "standard", "total_max_attempts": 1}, read_timeout=10),
    )


def test_bedrock_converse_tool_loop_ends(server: Live) -> None:
    client = bedrock(server)
    tools = {"tools": [{"toolSpec": {"name": n, "inputSchema": {"json": SCHEMA}}} for n in TOOL_RESULTS]}
    messages: list[Any] = [{"role": "user", "content": [{"text": "Plan a trip to Paris"}]}]
    model = "anthropic.claude-sonnet-4-5-20250929-v1:0"

    def step() -> bool:
        response = client.converse(modelId=model, messages=messages, toolConfig=tools)
        message = response["output"]["message"]
        messages.append(message)
        uses = [b["toolUse"] for b in message["content"] if "toolUse" in b]
        if uses:
            results = [
                {"toolResult": {"toolUseId": u["toolUseId"], "content": [{"text": TOOL_RESULTS[u["name"]]}]}}
                for u in uses
            ]
            messages.append({"role": "user", "content": results})
        return bool(uses)

    assert run_loop(step) == 3
    assert messages[-1]["content"][0]["text"] == "Hotel Lutetia has a room."
    messages.append({"role": "user", "content": [{"text": "thanks! and the trip?"}]})
    response = client.converse(modelId=model, messages=messages, toolConfig=tools)
    assert response["output"]["message"]["content"][0]["text"] == "Enjoy Paris."
    assert_agent_journal(server)


# -- a scenario, sessions ---------------------------------------------------------------------------


def test_a_four_step_scenario_reports_its_end_and_resets(server: Live) -> None:
    client = openai.OpenAI(base_url=server.openai_url, api_key="k", max_retries=0)

    def ask(text: str) -> str:
        reply = client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": text}])
        return reply.choices[0].message.content or ""

    said = [ask(t) for t in ("June please", "Book a room", "Paris", "in June", "yes", "book a room")]
    assert said[1:5] == ["Which city?", "Which dates?", "Shall I book it?", "Booked."]
    assert said[0] == said[5] == "I don't know the answer to that."  # before step 1, and once finished
    entries = journal(server)
    assert [e["rule"] for e in entries[1:5]] == ["ask city", "booking step 2", "booking step 3", "booking step 4"]
    assert entries[4]["scenario"] == {"name": "booking", "step": 4, "steps": 4, "finished": True}
    assert entries[5]["scenario"] is None
    from mockllm_tui.core.request_log import format_text

    last_step = server.store.journal()[4]
    assert "rule=booking step 4 scenario=booking:4/4,finished " in format_text(last_step)
    # The nearest hold the most conditions (`trip asked` holds its turn), then come in the order tried.
    assert entries[0]["near_misses"] == [
        {"rule": "trip asked", "reason": "contains: 'trip' is not in 'June please'"},
        {"rule": "ask city", "reason": "contains: 'book a room' is not in 'June please'"},
        {"rule": "hotels found", "reason": "tool_result: no tool result in the conversation"},
    ]
    listed = httpx.get(server.root + "/_mock/scenarios").json()["data"]
    assert listed == [
        {"name": "booking", "step": 5, "steps": 4, "finished": True, "next": None, "position": "finished 4/4"}
    ]
    reset = httpx.post(server.root + "/_mock/scenarios/booking/reset")
    assert reset.status_code == 200 and reset.json()["position"] == "step 1/4"
    assert ask("book a room") == "Which city?"
    missing = httpx.post(server.root + "/_mock/scenarios/nope/reset")
    assert missing.status_code == 404 and "no scenario named 'nope'" in missing.text


async def test_two_sessions_in_parallel_keep_their_own_sequences_failures_and_rules(tmp_path: Path) -> None:
    path = tmp_path / "responses.yml"
    path.write_text("rules:\n  - {name: seq, match: {contains: next}, replies: [one, two, three, four]}\n")
    async with serving(make_store(path)) as live, httpx.AsyncClient(base_url=live.root) as admin:
        clients = {
            s: openai.AsyncOpenAI(
                base_url=live.openai_url, api_key="k", max_retries=0, default_headers={"x-mock-session": s}
            )
            for s in ("alpha", "beta")
        }
        failed = await admin.post("/_mock/fail-next", params={"session": "alpha"}, json={"count": 1, "status": 503})
        assert failed.json() == {"count": 1, "status": 503}
        added = await admin.post(
            "/_mock/rules", params={"session": "beta"}, json={"match": {"contains": "who"}, "reply": "beta's own"}
        )
        assert added.status_code == 201 and added.json()["rule"]["label"] == "session #1"
        await admin.patch("/_mock/settings", params={"session": "beta"}, json={"stream_chunk": "char"})

        async def ask(session: str, text: str) -> str:
            try:
                reply = await clients[session].chat.completions.create(
                    model="gpt-4o", messages=[{"role": "user", "content": text}]
                )
            except openai.InternalServerError as exc:
                return f"error {exc.status_code}"
            return reply.choices[0].message.content or ""

        async def run(session: str) -> list[str]:
            return [await ask(session, t) for t in ("next", "next", "next", "who")]

        alpha, beta = await asyncio.gather(run("alpha"), run("beta"))
        # The failed request was chosen a reply first (as without sessions): its step is used up.
        assert alpha == ["error 503", "two", "three", "I don't know the answer to that."]
        assert beta == ["one", "two", "three", "beta's own"]
        default = openai.AsyncOpenAI(base_url=live.openai_url, api_key="k", max_retries=0)
        reply = await default.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "next"}])
        assert reply.choices[0].message.content == "one"  # the default session never moved
        only_beta = (await admin.get("/_mock/journal", params={"session": "beta"})).json()["data"]
        assert [e["session"] for e in only_beta] == ["beta"] * 4
        assert [e["rule"] for e in only_beta] == ["seq", "seq", "seq", "session #1"]
        settings = (await admin.get("/_mock/settings", params={"session": "beta"})).json()
        assert settings["layers"]["session"] == {"stream_chunk": "char"}
        assert settings["effective"]["stream_chunk"] == "char"
        shared = (await admin.get("/_mock/settings")).json()
        assert shared["effective"]["stream_chunk"] != "char"
        listed = (await admin.get("/_mock/rules", params={"session": "beta"})).json()["data"]
        assert [(r["id"], r["hits"]) for r in listed] == [(1, 1)]
        assert (await admin.delete("/_mock/rules/1", params={"session": "beta"})).status_code == 200
        assert (await admin.get("/_mock/rules", params={"session": "beta"})).json()["data"] == []
        assert len((await admin.get("/_mock/rules")).json()["data"]) == 1  # the shared rules are untouched
        for client in (*clients.values(), default):
            await client.close()


def test_sessions_are_forgotten_least_recently_used_first(tmp_path: Path) -> None:
    store = make_store()
    store.configure(max_sessions=2)
    for name in ("a", "b", "a", "c"):
        store.session(name)
    assert store.sessions.peek("b") is None and store.sessions.peek("a") is not None


# -- strict mode through each SDK -----------------------------------------------------------------


def test_strict_mode_is_a_404_through_every_sdk(server: Live) -> None:
    server.store.configure(strict=True)  # a start-up value: read per request, set before any
    near = "; ask city (contains: 'book a room' is not in 'hello');"
    with pytest.raises(openai.NotFoundError) as o:
        openai.OpenAI(base_url=server.openai_url, api_key="k", max_retries=0).chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "hello"}], stream=True
        )
    body: Any = o.value.body
    assert o.value.code == "no_rule_matched" and body["message"].startswith("no rule matched this request; nearest: ")
    assert near in body["message"]
    with pytest.raises(anthropic.NotFoundError) as a:
        anthropic.Anthropic(base_url=server.anthropic_url, api_key="k", max_retries=0).messages.create(
            model="claude-sonnet-4-6", max_tokens=64, messages=[{"role": "user", "content": "hello"}]
        )
    assert a.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]
    assert a.value.body["error"]["message"].startswith("no rule matched") and near in str(a.value)  # type: ignore[index]
    http = httpx.Client()
    try:
        gemini = genai.Client(api_key="k", http_options={"base_url": server.root, "httpx_client": http})  # type: ignore[arg-type]
        with pytest.raises(genai_errors.ClientError) as g:
            gemini.models.generate_content(model="gemini-2.5-flash", contents="hello")
    finally:
        http.close()
    assert (g.value.code, g.value.status) == (404, "NOT_FOUND") and near in (g.value.message or "")
    with pytest.raises(ClientError) as b:
        bedrock(server).converse(
            modelId="anthropic.claude-sonnet-4-5-20250929-v1:0",
            messages=[{"role": "user", "content": [{"text": "hello"}]}],
        )
    assert b.value.response["Error"]["Code"] == "ResourceNotFoundException"
    assert b.value.response["Error"]["Message"].startswith("no rule matched")
    # The header lifts strict mode for one request; a rule still answers in strict mode.
    loose = openai.OpenAI(base_url=server.openai_url, api_key="k", default_headers={"x-mock-strict": "false"})
    assert loose.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hello"}]).choices
    entries = journal(server)
    assert [e["status"] for e in entries] == [404, 404, 404, 404, 200]
    assert entries[0]["near_misses"][0] == {"rule": "trip asked", "reason": "contains: 'trip' is not in 'hello'"}


def test_the_strict_header_turns_strict_mode_on_for_one_request(server: Live) -> None:
    client = openai.OpenAI(base_url=server.openai_url, api_key="k", max_retries=0)
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "x"}], extra_headers={"x-mock-strict": "true"}
        )
    assert client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}]).choices


def test_the_log_line_names_the_session_and_the_nearest_rule(server: Live) -> None:
    from mockllm_tui.core.request_log import format_json, format_text

    client = openai.OpenAI(base_url=server.openai_url, api_key="k", default_headers={"x-mock-session": "s1"})
    client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hello"}])
    entry = server.store.journal()[-1]
    line = format_text(entry)
    assert " session=s1 " in line
    assert line.endswith("nearest: trip asked (contains: 'trip' is not in 'hello')")
    assert json.loads(format_json(entry))["near_misses"][1]["rule"] == "ask city"


def test_parallel_threads_in_sessions_never_share_positions(server: Live) -> None:
    """Many sessions at once, each walking the scenario: every one sees its own four steps."""
    seen: dict[str, list[str]] = {}

    def walk(session: str) -> None:
        client = openai.OpenAI(
            base_url=server.openai_url, api_key="k", max_retries=0, default_headers={"x-mock-session": session}
        )
        out = []
        for text in ("book a room", "paris", "june", "yes"):
            reply = client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": text}])
            out.append(reply.choices[0].message.content or "")
        seen[session] = out
        client.close()

    threads = [threading.Thread(target=walk, args=(f"s{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert seen == {f"s{i}": ["Which city?", "Which dates?", "Shall I book it?", "Booked."] for i in range(4)}


def test_a_sessions_fail_next_covers_its_other_endpoints_too(server: Live) -> None:
    httpx.post(server.root + "/_mock/fail-next", params={"session": "emb"}, json={"count": 1, "status": 503})
    mine = openai.OpenAI(
        base_url=server.openai_url, api_key="k", max_retries=0, default_headers={"x-mock-session": "emb"}
    )
    other = openai.OpenAI(base_url=server.openai_url, api_key="k", max_retries=0)
    assert other.embeddings.create(model="text-embedding-3-small", input="hi").data  # not its failure
    with pytest.raises(openai.InternalServerError):
        mine.embeddings.create(model="text-embedding-3-small", input="hi")
    assert mine.embeddings.create(model="text-embedding-3-small", input="hi").data
    assert [(e["session"], e["status"]) for e in journal(server)] == [(None, 200), ("emb", 503), ("emb", 200)]
