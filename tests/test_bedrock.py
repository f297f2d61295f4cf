"""AWS Bedrock runtime against the real server, with boto3's `bedrock-runtime` client as the SDK.

Strictness: botocore parses every response and every eventstream message itself (CRCs included);
the raw bodies and each event's payload are also checked against the service model's output shapes
with a strict validator (every member known, required members present, unions with one member,
types exact), and Anthropic bodies inside InvokeModel against the anthropic SDK's types.
"""

from __future__ import annotations

import base64
import json
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import botocore.session
import httpx
import jsonschema
import orjson
import pytest
from anthropic.types import Message as AnthropicMessage
from anthropic.types import RawMessageStreamEvent
from botocore.config import Config
from botocore.eventstream import ChecksumMismatch, EventStreamBuffer
from botocore.exceptions import ClientError, EventStreamError
from botocore.model import Shape
from pydantic import TypeAdapter

from mockllm_tui.core.store import Store
from mockllm_tui.http.app import MockApp, create_app
from mockllm_tui.providers.bedrock import (
    ConverseReader,
    event,
    eventstream_message,
    exception_event,
    read_eventstream_message,
)
from tests.conftest import Live, ServerThread, make_store
from tests.test_anthropic import WEATHER_SCHEMA

MODEL = "anthropic.claude-haiku-4-5-20251001-v1:0"
PROFILE_ARN = "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-sonnet-4-5-20250929-v1:0"
SERVICE = botocore.session.get_session().get_service_model("bedrock-runtime")
ANTHROPIC_EVENTS: TypeAdapter[Any] = TypeAdapter(RawMessageStreamEvent)
TOOL_CONFIG = {
    "tools": [{"toolSpec": {"name": "get_weather", "description": "Weather", "inputSchema": {"json": WEATHER_SCHEMA}}}]
}
RULES = """\
rules:
  - name: weather-result
    match: {tool_result: get_weather}
    reply: "It is sunny in Paris."
  - name: weather-call
    match: {contains: "weather"}
    tool_calls: [{name: get_weather, arguments: {city: Paris, unit: celsius, days: 2}}]
  - name: bedrock-only
    match: {exact: "who are you", provider: bedrock}
    reply: "I am Bedrock."
  - name: not-bedrock
    match: {exact: "who are you"}
    reply: "I am someone else."
  - name: refused
    match: {exact: "forbidden"}
    error: {status: 403, message: "You don't have access to the model with the specified model ID."}
  - name: bad
    match: {exact: "bad"}
    error: {status: 400, message: "The model returned the following errors: nope"}
  - name: not-ready
    match: {exact: "warming up"}
    error: {status: 429, message: "Model is not ready", type: ModelNotReadyException}
responses:
  "default": "Hello from the Bedrock mock, in several words."
"""


# -- a strict validator over botocore's service model ------------------------------------------


def validate(shape: Shape, value: Any, where: str = "$") -> None:
    """Check a JSON value (as it went over the wire) against a botocore shape, strictly."""
    kind = shape.type_name
    if kind == "structure":
        if shape.metadata.get("document"):
            return
        assert isinstance(value, dict), f"{where}: expected an object, got {value!r}"
        members = {k: m for k, m in shape.members.items() if "location" not in m.serialization}
        unknown = set(value) - set(members)
        assert not unknown, f"{where}: members unknown to {shape.name}: {sorted(unknown)}"
        if shape.metadata.get("union"):
            assert len(value) == 1, f"{where}: a {shape.name} union must set one member, got {sorted(value)}"
        missing = [name for name in shape.required_members if name in members and name not in value]
        assert not missing, f"{where}: {shape.name} is missing {missing}"
        for name, item in value.items():
            validate(members[name], item, f"{where}.{name}")
    elif kind == "list":
        assert isinstance(value, list), f"{where}: expected a list"
        for i, item in enumerate(value):
            validate(shape.member, item, f"{where}[{i}]")
    elif kind == "map":
        assert isinstance(value, dict), f"{where}: expected a map"
        for key, item in value.items():
            validate(shape.value, item, f"{where}.{key}")
    elif kind == "string":
        assert isinstance(value, str), f"{where}: expected a string, got {value!r}"
        if shape.enum:
            assert value in shape.enum, f"{where}: {value!r} is not one of {shape.enum}"
    elif kind in ("integer", "long"):
        assert isinstance(value, int) and not isinstance(value, bool), f"{where}: expected an integer, got {value!r}"
    elif kind in ("float", "double"):
        assert isinstance(value, int | float) and not isinstance(value, bool), f"{where}: expected a number"
    elif kind == "boolean":
        assert isinstance(value, bool), f"{where}: expected a boolean"
    elif kind == "blob":
        assert isinstance(value, str), f"{where}: expected base64 text"
        base64.b64decode(value, validate=True)
    else:  # pragma: no cover - timestamps do not occur in these outputs
        raise AssertionError(f"{where}: unexpected shape type {kind}")


