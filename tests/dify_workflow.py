"""A Dify workflow end to end, with no LLM: Start (inputs) -> a Python Code node, executed by
Dify's real sandbox -> End. Created and published as the administrator through the console API
(tests/dify_console.py `workflow`, on the Dify host), then run as an app's user through the edge
over HTTPS (`POST /v1/workflows/run` with the app's API key), from a client container on the lab
network with the edge's CA (tests/edge_kit.py), in streaming and blocking mode.

The Code node's `action` input picks what it does:
    ""       transform the text with the standard library (json, hashlib): EXPECTED(text)
    "sleep"  sleep `seconds` first (a node that runs longer than an edge's default timeouts)
    "reach"  fetch `target` (urllib; the sandbox's way out is the SSRF proxy, HTTP_PROXY)
"""
from __future__ import annotations

import hashlib
import json

from tests import edge_kit
from tests.helpers import dify_console

APP_NAME = "selfhost-code-workflow"
RUN_PATH = "/v1/workflows/run"

CODE = '''\
import hashlib
import json
import time
import urllib.request


def main(text: str, action: str, seconds: str, target: str) -> dict:
    if action == "reach":
        with urllib.request.urlopen(target, timeout=20) as answer:
            return {"result": "reached %s: %s" % (target, answer.status)}
    if action == "sleep":
        time.sleep(float(seconds))
    digest = hashlib.sha256(text.encode()).hexdigest()
    return {"result": json.dumps({"upper": text.upper(), "sha256": digest}, sort_keys=True)}
'''

INPUTS = ("text", "action", "seconds", "target")


def expected(text: str) -> str:
    """What the Code node answers for `text` (computed here, run there)."""
    return json.dumps({"upper": text.upper(), "sha256": hashlib.sha256(text.encode()).hexdigest()}, sort_keys=True)


def graph() -> dict:
    """The draft as the console's workflow editor saves it (api/dify_graph/nodes/*/entities.py)."""
    def node(node_id: str, x: int, data: dict) -> dict:
        return {"id": node_id, "type": "custom", "position": {"x": x, "y": 100}, "data": data,
                "width": 244, "height": 90}

    def edge(source: str, target: str, source_type: str, target_type: str) -> dict:
        return {"id": f"{source}-{target}", "type": "custom", "source": source, "target": target,
                "sourceHandle": "source", "targetHandle": "target",
                "data": {"sourceType": source_type, "targetType": target_type, "isInIteration": False}}

    start = node("start", 80, {"type": "start", "title": "Start", "variables": [
        {"variable": name, "label": name, "type": "text-input", "required": name == "text", "max_length": 256,
         "options": []} for name in INPUTS]})
    code = node("code", 380, {"type": "code", "title": "Code", "code_language": "python3", "code": CODE,
                              "variables": [{"variable": name, "value_selector": ["start", name]} for name in INPUTS],
                              "outputs": {"result": {"type": "string", "children": None}}})
    end = node("end", 680, {"type": "end", "title": "End",
                            "outputs": [{"variable": "result", "value_selector": ["code", "result"]}]})
    return {"nodes": [start, code, end],
            "edges": [edge("start", "code", "start", "code"), edge("code", "end", "code", "end")],
            "viewport": {"x": 0, "y": 0, "zoom": 1}}


def publish(on_host: list[str], api_url: str, email: str, password: str) -> str:
    """Create (or update) and publish the workflow app; its API key."""
    made = dify_console(on_host, api_url, "workflow", email=email, password=password, name=APP_NAME, graph=graph())
    assert made.get("login_status") == 200, made
    assert made.get("key_status") == 201 and str(made.get("key", "")).startswith("app-"), made
    return made["key"]


def run(edge: edge_kit.Edge, key: str, mode: str, timeout: int = 60, **inputs: str) -> dict:
    """POST /v1/workflows/run through the edge. Streaming: the result's `stream` lists the SSE
    events as (event name, data) in arrival order."""
    body = {"inputs": {name: inputs.get(name, "") for name in INPUTS}, "response_mode": mode,
            "user": "selfhost-tests"}
    spec = {"path": RUN_PATH, "method": "POST", "body": json.dumps(body), "timeout": timeout,
            "headers": {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}}
    if mode == "streaming":
        spec["read"] = "events"
    result = edge_kit.requests(edge, [spec], timeout=timeout + 60)[0]
    if mode == "streaming":
        result["stream"] = [(event.get("event"), event) for event in events(result["body"])]
    return result


def events(body: str) -> list[dict]:
    found = []
    for line in body.splitlines():
        if line.startswith("data:"):
            try:
                found.append(json.loads(line[5:].strip()))
            except ValueError:
                found.append({"event": "unparsed", "raw": line[:200]})
    return found


# The events of one run of Start -> Code -> End, in order (pings and other kinds left out).
ORDER = ["workflow_started", "node_started", "node_finished", "node_started", "node_finished",
         "node_started", "node_finished", "workflow_finished"]


def assert_streamed(result: dict, text: str) -> dict:
    """The stream arrived in order and carried the Code node's output; the finished event."""
    assert result["error"] is None and result["status"] == 200, result
    assert edge_kit.header(result, "Content-Type").startswith("text/event-stream"), result["headers"]
    seen = [name for name, _data in result["stream"]]
    assert [name for name in seen if name in set(ORDER)] == ORDER, seen
    code_done = [data for name, data in result["stream"]
                 if name == "node_finished" and data["data"].get("node_type") == "code"]
    assert code_done and code_done[0]["data"]["status"] == "succeeded", code_done
    assert code_done[0]["data"]["outputs"]["result"] == expected(text), code_done[0]["data"]
    finished = next(data for name, data in result["stream"] if name == "workflow_finished")
    assert finished["data"]["status"] == "succeeded", finished
    assert finished["data"]["outputs"] == {"result": expected(text)}, finished
    return finished


def assert_blocking(result: dict, text: str) -> None:
    assert result["error"] is None and result["status"] == 200, result
    data = result["json"]["data"]
    assert data["status"] == "succeeded" and data["outputs"] == {"result": expected(text)}, data


def assert_refused(result: dict, target: str) -> str:
    """The run fails in the Code node: the SSRF proxy refused the private destination."""
    assert result["error"] is None and result["status"] == 200, result
    data = result["json"]["data"]
    assert data["status"] == "failed", data
    assert "403" in (data.get("error") or ""), data
    return data["error"]
