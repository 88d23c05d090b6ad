"""A real MCP client for the end-to-end tests: the official Python SDK (`mcp`, pinned in
tests/e2e/requirements.txt) over Streamable HTTP, with the bearer token the way an application passes
it. It runs a list of steps given as JSON and prints one JSON line per step, so the Rust tests
drive it and check each answer (the same shape as mcp-client.mjs).

    .tools/venv/bin/python tests/e2e/mcp_client.py <url> <token or -> <mode> '<steps>'

<mode> is the SDK's own: "auto" (its default: probe `server/discover`, fall back to the
`initialize` handshake), "2026-07-28" (that revision only, no probe) or "legacy" (the handshake).

Steps: "connect", "listTools", "listPrompts", "listResources", {"call": [name, args]},
{"read": uri}, {"getPrompt": [name, args]}, {"subscribe": uri} (subscribes to `uri`, turns on
server-everything's simulated updates with its `toggle-subscriber-updates` tool, and waits for
the first update: on 2026-07-28 through `subscriptions/listen`, before it through
`resources/subscribe` and the session's notifications).
"""

import asyncio
import json
import sys

import httpx2
import mcp_types as types
from mcp.client import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.client.subscriptions import ResourceUpdated

UPDATE_TIMEOUT = 20


def out(step, value):
    sys.stdout.write(json.dumps({"step": step, **value}) + "\n")
    sys.stdout.flush()


def failure(e):
    return {"error": {"code": getattr(getattr(e, "error", None), "code", None), "message": str(e)}}


def dump(result):
    return result.model_dump(by_alias=True, mode="json", exclude_none=True)


async def subscribe(client, updates, uri):
    toggle = "toggle-subscriber-updates"
    if client.protocol_version == "2026-07-28":
        async with client.listen(resource_subscriptions=[uri]) as sub:
            await client.call_tool(toggle, {})
            event = await asyncio.wait_for(anext(sub), UPDATE_TIMEOUT)
            assert isinstance(event, ResourceUpdated), event
            honored = sub.honored.resource_subscriptions
            await client.call_tool(toggle, {})
            return {"updated": event.uri, "honored": honored, "via": "subscriptions/listen"}
    await client.subscribe_resource(uri)
    await client.call_tool(toggle, {})
    while True:
        message = await asyncio.wait_for(updates.get(), UPDATE_TIMEOUT)
        if isinstance(message, types.ResourceUpdatedNotification):
            await client.call_tool(toggle, {})
            await client.unsubscribe_resource(uri)
            return {"updated": message.params.uri, "via": "resources/subscribe"}


async def main():
    url, token, mode, steps_json = sys.argv[1:5]
    steps = json.loads(steps_json)
    headers = {"Authorization": f"Bearer {token}"} if token and token != "-" else {}
    updates = asyncio.Queue()

    async def on_message(message):
        await updates.put(message)

    http = httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30, read=300))
    async with http:
        client = Client(
            streamable_http_client(url, http_client=http),
            mode=mode,
            client_info=types.Implementation(name="mcp-auth-filter-e2e-python", version="1.0.0"),
            message_handler=on_message,
            read_timeout_seconds=60,
        )
        entered = False
        for step in steps:
            name = step if isinstance(step, str) else next(iter(step))
            try:
                if name == "connect":
                    await client.__aenter__()
                    entered = True
                    out(name, {"ok": True, "protocolVersion": client.protocol_version})
                elif name == "listTools":
                    out(name, {"tools": [t.name for t in (await client.list_tools()).tools]})
                elif name == "listPrompts":
                    out(name, {"prompts": [p.name for p in (await client.list_prompts()).prompts]})
                elif name == "listResources":
                    resources = (await client.list_resources()).resources
                    out(name, {"resources": [str(r.uri) for r in resources]})
                elif name == "call":
                    tool, args = step["call"]
                    out(name, {"result": dump(await client.call_tool(tool, args or {}))})
                elif name == "read":
                    out(name, {"result": dump(await client.read_resource(step["read"]))})
                elif name == "getPrompt":
                    prompt, args = step["getPrompt"]
                    out(name, {"result": dump(await client.get_prompt(prompt, args or {}))})
                elif name == "subscribe":
                    out(name, await subscribe(client, updates, step["subscribe"]))
                else:
                    out(name, {"error": {"code": None, "message": f"unknown step {name}"}})
            except Exception as e:  # every failure is a line the test reads, not a traceback
                out(name, failure(e))
                if name == "connect":
                    break
        if entered:
            await client.__aexit__(None, None, None)


asyncio.run(main())