def output_shape(operation: str) -> Shape:
    shape = SERVICE.operation_model(operation).output_shape
    assert shape is not None
    return shape


def stream_shape(operation: str) -> Shape:
    """The eventstream member of an operation's output."""
    shape = output_shape(operation)
    return shape.members[shape.serialization["payload"]]


def eventstream_events(raw: bytes, operation: str) -> list[tuple[str, str, dict[str, Any]]]:
    """Parse raw eventstream bytes with botocore (CRCs checked) and validate each payload against the
    stream's member shape: (message type, event or exception type, payload)."""
    buffer = EventStreamBuffer()
    buffer.add_data(raw)
    shape = stream_shape(operation)
    out = []
    for message in buffer:
        headers = message.headers
        kind = headers[":message-type"]
        name = headers[":event-type"] if kind == "event" else headers[":exception-type"]
        assert headers[":content-type"] == "application/json"
        assert name in shape.members, f"{name} is not a member of {shape.name}"
        payload = orjson.loads(message.payload)
        validate(shape.members[name], payload, name)
        out.append((kind, name, payload))
    return out


# -- clients and servers -------------------------------------------------------------------------


def bedrock(live: Live, *, attempts: int = 1, headers: dict[str, str] | None = None) -> Any:
    """boto3's bedrock-runtime client pointed at the server (standard retries, `attempts` in all)."""
    client = boto3.client(
        "bedrock-runtime",
        endpoint_url=live.root,
        region_name="us-east-1",
        aws_access_key_id="x",
        aws_secret_access_key="y",
        config=Config(retries={"mode": "standard", "total_max_attempts": attempts}, read_timeout=10),
    )
    if headers:

        def add_headers(request: Any, **_: Any) -> None:
            for name, value in headers.items():
                request.headers[name] = value

        client.meta.events.register("before-sign.bedrock-runtime.*", add_headers)
    return client


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": [{"text": text}]}]


def anthropic_body(text: str = "hi", **extra: Any) -> str:
    return json.dumps(
        {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 200, "messages": [{"role": "user", "content": text}]}
        | extra
    )


