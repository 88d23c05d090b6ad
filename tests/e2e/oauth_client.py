"""A person logging in through the gateway with the official MCP Python SDK's OAuthClientProvider
(authorization code + PKCE, dynamic registration, refresh). Where a desktop client would open a
browser, the redirect handler fetches the authorization URL, posts the login form as the person
and keeps the redirect's code, state and iss for the callback handler (plain HTTP, no browser).
Everything else is the SDK's own. It runs a list of steps and prints one JSON line per step,
like mcp-client.mjs.

    .tools/venv/bin/python tests/e2e/oauth_client.py <url> <username> <password> '<steps>'

Steps: "connect" (signs in when the gateway asks), "listTools", {"call": [name, args]},
{"sleep": seconds}, "token" (the current access token's claims and the count of logins and
token grants so far), "close" (implicit at the end).
"""

import asyncio
import base64
import html
import json
import re
import sys
from contextlib import AsyncExitStack
from urllib.parse import parse_qs, urlsplit

import httpx2
from mcp import Client
from mcp.client.auth import OAuthClientProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import (
    AuthorizationCodeResult,
    OAuthClientInformationFull,
    OAuthClientMetadata,
    OAuthToken,
)

REDIRECT = "http://127.0.0.1:53682/callback"


def out(step, **value):
    print(json.dumps({"step": step, **value}), flush=True)


class Memory:
    """The SDK's TokenStorage, in memory; counts the token grants it is handed."""

    def __init__(self):
        self.tokens = None
        self.client = None
        self.grants = 0

    async def get_tokens(self):
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken):
        self.grants += 1
        self.tokens = tokens

    async def get_client_info(self):
        return self.client

    async def set_client_info(self, client_info: OAuthClientInformationFull):
        self.client = client_info


class Person:
    """Signs in on the issuer's login page as a person would, over plain HTTP."""

    def __init__(self, username, password):
        self.username = username
        self.password = password
        self.result = None
        self.logins = 0

    async def redirect(self, authorization_url: str):
        self.logins += 1
        async with httpx2.AsyncClient(follow_redirects=False, timeout=20) as http:
            page = await http.get(authorization_url)
            if page.status_code != 200:
                raise RuntimeError(f"login page: {page.status_code} {page.text[:300]}")
            request_id = re.search(r'name="request_id" value="([^"]+)"', page.text)
            action = re.search(r'<form method="post" action="([^"]+)"', page.text)
            if not request_id or not action:
                raise RuntimeError(f"no login form in: {page.text[:300]}")
            signed_in = await http.post(
                html.unescape(action.group(1)),
                data={
                    "request_id": html.unescape(request_id.group(1)),
                    "username": self.username,
                    "password": self.password,
                    "action": "login",
                },
            )
        location = signed_in.headers.get("location")
        if not location:
            raise RuntimeError(f"sign-in: {signed_in.status_code} {signed_in.text[:300]}")
        query = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
        if "error" in query:
            raise RuntimeError(f"sign-in refused: {location}")
        # Everything the redirect carried goes to the SDK, `iss` included (RFC 9207).
        self.result = AuthorizationCodeResult(
            code=query["code"], state=query.get("state"), iss=query.get("iss")
        )

    async def callback(self) -> AuthorizationCodeResult:
        return self.result


def claims(token):
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def failure(error):
    # The SDK's task groups wrap what went wrong; the first leaf is the cause.
    while isinstance(error, BaseExceptionGroup) and error.exceptions:
        error = error.exceptions[0]
    status = getattr(getattr(error, "response", None), "status_code", None)
    return {"error": {"code": status, "type": type(error).__name__, "message": str(error)}}


async def main(url, username, password, steps):
    # The statuses the gateway answered MCP requests with: the SDK reports a refusal as a
    # JSON-RPC error without its HTTP status.
    statuses = []

    async def seen(response):
        if str(response.request.url) == url:
            statuses.append(response.status_code)

    storage = Memory()
    person = Person(username, password)
    provider = OAuthClientProvider(
        server_url=url,
        client_metadata=OAuthClientMetadata(
            client_name="oauth-e2e (Python SDK)",
            redirect_uris=[REDIRECT],
            grant_types=["authorization_code", "refresh_token"],
            response_types=["code"],
            token_endpoint_auth_method="none",
        ),
        storage=storage,
        redirect_handler=person.redirect,
        callback_handler=person.callback,
    )
    async with AsyncExitStack() as stack:
        client = None
        for step in steps:
            name = step if isinstance(step, str) else next(iter(step))
            try:
                if name == "connect":
                    http = await stack.enter_async_context(
                        httpx2.AsyncClient(
                            auth=provider,
                            timeout=httpx2.Timeout(30, read=60),
                            event_hooks={"response": [seen]},
                        )
                    )
                    transport = streamable_http_client(url, http_client=http)
                    client = await stack.enter_async_context(Client(transport))
                    out(name, ok=True, clientId=storage.client.client_id if storage.client else None)
                elif name == "listTools":
                    tools = await client.list_tools()
                    out(name, tools=[t.name for t in tools.tools])
                elif name == "call":
                    tool, args = step["call"]
                    result = await client.call_tool(tool, args or {})
                    out(name, result=result.model_dump(mode="json", by_alias=True, exclude_none=True))
                elif name == "sleep":
                    await asyncio.sleep(step["sleep"])
                    out(name, ok=True)
                elif name == "token":
                    tokens = storage.tokens
                    out(
                        name,
                        claims=claims(tokens.access_token) if tokens else None,
                        refreshToken=bool(tokens and tokens.refresh_token),
                        logins=person.logins,
                        grants=storage.grants,
                    )
                elif name == "close":
                    break
                else:
                    out(name, error={"message": f"unknown step {name}"})
            except BaseException as error:  # an ExceptionGroup from the SDK's task group too
                out(name, **failure(error), statuses=statuses)
                if name == "connect":
                    return


if __name__ == "__main__":
    target, user, secret, steps_json = sys.argv[1:5]
    try:
        asyncio.run(main(target, user, secret, json.loads(steps_json)))
    except BaseException as error:
        # Leaving the SDK's contexts after a refused connect may raise again; the steps' lines
        # have been printed already.
        print(json.dumps({"step": "exit", **failure(error)}), flush=True)