def raw_post(live: Live, path: str, body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    hdrs = {"content-type": "application/json", "authorization": "AWS4-HMAC-SHA256 Credential=x/...", **(headers or {})}
    return httpx.post(live.root + path, content=content, headers=hdrs, timeout=10)


def model_path(model: str, operation: str) -> str:
    return f"/model/{model}/{operation}"


@pytest.fixture
def thread(tmp_path: Path) -> Iterator[ServerThread]:
    """The real server in a thread with this module's rules (`thread.call` changes its store)."""
    path = tmp_path / "responses.yml"
    path.write_text(RULES)
    running = ServerThread(make_store(path))
    with running:
        yield running


@pytest.fixture
def server(thread: ServerThread) -> Live:
    """The threaded server's store, app and URLs."""
    return Live(thread.store, thread.app, thread.handle)


def journal(live: Live) -> list[Any]:
    """The journal once every request in it has ended (the server thread records an end just after
    the last byte, so the client may read it first)."""
    deadline = time.perf_counter() + 5.0
    while any(e.open for e in live.store.journal()) and time.perf_counter() < deadline:
        time.sleep(0.005)
    return list(live.store.journal())


# -- Converse ------------------------------------------------------------------------------------


def test_converse_plain_text_is_a_strict_converse_response(server: Live) -> None:
    response = bedrock(server).converse(
        modelId=MODEL,
        messages=user("hello there"),
        system=[{"text": "Be brief."}],
        inferenceConfig={"maxTokens": 100, "temperature": 0.2},
    )
    assert response["output"]["message"] == {
        "role": "assistant",
        "content": [{"text": "Hello from the Bedrock mock, in several words."}],
    }
    assert response["stopReason"] == "end_turn"
    usage = response["usage"]
    assert usage["totalTokens"] == usage["inputTokens"] + usage["outputTokens"] > 0
    assert response["ResponseMetadata"]["RequestId"] == response["ResponseMetadata"]["HTTPHeaders"]["x-amzn-requestid"]
    raw = raw_post(server, model_path(MODEL, "converse"), {"messages": user("hello")})
    assert raw.status_code == 200 and raw.headers["content-type"] == "application/json"
    validate(output_shape("Converse"), raw.json())
    [entry] = [e for e in journal(server) if e.path.endswith("/converse") and e.preview == "hello there"]
    assert entry.provider == "bedrock" and entry.model == MODEL
    assert entry.transcript() == [("system", "Be brief."), ("user", "hello there")]


def test_model_ids_with_colons_and_slashes_are_decoded_in_the_journal(server: Live) -> None:
    bedrock(server).converse(modelId=PROFILE_ARN, messages=user("who are you"))
    entry = journal(server)[-1]
    assert entry.model == PROFILE_ARN
    assert entry.path == f"/model/{PROFILE_ARN}/converse"
    assert entry.rule == "bedrock-only"  # the `provider: bedrock` matcher


def test_converse_stream_event_order_and_frames(server: Live) -> None:
    stream = bedrock(server).converse_stream(modelId=MODEL, messages=user("hello"))
    assert stream["ResponseMetadata"]["HTTPHeaders"]["content-type"] == "application/vnd.amazon.eventstream"
    events = [next(iter(e.items())) for e in stream["stream"]]
    names = [name for name, _ in events]
    assert names[0] == "messageStart" and events[0][1] == {"role": "assistant"}
    assert "contentBlockStart" not in names  # text streams have none
    assert names[-3:] == ["contentBlockStop", "messageStop", "metadata"]
    text = "".join(body["delta"]["text"] for name, body in events if name == "contentBlockDelta")
    assert text == "Hello from the Bedrock mock, in several words."
    assert names.count("contentBlockDelta") > 1
    assert events[-2][1] == {"stopReason": "end_turn"}
    assert events[-1][1]["usage"]["outputTokens"] > 0 and events[-1][1]["metrics"]["latencyMs"] >= 0
    raw = raw_post(server, model_path(MODEL, "converse-stream"), {"messages": user("hello")})
    parsed = eventstream_events(raw.content, "ConverseStream")
    assert [name for _, name, _ in parsed] == names
    assert all(kind == "event" for kind, _, _ in parsed)
    entry = journal(server)[-1]
    assert entry.stream and "".join(entry.chunks) == text  # what the panel shows live


def test_a_rules_tool_call_comes_back_as_tool_use(server: Live) -> None:
    client = bedrock(server)
    response = client.converse(modelId=MODEL, messages=user("what is the weather?"), toolConfig=TOOL_CONFIG)
    assert response["stopReason"] == "tool_use"
    [block] = response["output"]["message"]["content"]
    use = block["toolUse"]
    assert use["name"] == "get_weather" and use["input"] == {"city": "Paris", "unit": "celsius", "days": 2}
    assert use["toolUseId"].startswith("tooluse_")
    raw = raw_post(server, model_path(MODEL, "converse"), {"messages": user("weather"), "toolConfig": TOOL_CONFIG})
    validate(output_shape("Converse"), raw.json())

    events = [
        next(iter(e.items()))
        for e in client.converse_stream(modelId=MODEL, messages=user("weather please"), toolConfig=TOOL_CONFIG)[
            "stream"
        ]
    ]
    names = [name for name, _ in events]
    assert names[:2] == ["messageStart", "contentBlockStart"]
    start = events[1][1]
    assert start["start"]["toolUse"]["name"] == "get_weather" and start["contentBlockIndex"] == 0
    fragments = "".join(b["delta"]["toolUse"]["input"] for n, b in events if n == "contentBlockDelta")
    assert json.loads(fragments) == {"city": "Paris", "unit": "celsius", "days": 2}
    assert events[-2][1] == {"stopReason": "tool_use"}
    raw = raw_post(
        server, model_path(MODEL, "converse-stream"), {"messages": user("weather"), "toolConfig": TOOL_CONFIG}
    )
    eventstream_events(raw.content, "ConverseStream")


def test_a_forced_tool_gets_schema_valid_input(server: Live) -> None:
    config = {**TOOL_CONFIG, "toolChoice": {"tool": {"name": "get_weather"}}}
    response = bedrock(server).converse(modelId=MODEL, messages=user("hello"), toolConfig=config)
    [block] = response["output"]["message"]["content"]
    jsonschema.validate(block["toolUse"]["input"], WEATHER_SCHEMA)
    any_tool = bedrock(server).converse(
        modelId=MODEL, messages=user("hello"), toolConfig={**TOOL_CONFIG, "toolChoice": {"any": {}}}
    )
    assert any_tool["stopReason"] == "tool_use"


def test_a_tool_result_turn_is_matched_by_a_tool_result_rule(server: Live) -> None:
    messages = [
        *user("what is the weather?"),
        {"role": "assistant", "content": [{"toolUse": {"toolUseId": "tooluse_1", "name": "get_weather", "input": {}}}]},
        {"role": "user", "content": [{"toolResult": {"toolUseId": "tooluse_1", "content": [{"text": "21C"}]}}]},
    ]
    response = bedrock(server).converse(modelId=MODEL, messages=messages, toolConfig=TOOL_CONFIG)
    assert response["output"]["message"]["content"] == [{"text": "It is sunny in Paris."}]
    entry = journal(server)[-1]
    assert entry.rule == "weather-result"
    tool = entry.conversation.last_tool_result()
    assert tool is not None and tool.name == "get_weather" and tool.tool_call_id == "tooluse_1"


def test_json_output_is_valid_against_the_schema(server: Live) -> None:
    output = {
        "textFormat": {"type": "json_schema", "structure": {"jsonSchema": {"schema": json.dumps(WEATHER_SCHEMA)}}}
    }
    response = bedrock(server).converse(modelId=MODEL, messages=user("hello"), outputConfig=output)
    jsonschema.validate(json.loads(response["output"]["message"]["content"][0]["text"]), WEATHER_SCHEMA)


def test_count_tokens_for_converse_and_invoke_inputs(server: Live) -> None:
    client = bedrock(server)
    messages = user("hello there, how many tokens?")
    counted = client.count_tokens(modelId=MODEL, input={"converse": {"messages": messages}})["inputTokens"]
    assert counted == client.converse(modelId=MODEL, messages=messages)["usage"]["inputTokens"]
    by_body = client.count_tokens(
        modelId=MODEL, input={"invokeModel": {"body": anthropic_body("hello there, how many tokens?").encode()}}
    )
    assert by_body["inputTokens"] > 0
    raw = raw_post(server, model_path(MODEL, "count-tokens"), {"input": {"converse": {"messages": messages}}})
    validate(output_shape("CountTokens"), raw.json())


# -- InvokeModel with Anthropic bodies -----------------------------------------------------------


def test_invoke_model_with_an_anthropic_body(server: Live) -> None:
    response = bedrock(server).invoke_model(modelId=MODEL, body=anthropic_body("hello"))
    assert response["contentType"] == "application/json"
    message = AnthropicMessage.model_validate_json(response["body"].read(), strict=True)
    assert message.content[0].type == "text" and message.content[0].text.startswith("Hello from the Bedrock")
    assert message.id.startswith("msg_bdrk_") and message.stop_reason == "end_turn"
    tools = [{"name": "get_weather", "input_schema": WEATHER_SCHEMA}]
    called = bedrock(server).invoke_model(modelId=MODEL, body=anthropic_body("weather?", tools=tools))
    tool = AnthropicMessage.model_validate_json(called["body"].read(), strict=True)
    assert tool.stop_reason == "tool_use" and tool.content[0].type == "tool_use"


def test_invoke_model_refuses_keys_bedrock_does_not_permit(server: Live) -> None:
    client = bedrock(server)
    for extra in ({"x": 1}, {"model": MODEL}, {"stream": True}, {"metadata": {"user_id": "u"}}):
        with pytest.raises(client.exceptions.ValidationException) as refused:
            client.invoke_model(modelId=MODEL, body=anthropic_body("hello", **extra))
        assert error_of(refused.value) == ("ValidationException", 400)
        [key] = extra
        assert refused.value.response["Error"]["Message"] == (
            f"Malformed input request: #: extraneous key [{key}] is not permitted, please reformat your input and try "
            "again."
        )
        with pytest.raises(client.exceptions.ValidationException):
            client.invoke_model_with_response_stream(modelId=MODEL, body=anthropic_body("hello", **extra))
    allowed = {"system": "Be brief.", "temperature": 0.5, "top_p": 0.9, "top_k": 5, "stop_sequences": ["zzz"]}
    response = client.invoke_model(modelId=MODEL, body=anthropic_body("hello", anthropic_beta=[], **allowed))
    AnthropicMessage.model_validate_json(response["body"].read(), strict=True)


def test_invoke_model_arrives_without_a_content_type(server: Live) -> None:
    response = bedrock(server).invoke_model(modelId=MODEL, body=anthropic_body())
    assert "content-type" not in journal(server)[-1].request_headers  # boto3 sends none without contentType
    AnthropicMessage.model_validate_json(response["body"].read(), strict=True)
    refused = httpx.post(
        server.root + model_path(MODEL, "invoke"),
        content=anthropic_body(),
        headers={"authorization": "x", "content-type": "text/plain"},
        timeout=10,
    )
    assert refused.status_code == 400 and refused.headers["x-amzn-errortype"].startswith("ValidationException:")


def test_invoke_with_response_stream_wraps_anthropic_events_in_chunks(server: Live) -> None:
    response = bedrock(server).invoke_model_with_response_stream(modelId=MODEL, body=anthropic_body("hello"))
    assert response["contentType"] == "application/json"
    events = [ANTHROPIC_EVENTS.validate_json(e["chunk"]["bytes"], strict=True) for e in response["body"]]
    assert [e.type for e in events][:2] == ["message_start", "content_block_start"]
    assert events[-1].type == "message_stop" and "ping" not in [e.type for e in events]
    text = "".join(e.delta.text for e in events if e.type == "content_block_delta")
    assert text == "Hello from the Bedrock mock, in several words."
    raw = raw_post(server, model_path(MODEL, "invoke-with-response-stream"), anthropic_body("hello").encode())
    assert raw.headers["x-amzn-bedrock-content-type"] == "application/json"
    parsed = eventstream_events(raw.content, "InvokeModelWithResponseStream")
    assert {name for _, name, _ in parsed} == {"chunk"}
    last = orjson.loads(base64.b64decode(parsed[-1][2]["bytes"]))
    metrics = last["amazon-bedrock-invocationMetrics"]
    assert metrics["outputTokenCount"] > 0 and metrics["inputTokenCount"] > 0


# -- errors --------------------------------------------------------------------------------------


def error_of(exc: ClientError) -> tuple[str, int]:
    return exc.response["Error"]["Code"], exc.response["ResponseMetadata"]["HTTPStatusCode"]


def test_a_rules_error_raises_boto3s_own_exception(server: Live) -> None:
    client = bedrock(server)
    with pytest.raises(client.exceptions.AccessDeniedException) as denied:
        client.converse(modelId=MODEL, messages=user("forbidden"))
    assert error_of(denied.value) == ("AccessDeniedException", 403)
    assert "specified model ID" in denied.value.response["Error"]["Message"]
    with pytest.raises(client.exceptions.ValidationException):
        client.invoke_model(modelId=MODEL, body=anthropic_body("bad"))
    with pytest.raises(client.exceptions.ModelNotReadyException):  # a rule's `type` naming the exception
        client.converse(modelId=MODEL, messages=user("warming up"))


def test_an_injected_429_is_a_throttling_exception_that_boto3_retries(server: Live, thread: ServerThread) -> None:
    thread.call(server.store.set_fail_next, 1, 429)
    response = bedrock(server, attempts=2).converse(modelId=MODEL, messages=user("hello"))
    assert response["ResponseMetadata"]["RetryAttempts"] == 1
    first, second = journal(server)[-2:]
    assert (first.status, second.status) == (429, 200) and first.fault == "429 before (fail_next)"

    client = bedrock(server, attempts=3, headers={"x-mock-error": "429"})
    with pytest.raises(client.exceptions.ThrottlingException) as throttled:
        client.converse(modelId=MODEL, messages=user("hello"))
    assert error_of(throttled.value) == ("ThrottlingException", 429)
    assert throttled.value.response["ResponseMetadata"]["RetryAttempts"] == 2


@pytest.mark.parametrize("status", [529, 503])
def test_an_injected_overload_is_a_503_service_unavailable_that_boto3_retries(server: Live, status: int) -> None:
    client = bedrock(server, attempts=2, headers={"x-mock-error": str(status)})
    before = len(journal(server))
    with pytest.raises(client.exceptions.ServiceUnavailableException) as unavailable:
        client.converse(modelId=MODEL, messages=user("hello"))
    assert error_of(unavailable.value) == ("ServiceUnavailableException", 503)
    assert len(journal(server)) - before == 2


def test_timeouts_and_server_errors_have_their_own_exceptions(server: Live) -> None:
    timeout = bedrock(server, attempts=2, headers={"x-mock-error": "408"})
    before = len(journal(server))
    with pytest.raises(timeout.exceptions.ModelTimeoutException):
        timeout.converse(modelId=MODEL, messages=user("hello"))
    assert len(journal(server)) - before == 1  # not retried, as botocore decides
    internal = bedrock(server, headers={"x-mock-error": "500"})
    with pytest.raises(internal.exceptions.InternalServerException):
        internal.invoke_model(modelId=MODEL, body=anthropic_body())


def test_a_raw_error_has_the_error_type_header_and_a_message_body(server: Live) -> None:
    response = raw_post(server, model_path(MODEL, "converse"), b"{not json")
    assert response.status_code == 400
    assert response.headers["x-amzn-errortype"].split(":")[0] == "ValidationException"
    assert set(response.json()) == {"message"} and response.json()["message"]
    validate(SERVICE.shape_for("ValidationException"), response.json())
    assert response.headers["x-amzn-requestid"]


def test_mid_stream_errors_are_eventstream_exceptions(server: Live) -> None:
    headers = {"x-mock-error": "529", "x-mock-error-mode": "mid_stream"}
    client = bedrock(server, headers=headers)
    seen = []
    with pytest.raises(EventStreamError) as failed:
        for item in client.converse_stream(modelId=MODEL, messages=user("hello"))["stream"]:
            seen.append(next(iter(item)))
    assert failed.value.response["Error"]["Code"] == "serviceUnavailableException"
    assert seen[0] == "messageStart" and "contentBlockDelta" in seen and "messageStop" not in seen
    raw = raw_post(server, model_path(MODEL, "converse-stream"), {"messages": user("hello")}, headers)
    parsed = eventstream_events(raw.content, "ConverseStream")
    kind, name, payload = parsed[-1]
    assert (kind, name) == ("exception", "serviceUnavailableException") and "Injected error 529" in payload["message"]

    timeout = bedrock(server, headers={"x-mock-error": "408", "x-mock-error-mode": "mid_stream"})
    with pytest.raises(EventStreamError) as timed_out:
        for _ in timeout.invoke_model_with_response_stream(modelId=MODEL, body=anthropic_body())["body"]:
            pass
    assert timed_out.value.response["Error"]["Code"] == "modelTimeoutException"


def test_bad_input_is_a_400_validation_exception(server: Live) -> None:
    client = bedrock(server)
    bad_calls: list[Callable[[], Any]] = [
        lambda: client.converse(modelId=MODEL, messages=[{"role": "assistant", "content": [{"text": "hi"}]}]),
        lambda: client.converse(modelId=MODEL, messages=[]),
        lambda: client.converse(
            modelId=MODEL, messages=user("x"), toolConfig={**TOOL_CONFIG, "toolChoice": {"tool": {"name": "nope"}}}
        ),
        lambda: client.invoke_model(modelId=MODEL, body=json.dumps({"messages": []})),
        lambda: client.invoke_model(modelId=MODEL, body=anthropic_body(model="claude")),
        lambda: client.invoke_model(modelId=MODEL, body=b"not json"),
        lambda: client.count_tokens(modelId=MODEL, input={"invokeModel": {"body": b"[1]"}}),
    ]
    for call in bad_calls:
        with pytest.raises(client.exceptions.ValidationException) as invalid:
            call()
        assert error_of(invalid.value) == ("ValidationException", 400)
    for body in (
        {"messages": [{"role": "user", "content": [{"text": "a", "image": {}}]}]},
        {"messages": [{"role": "user", "content": [{"bogus": 1}]}]},
        {"messages": user("x"), "inferenceConfig": {"maxTokens": "many"}},
        {"messages": user("x"), "toolConfig": {"tools": []}},
        {
            "messages": user("x"),
            "outputConfig": {"textFormat": {"type": "json_schema", "structure": {"jsonSchema": {"schema": "{"}}}},
        },
    ):
        response = raw_post(server, model_path(MODEL, "converse"), body)
        assert response.status_code == 400, body
        assert response.headers["x-amzn-errortype"].startswith("ValidationException:")


def test_unknown_bedrock_paths_and_methods_answer_in_bedrocks_shape(server: Live) -> None:
    response = raw_post(server, model_path(MODEL, "converse-sideways"), {})
    assert response.status_code == 404
    assert response.headers["x-amzn-errortype"].startswith("ResourceNotFoundException:")
    wrong_method = httpx.get(server.root + model_path(MODEL, "converse"), timeout=10)
    assert wrong_method.status_code == 405 and set(wrong_method.json()) == {"message"}


def test_api_key_needs_an_authorization_header_and_takes_any_signature(server: Live, thread: ServerThread) -> None:
    thread.call(server.store.set_knobs, "live", {"api_key": "secret"})
    assert bedrock(server).converse(modelId=MODEL, messages=user("hello"))["stopReason"] == "end_turn"
    unsigned = httpx.post(server.root + model_path(MODEL, "converse"), json={"messages": user("hello")}, timeout=10)
    assert unsigned.status_code == 403
    assert unsigned.headers["x-amzn-errortype"].startswith("MissingAuthenticationTokenException:")
    assert unsigned.json() == {"message": "Missing Authentication Token"}
    assert journal(server)[-1].request_headers.get("authorization") is None
    bedrock(server).converse(modelId=MODEL, messages=user("hello"))
    assert journal(server)[-1].request_headers["authorization"] != "x"  # redacted


def test_rate_limits_answer_with_throttling(server: Live, thread: ServerThread) -> None:
    thread.call(server.store.set_knobs, "live", {"rate_limit_rpm": 1})
    client = bedrock(server)
    client.converse(modelId=MODEL, messages=user("hello"))
    with pytest.raises(client.exceptions.ThrottlingException) as throttled:
        client.converse(modelId=MODEL, messages=user("hello"))
    assert "Rate limit reached" in throttled.value.response["Error"]["Message"]


def test_streams_are_paced_by_the_live_speed(server: Live, thread: ServerThread) -> None:
    thread.call(server.store.set_knobs, "live", {"stream_speed": 40})
    started = time.perf_counter()
    events = list(bedrock(server).converse_stream(modelId=MODEL, messages=user("hello"))["stream"])
    elapsed = time.perf_counter() - started
    usage = events[-1]["metadata"]["usage"]
    assert elapsed >= 0.6 * usage["outputTokens"] / 40


# -- the framing and the dispatcher, as pure functions -------------------------------------------


def test_eventstream_messages_decode_with_botocore_and_their_crcs_are_checked() -> None:
    raw = eventstream_message([(":event-type", "chunk"), (":message-type", "event")], b'{"bytes":"e30="}')
    total, headers_length = int.from_bytes(raw[:4], "big"), int.from_bytes(raw[4:8], "big")
    assert total == len(raw) and int.from_bytes(raw[8:12], "big") == zlib.crc32(raw[:8])
    assert int.from_bytes(raw[-4:], "big") == zlib.crc32(raw[:-4])
    buffer = EventStreamBuffer()
    buffer.add_data(raw)
    [message] = list(buffer)
    assert message.headers == {":event-type": "chunk", ":message-type": "event"}
    assert message.payload == b'{"bytes":"e30="}' and headers_length == len(raw) - 16 - len(message.payload)
    broken = EventStreamBuffer()
    broken.add_data(raw[:-5] + bytes([raw[-5] ^ 1]) + raw[-4:])
    with pytest.raises(ChecksumMismatch):
        list(broken)
    exception = EventStreamBuffer()
    exception.add_data(exception_event(504, "late", frozenset({"throttlingException"})))
    [failed] = list(exception)
    assert failed.headers[":exception-type"] == "modelStreamErrorException"
    assert orjson.loads(failed.payload) == {"message": "late", "originalStatusCode": 504, "originalMessage": "late"}


def test_a_converse_stream_is_read_back_into_its_reply_whatever_its_chunk_boundaries() -> None:
    start = {"contentBlockIndex": 1, "start": {"toolUse": {"toolUseId": "tooluse_1", "name": "get_weather"}}}
    messages = [
        event("messageStart", {"role": "assistant"}),
        event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "Let me "}}),
        event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "look."}}),
        event("contentBlockStop", {"contentBlockIndex": 0}),
        event("contentBlockStart", start),
        event("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"toolUse": {"input": '{"city":'}}}),
        event("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"toolUse": {"input": '"Paris"}'}}}),
        event("contentBlockStop", {"contentBlockIndex": 1}),
        event("messageStop", {"stopReason": "tool_use"}),
        event("metadata", {"usage": {"inputTokens": 3, "outputTokens": 9, "totalTokens": 12}, "metrics": {}}),
    ]
    raw = b"".join(messages)
    for size in (1, 5, 64, len(raw)):
        reader = ConverseReader(stream=True)
        pieces = [p for at in range(0, len(raw), size) for p in reader.pieces(raw[at : at + size])]
        said = "".join(reader.feed(p) for p in pieces)
        if size == len(raw):
            assert pieces == messages
        assert said == 'Let me look.{"city":"Paris"}' and reader.done
        reply = reader.reply()
        assert reply is not None and reply.text == "Let me look." and reply.finish_reason == "tool_calls"
        assert [(c.name, c.arguments) for c in reply.tool_calls] == [("get_weather", {"city": "Paris"})]
    unfinished = ConverseReader(stream=True)
    unfinished.feed(raw[: len(raw) - len(messages[-1]) - len(messages[-2])])
    assert unfinished.reply() is None
    failed = ConverseReader(stream=True)
    with pytest.raises(ValueError, match="throttlingException"):
        failed.feed(messages[0] + exception_event(429, "slow down", frozenset({"throttlingException"})))
    with pytest.raises(ValueError, match="CRC"):
        ConverseReader(stream=True).feed(raw[:-1] + bytes([raw[-1] ^ 1]))
    whole = ConverseReader(stream=False)
    whole.feed(orjson.dumps({"output": {"message": {"role": "assistant", "content": [{"text": "Hi"}]}}}))
    assert (answer := whole.reply()) is not None and answer.text == "Hi" and answer.finish_reason == "stop"


def test_eventstream_headers_of_every_type_are_read_and_only_strings_kept() -> None:
    raw = eventstream_message([(":event-type", "messageStop"), (":message-type", "event")], b"{}")
    extra = b"\x05count\x04" + (7).to_bytes(4, "big") + b"\x02ok\x00" + b"\x03uid\x09" + bytes(16)
    headers_length = int.from_bytes(raw[4:8], "big") + len(extra)
    body = raw[12:-4][: headers_length - len(extra)] + extra + b"{}"
    prelude = (16 + len(body)).to_bytes(4, "big") + headers_length.to_bytes(4, "big")
    message = prelude + zlib.crc32(prelude).to_bytes(4, "big") + body
    message += zlib.crc32(message).to_bytes(4, "big")
    buffer = EventStreamBuffer()
    buffer.add_data(message)
    [parsed] = list(buffer)
    assert parsed.headers == {
        ":event-type": "messageStop",
        ":message-type": "event",
        "count": 7,
        "ok": True,
        "uid": bytes(16),
    }
    assert read_eventstream_message(message) == ({":event-type": "messageStop", ":message-type": "event"}, b"{}")


def test_mid_path_id_routes_match_exactly_their_prefix_and_suffix() -> None:
    app: MockApp = create_app(Store())
    converse = app.endpoint_for("POST", "/model/m/converse")
    assert converse is not None and converse.provider.name == "bedrock"
    assert app.endpoint_for("POST", "/model/a/b:c/converse") is converse  # decoded ids keep their slashes
    assert converse.path_params("/model/a/b:c/converse") == {"id": "a/b:c"}
    stream = app.endpoint_for("POST", "/model/m/converse-stream")
    assert stream is not None and stream is not converse
    for path in ("/model//converse", "/model/converse", "/model/m/converse/extra", "/models/m/converse"):
        assert app.endpoint_for("POST", path) is None, path
    assert app.endpoint_for("GET", "/model/m/converse") is None
    assert app.endpoint_for("POST", "/v1/chat/completions") is not None  # exact routes first, unchanged
    assert "/model/{id:path}/converse" in {route.path for route in app.routes()}


# -- the control plane's model list, and the anthropic SDK's own Bedrock client --------------------


def test_the_bedrock_client_lists_the_registrys_bedrock_models(server: Live) -> None:
    control = boto3.client(
        "bedrock", endpoint_url=server.root, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="y"
    )
    summaries = control.list_foundation_models()["modelSummaries"]
    ids = {s["modelId"] for s in summaries}
    assert {MODEL, "amazon.nova-pro-v1:0"} <= ids and not any(i.startswith("us.") for i in ids)
    only = control.list_foundation_models(byProvider="anthropic")["modelSummaries"]
    assert only and all(s["providerName"] == "Anthropic" for s in only)
    details = control.get_foundation_model(modelIdentifier=MODEL)["modelDetails"]
    assert details["modelId"] == MODEL and details["modelArn"].endswith("foundation-model/" + MODEL)
    with pytest.raises(control.exceptions.ValidationException):
        control.get_foundation_model(modelIdentifier="nope.nothing-v1:0")
    plane = botocore.session.get_session().get_service_model("bedrock")
    for operation, path in (
        ("ListFoundationModels", "/foundation-models"),
        ("GetFoundationModel", f"/foundation-models/{MODEL}"),
    ):
        raw = httpx.get(server.root + path, timeout=10)
        shape = plane.operation_model(operation).output_shape
        assert shape is not None
        validate(shape, raw.json())


def test_the_anthropic_sdks_bedrock_client_reads_invoke_and_its_stream(server: Live) -> None:
    from anthropic import AnthropicBedrock

    client = AnthropicBedrock(
        base_url=server.root, aws_access_key="x", aws_secret_key="y", aws_region="us-east-1", max_retries=0
    )
    message = client.messages.create(model=MODEL, max_tokens=64, messages=[{"role": "user", "content": "hello"}])
    assert message.content[0].type == "text" and message.content[0].text.startswith("Hello from the Bedrock")
    with client.messages.stream(model=MODEL, max_tokens=64, messages=[{"role": "user", "content": "hello"}]) as stream:
        text = "".join(stream.text_stream)
    assert text == "Hello from the Bedrock mock, in several words."
    assert journal(server)[-1].path == f"/model/{MODEL}/invoke-with-response-stream"


def test_strict_models_know_bedrock_ids_and_inference_profiles(server: Live, thread: ServerThread) -> None:
    from mockllm_tui.core.models import ModelRegistry

    thread.call(server.store.set_models, ModelRegistry(strict=True))
    client = bedrock(server)
    for model in (MODEL, "us.anthropic.claude-sonnet-4-5-20250929-v1:0", "amazon.nova-pro-v1:0"):
        assert client.converse(modelId=model, messages=user("hello"))["stopReason"] == "end_turn"
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.converse(modelId="anthropic.claude-nonexistent-v1:0", messages=user("hello"))
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.count_tokens(modelId="nope.nothing", input={"converse": {"messages": user("hello")}})


def test_max_tokens_and_stop_sequences_set_the_stop_reason(server: Live) -> None:
    client = bedrock(server)
    cut = client.converse(modelId=MODEL, messages=user("hello"), inferenceConfig={"maxTokens": 2})
    assert cut["stopReason"] == "max_tokens" and cut["usage"]["outputTokens"] <= 2
    stopped = client.converse(modelId=MODEL, messages=user("hello"), inferenceConfig={"stopSequences": ["mock"]})
    assert stopped["stopReason"] == "stop_sequence"
    assert stopped["output"]["message"]["content"] == [{"text": "Hello from the Bedrock "}]
