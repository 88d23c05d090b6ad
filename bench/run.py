#!/usr/bin/env python3
"""`make bench`: the benchmark (Python standard library only).

Builds what it measures (`make envoy`, `make wasm` — the filter's release module, whatever it
currently is — the bench crates, and `host-shim`), mints tokens, and measures on loopback.

The gateway's bootstrap is the project's own: `host-shim envoy --json` renders it from a bench
configuration (written to target/bench-run/gateway.yaml: routes `/get` with the Okta guide's
policy, `/mcp` and `/list` with the guide's rule plus a per-tool rule, `/list-plain` with the
guide's policy only), with its one upstream cluster pointed at the upstream Envoy. Each
comparison configuration replaces only the `http_filters` chain of that document; listener,
routes and clusters stay as rendered (the hardened HTTP settings and the access log included:
Envoy's application log goes to a file, the access log to /dev/null). The upstream is one more
Envoy (`--concurrency 2`, started once, shared by every run; it reads each whole request, so
connections are reused) answering every path with a `direct_response`: "ok", a `tools/call` result, or a `tools/list` answer of 100 tools (10 of
them `admin_*`) as JSON or as an SSE event; so it costs nearly nothing and the same for all.

Chains (`--concurrency 2` Envoy, a fresh one for every run):

  none       no auth filter (the router only)
  noop       the no-op wasm filter (bench/noop: reads one header)
  jwt        native jwt_authn, verifying every request (no cache)
  jwt_cache  native jwt_authn with jwt_cache_config
  native     jwt_authn (jwt_cache_config, payload in metadata) + envoy.filters.http.mcp + RBAC:
             allow when the token's `groups` holds AI-Users and the message is not a
             `tools/call` of an `admin_*` tool (the per-tool rule, on the MCP filter's metadata)
  ours       the rendered chain: our filter with `holdHeaders` (the headers wait until the body
             is judged) and `allow_on_headers_stop_iteration`

Measurements, run in alternation (A B C … A B C …) over BENCH_ROUNDS rounds, each with
`wrk -t1 -c16` for BENCH_SECONDS after BENCH_WARMUP seconds of load. A ratio is the median
of the rounds' ratios of the two measurements it compares, which run next to each other:

  GET /get (8 warm tokens): none, noop, jwt, jwt_cache, warm (ours), cold (ours, a fresh
    token on every request; the run checks no token repeats and the token cache saw no hit)
  tools/call, a ~300-byte JSON-RPC POST with Streamable HTTP headers: call_none, call_noop
    (the floor of any wasm filter), call_native, call_ours (allowed: `echo`), deny_native, deny_ours (denied: `admin_reset`; RBAC answers
    403, ours a JSON-RPC error -32001)
  tools/list through ours: list_json / list_sse (the per-tool rule: the answer is read and 10
    of 100 tools removed) vs list_json_plain / list_sse_plain (the guide's rule only: the same
    request and token checks, the answer passed untouched): the filtering cost

then p50/p99 of tools/call at a fixed BENCH_RATE requests/s (`bench-tool load`, open-loop,
latency from each request's scheduled send time) for call_none, call_native, call_ours; the
filter's memory gauge under many distinct tokens; where our filter's time goes inside Envoy
(the module built with `--features callback-timing`, for warm, call_ours and list_json: µs
per request in each callback and in the host calls every request makes); and the RS256/ES256/EdDSA microbenchmarks
(the filter's `jwt::verify`, natively and as wasm32-wasip1 in V8 under Node's WASI). The
filter's memory gauge and Envoy's RSS are read after every run of a wasm chain. Prints one
report, writes it to bench/RESULTS.md, and rewrites README.md's `<!-- bench:latest -->` block.

Environment:
  BENCH_SECONDS   seconds per measurement (default 10)
  BENCH_ROUNDS    rounds of the alternation (default 3, at least 3)
  BENCH_WARMUP    seconds of load before each measurement, not counted (default 2)
  BENCH_RATE      the fixed rate of the latency phase (default 2000)
  BENCH_MEMORY    the memory phase: by default 1M requests over 100k distinct tokens, then a
                  second million (a few minutes at the cold rate); "reduced": 200k over 20k,
                  then 200k more; 0 / "skip": none
  BENCH_MEMORY_BOUND_MIB  the bound the memory gauge must stay under (default 16)
  BENCH_COLD_RPS  the cold rate to mint tokens for at first (default 16000; more are minted and
                  the measurement redone if a run would reuse a token)
  BENCH_NOTE      a line added to RESULTS.md (e.g. "machine busy compiling")
  BENCH_ONLY      comma-separated measurements (none, warm, call_ours, …) or groups (get, call,
                  deny, list, latency, micro, memory, timing): a quick look; RESULTS.md and README.md
                  are written only when everything ran
  CARGO_TARGET_DIR  where the bench crates build (default target/bench); the filter module is
                  always `make wasm`'s, host-shim the root workspace's debug build.
"""

import datetime
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)
WORK = os.path.join(ROOT, "target", "bench-run")
TARGET = os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "target", "bench")
if not os.path.isabs(TARGET):
    TARGET = os.path.join(ROOT, TARGET)
ENVOY = os.path.join(ROOT, ".tools", "bin", "envoy")
FILTER_WASM = os.path.join(
    ROOT, "target", "filter-wasm", "wasm32-wasip1", "release", "mcp_auth_filter.wasm"
)
NOOP_WASM = os.path.join(TARGET, "wasm32-wasip1", "release", "bench_noop.wasm")
# The filter built with `--features callback-timing`, for the breakdown of where time goes.
TIMING_TARGET = os.path.join(ROOT, "target", "filter-wasm-timing")
TIMING_WASM = os.path.join(TIMING_TARGET, "wasm32-wasip1", "release", "mcp_auth_filter.wasm")
TIMING = "wasmcustom.mcp_auth.timing."
MICRO_WASM = os.path.join(TARGET, "wasm32-wasip1", "release", "bench-micro.wasm")
TOOL = os.path.join(TARGET, "release", "bench-tool")
MICRO = os.path.join(TARGET, "release", "bench-micro")
README = os.path.join(ROOT, "README.md")

ISSUER = "https://bench.okta.example/oauth2/default"  # as bench-tool mints
AUDIENCE = "api://agentgateway"
PROTOCOL = "2025-11-25"
CONCURRENCY = 2
UPSTREAM_CONCURRENCY = 2
WRK_CONNECTIONS = 16
LOAD_CONNECTIONS = 32
WARM_TOKENS = 8
MICRO_TOKENS = 600  # per algorithm; the first 100 are warm-up
TOOLS, HIDDEN = 100, 10
MIB = 1024 * 1024
MEMORY_GAUGE = "wasmcustom.mcp_auth.memory_bytes"

SECONDS = int(os.environ.get("BENCH_SECONDS", "10"))
ROUNDS = max(3, int(os.environ.get("BENCH_ROUNDS", "3")))
WARMUP = float(os.environ.get("BENCH_WARMUP", "2"))
RATE = int(os.environ.get("BENCH_RATE", "2000"))
MEMORY = os.environ.get("BENCH_MEMORY", "")
MEMORY_BOUND_MIB = float(os.environ.get("BENCH_MEMORY_BOUND_MIB", "16"))
COLD_RPS = int(os.environ.get("BENCH_COLD_RPS", "16000"))
ONLY = [c for c in os.environ.get("BENCH_ONLY", "").split(",") if c]

MCP_HEADERS = [
    "Content-Type: application/json",
    "Accept: application/json, text/event-stream",
    f"MCP-Protocol-Version: {PROTOCOL}",
]

# A request shape: method, path, body (a key of BODIES or None), headers.
SHAPES = {
    "get": ("GET", "/get", None, []),
    "call": ("POST", "/mcp", "call", MCP_HEADERS),
    "deny": ("POST", "/mcp", "deny", MCP_HEADERS),
    "list_json": ("POST", "/list", "list", MCP_HEADERS),
    "list_json_plain": ("POST", "/list-plain", "list", MCP_HEADERS),
    "list_sse": ("POST", "/list-sse", "list", MCP_HEADERS),
    "list_sse_plain": ("POST", "/list-sse-plain", "list", MCP_HEADERS),
}

# name, label, chain, shape, group, what a correct answer is
MEASUREMENTS = [
    ("none", "GET, no auth filter", "none", "get", "get", "ok"),
    ("noop", "GET, no-op wasm filter (reads one header)", "noop", "get", "get", "ok"),
    ("jwt", "GET, native jwt_authn, no cache", "jwt", "get", "get", "ok"),
    ("jwt_cache", "GET, native jwt_authn, jwt_cache_config", "jwt_cache", "get", "get", "ok"),
    ("warm", f"GET, ours, warm ({WARM_TOKENS} tokens reused)", "ours", "get", "get", "ok"),
    ("cold", "GET, ours, cold (a fresh token per request)", "ours", "get", "get", "ok"),
    ("call_none", "tools/call, no auth filter", "none", "call", "call", "result"),
    ("call_noop", "tools/call, no-op wasm filter (reads one header)", "noop", "call", "call",
     "result"),
    ("call_native", "tools/call allowed, jwt_authn (cache) + mcp + RBAC", "native", "call",
     "call", "result"),
    ("call_ours", "tools/call allowed, ours", "ours", "call", "call", "result"),
    ("deny_native", "tools/call denied, jwt_authn (cache) + mcp + RBAC (403)", "native", "deny",
     "deny", "403"),
    ("deny_ours", "tools/call denied, ours (JSON-RPC error -32001)", "ours", "deny", "deny",
     "denied"),
    ("list_json_plain", f"tools/list JSON, ours, {TOOLS} tools, not filtered", "ours",
     "list_json_plain", "list", TOOLS),
    ("list_json", f"tools/list JSON, ours, {HIDDEN} of {TOOLS} tools removed", "ours",
     "list_json", "list", TOOLS - HIDDEN),
    ("list_sse_plain", f"tools/list SSE, ours, {TOOLS} tools, not filtered", "ours",
     "list_sse_plain", "list", TOOLS),
    ("list_sse", f"tools/list SSE, ours, {HIDDEN} of {TOOLS} tools removed", "ours", "list_sse",
     "list", TOOLS - HIDDEN),
]
LABELS = {m[0]: m[1] for m in MEASUREMENTS}
LATENCY = ["call_none", "call_native", "call_ours"]
GROUPS = {}
for _m in MEASUREMENTS:
    GROUPS.setdefault(_m[4], []).append(_m[0])
PHASES = ("latency", "micro", "memory", "timing")
# The breakdown's measurements (run on the timing build) and its rows: span, label.
TIMED = ["warm", "call_ours", "list_json"]
SPANS = [
    ("request_headers", "request headers callback"),
    ("route", "… of which `xds.route_name`"),
    ("headers", "… of which reading the header pairs"),
    ("request_body", "request body callback"),
    ("body_read", "… of which reading the body"),
    ("carry_out", "decision property and header changes (in either callback)"),
    ("response_headers", "response headers callback"),
    ("response_body", "response body callback"),
    ("done", "stream done"),
]


def selected(name):
    """Whether BENCH_ONLY asks for this measurement or phase (everything when unset)."""
    if not ONLY:
        return True
    if name in PHASES:
        return name in ONLY
    return any(item == name or name in GROUPS.get(item, []) for item in ONLY)


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def run(cmd, **kw):
    # Builds and tools talk on stderr; stdout carries only the report.
    log("$ " + " ".join(cmd))
    return subprocess.run(cmd, check=True, stdout=sys.stderr, **kw)


def output(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw).stdout


# ---------------------------------------------------------------------------------------------
# Tools and builds


def ensure_tools():
    if not shutil.which("wrk"):
        log("installing wrk")
        if subprocess.run(["apt-get", "install", "-y", "wrk"], stdout=sys.stderr).returncode != 0:
            run(["apt-get", "update"])
            run(["apt-get", "install", "-y", "wrk"])
    if not shutil.which("node"):
        sys.exit("bench: node (20 or later) is needed for the V8 microbenchmark")
    if not os.path.exists(ENVOY):
        run(["make", "-C", ROOT, "envoy"])


def build():
    # The module under test: exactly what `make wasm` builds now.
    run(["make", "-C", ROOT, "wasm"])
    run(["cargo", "build", "-q", "--manifest-path", os.path.join(ROOT, "Cargo.toml"),
         "-p", "host-shim"])
    env = dict(os.environ, CARGO_TARGET_DIR=TARGET)
    manifest = os.path.join(BENCH, "Cargo.toml")
    cargo = ["cargo", "build", "--release", "--manifest-path", manifest]
    run(cargo + ["-p", "bench-tool", "-p", "bench-micro"], env=env)
    run(cargo + ["--target", "wasm32-wasip1", "-p", "bench-noop", "-p", "bench-micro"], env=env)
    if selected("timing"):
        run(["cargo", "build", "--release", "--manifest-path", os.path.join(ROOT, "Cargo.toml"),
             "--target", "wasm32-wasip1", "-p", "mcp-auth-filter", "--features",
             "callback-timing"], env=dict(os.environ, CARGO_TARGET_DIR=TIMING_TARGET))


# ---------------------------------------------------------------------------------------------
# Tokens


def count_lines(path):
    with open(path, "rb") as f:
        return sum(1 for line in f if line.strip())


def mint(count, path):
    t = time.monotonic()
    run([TOOL, "tokens", WORK, str(count), path])
    log(f"minted {count} RS256 tokens in {time.monotonic() - t:.1f}s")


class ColdTokens:
    """The file of fresh tokens; grown when a cold run would need more than it holds."""

    def __init__(self, path, count):
        self.path = path
        self.count = count
        mint(count, path)

    def ensure(self, count):
        if count > self.count:
            # Each mint has its own nonce in `jti`: the appended tokens are new ones.
            extra = self.path + ".more"
            mint(count - self.count, extra)
            with open(extra) as src, open(self.path, "a") as dst:
                shutil.copyfileobj(src, dst)
            os.remove(extra)
            self.count = count_lines(self.path)


# ---------------------------------------------------------------------------------------------
# MCP traffic: the request bodies and the upstream's answers, made here


def call_body(tool):
    # A tools/call of about 300 bytes, as a client sends it.
    def body(pad):
        return json.dumps({
            "jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": tool, "arguments": {
                "query": "quarterly revenue by region", "limit": 20,
                "note": "x" * pad}, "_meta": {"progressToken": "bench-1"}},
        }, separators=(",", ":"))
    return body(max(0, 300 - len(body(0))))


BODIES = {
    "call": call_body("echo"),
    "deny": call_body("admin_reset"),
    "list": json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}},
                       separators=(",", ":")),
}


def tools_list_answer():
    tools = []
    for i in range(TOOLS):
        name = f"admin_op_{i:02d}" if i % (TOOLS // HIDDEN) == 0 else f"search_docs_{i:02d}"
        tools.append({
            "name": name,
            "description": f"Tool {i}: searches the team's documents and returns the best "
                           "matches with their titles and links.",
            "inputSchema": {"type": "object", "properties": {
                "query": {"type": "string", "description": "what to look for"},
                "limit": {"type": "integer", "minimum": 1, "maximum": 100}},
                "required": ["query"]},
        })
    return json.dumps({"jsonrpc": "2.0", "id": 1, "result": {"tools": tools}},
                      separators=(",", ":"))


CALL_ANSWER = json.dumps({"jsonrpc": "2.0", "id": 1, "result": {
    "content": [{"type": "text", "text": "Echo: quarterly revenue by region"}],
    "isError": False}}, separators=(",", ":"))


def upstream_bootstrap():
    listing = tools_list_answer()

    def answer(path, body, content_type):
        return {
            "name": path, "match": {"path": path},
            "direct_response": {"status": 200, "body": {"inline_string": body}},
            "response_headers_to_add": [{
                "header": {"key": "content-type", "value": content_type},
                "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}],
        }

    sse = "event: message\ndata: " + listing + "\n\n"
    routes = [
        answer("/mcp", CALL_ANSWER, "application/json"),
        answer("/list", listing, "application/json"),
        answer("/list-plain", listing, "application/json"),
        answer("/list-sse", sse, "text/event-stream"),
        answer("/list-sse-plain", sse, "text/event-stream"),
        {"name": "ok", "match": {"prefix": "/"},
         "direct_response": {"status": 200, "body": {"inline_string": "ok"}}},
    ]
    hcm = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "upstream",
        "route_config": {
            "name": "upstream",
            "max_direct_response_body_size_bytes": MIB,
            "virtual_hosts": [{"name": "upstream", "domains": ["*"], "routes": routes}],
        },
        # The whole request is read before the answer: a direct_response sent while a body is
        # still coming closes the connection, and every POST would pay for a new one.
        "http_filters": [{"name": "envoy.filters.http.buffer", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer",
            "max_request_bytes": MIB}}, router()],
    }
    return listener_bootstrap("upstream", hcm)


def listener_bootstrap(name, hcm):
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
        "static_resources": {"listeners": [{
            "name": name,
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
            "filter_chains": [{"filters": [{
                "name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}]}],
        }]},
    }


# ---------------------------------------------------------------------------------------------
# The gateway: rendered by host-shim, then each comparison chain swapped in


def guide_policy(jwks, tool_rule):
    # The Okta guide's policy, with the key set inline (Agent Gateway's `jwks: '<json>'` form);
    # with `tool_rule`, one MCP-level rule more: no `admin_*` tool (neither called nor listed).
    rules = [{"if": '"AI-Users" in auth.claims.groups'}]
    if tool_rule:
        rules.append({"deny": 'mcp.tool.name.startsWith("admin_")'})
    return {
        "mcpAuthentication": {"mode": "strict", "issuer": ISSUER, "audiences": [AUDIENCE],
                              "jwks": jwks},
        "authorization": {"rules": rules},
    }


def gateway_config(jwks):
    def route(name, paths, tool_rule):
        return {"name": name, "matches": [{"path": {"exact": p}} for p in paths],
                "policies": guide_policy(jwks, tool_rule)}

    # JSON is YAML: host-shim reads this as it reads any configuration file.
    return {"binds": [{"port": 0, "listeners": [{"routes": [
        route("get", ["/get"], False),
        route("mcp", ["/mcp"], True),
        route("list", ["/list", "/list-sse"], True),
        route("list-plain", ["/list-plain", "/list-sse-plain"], False),
    ]}]}]}


def render_gateway(jwks, upstream_addr):
    config = os.path.join(WORK, "gateway.yaml")
    with open(config, "w") as f:
        json.dump(gateway_config(jwks), f, indent=1)
    out = os.path.join(WORK, "gateway-rendered.json")
    run(["cargo", "run", "-q", "--manifest-path", os.path.join(ROOT, "Cargo.toml"),
         "-p", "host-shim", "--", "envoy", config, "--wasm", FILTER_WASM,
         "--shim", upstream_addr, "--admin-port", "0", "--json", "-o", out])
    with open(out) as f:
        return json.load(f)


def router():
    return {"name": "envoy.filters.http.router", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}


def wasm_filter(name, path):
    return {
        "name": "envoy.filters.http.wasm",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": {"name": name, "vm_config": {
                "vm_id": name, "runtime": "envoy.wasm.runtime.v8",
                "code": {"local": {"filename": path}}}},
        },
    }


def jwt_authn(jwks, cached, payload=False):
    provider = {
        "issuer": ISSUER,
        "audiences": [AUDIENCE],
        "local_jwks": {"inline_string": jwks},
        "forward": False,
    }
    if cached:
        provider["jwt_cache_config"] = {"jwt_cache_size": 1024}
    if payload:
        provider["payload_in_metadata"] = "jwt_payload"
    return {
        "name": "envoy.filters.http.jwt_authn",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
            "providers": {"okta": provider},
            "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "okta"}}],
        },
    }


def mcp_filter():
    return {"name": "envoy.filters.http.mcp", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.mcp.v3.Mcp"}}


def metadata(namespace, path, value):
    return {"metadata_matcher": {"filter": namespace, "path": [{"key": k} for k in path],
                                 "value": value}}


def rbac():
    # The guide's rule and the per-tool rule: the token's groups (jwt_authn's payload) hold
    # AI-Users, and the message (the MCP filter's metadata) is not a call of an admin_* tool.
    # The MCP filter holds the headers until it has parsed the body, so RBAC sees its metadata.
    mcp = "envoy.filters.http.mcp"
    return {
        "name": "envoy.filters.http.rbac",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC",
            "rules": {"action": "ALLOW", "policies": {"ai-users-no-admin-tools": {
                "permissions": [{"not_rule": {"and_rules": {"rules": [
                    {"sourced_metadata": metadata(mcp, ["method"],
                                                  {"string_match": {"exact": "tools/call"}})},
                    {"sourced_metadata": metadata(mcp, ["params", "name"],
                                                  {"string_match": {"prefix": "admin_"}})},
                ]}}}],
                "principals": [{"sourced_metadata": metadata(
                    "envoy.filters.http.jwt_authn", ["jwt_payload", "groups"],
                    {"list_match": {"one_of": {"string_match": {"exact": "AI-Users"}}}})}],
            }}},
        },
    }


def chains(rendered, jwks):
    listener = rendered["static_resources"]["listeners"][0]
    hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
    ours = hcm["http_filters"]
    tail = [f for f in ours if f["name"] == "envoy.filters.http.router"]
    return {
        "none": tail,
        "noop": [wasm_filter("noop", NOOP_WASM)] + tail,
        "jwt": [jwt_authn(jwks, False)] + tail,
        "jwt_cache": [jwt_authn(jwks, True)] + tail,
        "native": [jwt_authn(jwks, True, payload=True), mcp_filter(), rbac()] + tail,
        "ours": ours,
    }


def with_chain(rendered, chain):
    doc = json.loads(json.dumps(rendered))
    hcm = doc["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    hcm["http_filters"] = chain
    return doc


# ---------------------------------------------------------------------------------------------
# Envoy


def http(url, token=None, method="GET", body=None, headers=(), timeout=5):
    req = urllib.request.Request(url, method=method,
                                 data=body.encode() if body is not None else None)
    for h in headers:
        name, _, value = h.partition(":")
        req.add_header(name.strip(), value.strip())
    if token:
        req.add_header("Authorization", "Bearer " + token)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode("utf-8", "replace")


def listed_tools(body):
    # The tools of a tools/list answer, JSON or SSE.
    text = body
    if body.startswith("event:") or body.startswith("data:"):
        text = "".join(line[5:].strip() for line in body.splitlines() if line.startswith("data:"))
    return json.loads(text)["result"]["tools"]


class Envoy:
    def __init__(self, name, bootstrap, concurrency=CONCURRENCY):
        self.name = name
        os.makedirs(WORK, exist_ok=True)
        self.config = os.path.join(WORK, f"envoy-{name}.json")
        with open(self.config, "w") as f:
            json.dump(bootstrap, f, indent=1)
        self.admin_path = os.path.join(WORK, f"envoy-{name}.admin")
        if os.path.exists(self.admin_path):
            os.remove(self.admin_path)
        self.log_path = os.path.join(WORK, f"envoy-{name}.log")
        # The application log to a file; stderr carries the rendered access log, one line
        # per request, which nobody reads here.
        self.proc = subprocess.Popen(
            [ENVOY, "-c", self.config, "--concurrency", str(concurrency),
             "--disable-hot-restart", "--admin-address-path", self.admin_path,
             "--log-level", "warn", "--log-path", self.log_path],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            self._ready()
        except BaseException:
            self.stop()
            raise

    def fail(self, why):
        try:
            with open(self.log_path) as f:
                tail = f.read()[-3000:]
        except OSError:
            tail = ""
        raise RuntimeError(f"envoy ({self.name}): {why}\n{tail}")

    def _ready(self):
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                self.fail(f"exited with {self.proc.returncode}")
            if time.monotonic() > deadline:
                self.fail("not ready in 60s")
            try:
                with open(self.admin_path) as f:
                    self.admin = "http://" + f.read().strip()
                status, body = http(self.admin + "/listeners?format=json", timeout=2)
                if status == 200:
                    listeners = json.loads(body)["listener_statuses"]
                    sock = listeners[0]["local_address"]["socket_address"]
                    if sock.get("port_value"):
                        self.port = sock["port_value"]
                        self.addr = f"127.0.0.1:{self.port}"
                        status, _ = http(self.admin + "/ready", timeout=2)
                        if status == 200:
                            return
            except (OSError, ValueError, KeyError, IndexError):
                pass
            time.sleep(0.1)

    def url(self, path):
        return f"http://{self.addr}{path}"

    def stats(self, prefix):
        status, body = http(self.admin + "/stats?filter=" + prefix)
        result = {}
        for line in body.splitlines():
            name, _, value = line.partition(": ")
            try:
                result[name.strip()] = int(value)
            except ValueError:
                pass
        return result

    def rss_bytes(self):
        try:
            with open(f"/proc/{self.proc.pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1]) * 1024
        except OSError:
            pass
        return None

    def stop(self):
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
            except ProcessLookupError:
                pass


def gateway(name, bootstrap, shape, expect, token):
    """A fresh gateway Envoy that answered one request of `shape` as it should."""
    envoy = Envoy(name, bootstrap)
    try:
        check(envoy, name, shape, expect, token)
    except BaseException:
        envoy.stop()
        raise
    return envoy


def check(envoy, name, shape, expect, token):
    method, path, body_key, headers = SHAPES[shape]
    body = BODIES[body_key] if body_key else None

    def ask(tok):
        return http(envoy.url(path), tok, method, body, headers)

    status, text = ask(token)
    try:
        if expect == "ok":
            good = status == 200 and text == "ok"
        elif expect == "result":
            good = status == 200 and "result" in json.loads(text)
        elif expect == "403":
            good = status == 403
        elif expect == "denied":
            good = status == 200 and json.loads(text)["error"]["code"] == -32001
        else:
            tools = listed_tools(text)
            good = status == 200 and len(tools) == expect and (
                expect == TOOLS or not any(t["name"].startswith("admin_") for t in tools))
    except (ValueError, KeyError, TypeError):
        good = False
    if not good:
        envoy.fail(f"{name}: a valid token got {status}, not {expect!r}: {text[:300]}")
    if name.split("_")[0] in ("none", "noop") or name in ("call_none", "call_noop"):
        return
    status, text = ask(None)
    if status != 401:
        envoy.fail(f"{name}: no token got {status}, expected 401: {text[:300]}")
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    status, text = ask(forged)
    if status != 401:
        envoy.fail(f"{name}: a forged signature got {status}, expected 401")


# ---------------------------------------------------------------------------------------------
# Load


def to_ms(value, unit):
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def body_file(key):
    path = os.path.join(WORK, f"body-{key}.json")
    with open(path, "w") as f:
        f.write(BODIES[key])
    return path


def wrk(envoy, shape, tokens_file, seconds, offset=0):
    method, path, body_key, headers = SHAPES[shape]
    cmd = ["wrk", "-t1", f"-c{WRK_CONNECTIONS}", f"-d{max(1, round(seconds))}s", "--latency",
           "-s", os.path.join(BENCH, "tokens.lua"), envoy.url(path), "--", tokens_file,
           str(offset), method, path, body_file(body_key) if body_key else "-"] + headers
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    result = {"requests": 0, "rps": 0.0, "errors": 0, "non_2xx": 0}
    m = re.search(r"(\d+) requests in", out)
    if m:
        result["requests"] = int(m.group(1))
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if m:
        result["rps"] = float(m.group(1))
    for pct in ("50", "99"):
        m = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        result[f"p{pct}_ms"] = to_ms(*m.groups()) if m else float("nan")
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if m:
        result["non_2xx"] = int(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        result["errors"] = sum(int(x) for x in m.groups())
    return result


def load(addr, tokens_file, shape, *args):
    method, path, body_key, headers = SHAPES[shape]
    cmd = [TOOL, "load", addr, tokens_file, "--method", method, "--path", path]
    if body_key:
        cmd += ["--body", body_file(body_key)]
    for h in headers:
        cmd += ["--header", h]
    return json.loads(output(cmd + [str(a) for a in args]))


# ---------------------------------------------------------------------------------------------
# Phases


def vm_memory(envoy):
    return {"gauge": envoy.stats(MEMORY_GAUGE).get(MEMORY_GAUGE), "rss": envoy.rss_bytes()}


def throughput(measurements, boots, warm_file, cold, token, notes):
    results = {m[0]: [] for m in measurements}
    cold_stats = []
    for r in range(ROUNDS):
        for name, _, chain, shape, _, expect in measurements:
            for attempt in range(3):
                envoy = gateway(name, boots[chain], shape, expect, token)
                try:
                    if name == "cold":
                        # Fresh Envoy, fresh VM caches; the warm-up and the run use disjoint
                        # slices of the file, and no token is sent twice.
                        w = wrk(envoy, shape, cold.path, WARMUP, 0)
                        offset = w["requests"] + 2 * WRK_CONNECTIONS
                        res = wrk(envoy, shape, cold.path, SECONDS, offset)
                        used = offset + res["requests"] + 2 * WRK_CONNECTIONS
                        stats = envoy.stats("wasmcustom.mcp_auth.token_cache")
                    else:
                        if WARMUP > 0:
                            wrk(envoy, shape, warm_file, WARMUP)
                        res = wrk(envoy, shape, warm_file, SECONDS)
                        used = 0
                    res.update(vm_memory(envoy))
                finally:
                    envoy.stop()
                if name == "cold" and used > cold.count:
                    log(f"cold: {used} tokens needed, {cold.count} minted: minting more, again")
                    cold.ensure(int(used * 1.3))
                    continue
                break
            else:
                sys.exit("bench: the cold run kept outrunning the minted tokens")
            if name == "cold":
                cold_stats.append(stats)
            bad_status = res["non_2xx"] if expect != "403" else res["requests"] - res["non_2xx"]
            if bad_status or res["errors"]:
                notes.append(f"{name} round {r + 1}: {bad_status} unexpected statuses, "
                             f"{res['errors']} socket errors")
            results[name].append(res)
            gauge = f"  VM {res['gauge'] / MIB:.2f} MiB" if res["gauge"] else ""
            log(f"round {r + 1} {name:15} {res['rps']:9.0f} req/s  p50 {res['p50_ms']:.3f} ms  "
                f"p99 {res['p99_ms']:.3f} ms{gauge}")
    for stats in cold_stats:
        hits = stats.get("wasmcustom.mcp_auth.token_cache.hit", 0)
        if hits:
            notes.append(f"cold: {hits} token-cache hits in a round (expected none)")
    return results


def latency(measurements, boots, warm_file, token, notes):
    results = {m[0]: [] for m in measurements}
    for r in range(ROUNDS):
        for name, _, chain, shape, _, expect in measurements:
            envoy = gateway(name, boots[chain], shape, expect, token)
            try:
                res = load(envoy.addr, warm_file, shape, "--rps", RATE, "--seconds", SECONDS,
                           "--warmup", WARMUP, "--connections", LOAD_CONNECTIONS)
            finally:
                envoy.stop()
            if res["non_200"] or res["errors"]:
                notes.append(f"{RATE} req/s {name} round {r + 1}: {res['non_200']} non-200, "
                             f"{res['errors']} errors")
            results[name].append(res)
            log(f"{RATE}/s round {r + 1} {name:11} p50 {res['p50_ms']:.3f} ms  "
                f"p99 {res['p99_ms']:.3f} ms  p99.9 {res['p999_ms']:.3f} ms  "
                f"({res['rps']:.0f} req/s)")
    return results


def with_wasm(bootstrap, path):
    doc = json.loads(json.dumps(bootstrap))
    hcm = doc["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    for f in hcm["http_filters"]:
        if f["name"] == "envoy.filters.http.wasm":
            f["typed_config"]["config"]["vm_config"]["code"]["local"]["filename"] = path
    return doc


def timing(boots, warm_file, token):
    """µs per request in each span, on the timing build: the counters' growth over a run."""
    boot = with_wasm(boots["ours"], TIMING_WASM)
    results = {}
    for name, _, _, shape, _, expect in (m for m in MEASUREMENTS if m[0] in TIMED):
        runs = []
        for r in range(min(ROUNDS, 3)):
            envoy = gateway(f"timing-{name}", boot, shape, expect, token)
            try:
                if WARMUP > 0:
                    wrk(envoy, shape, warm_file, WARMUP)
                before = envoy.stats(TIMING)
                res = wrk(envoy, shape, warm_file, SECONDS)
                after = envoy.stats(TIMING)
            finally:
                envoy.stop()
            streams = after.get(TIMING + "streams", 0) - before.get(TIMING + "streams", 0)
            if streams <= 0:
                sys.exit(f"bench: the timing build published no {TIMING}* counters")
            spans = {span: (after.get(f"{TIMING}{span}_ns", 0)
                            - before.get(f"{TIMING}{span}_ns", 0)) / streams / 1000
                     for span, _ in SPANS + [("clock", "")]}
            spans["rps"] = res["rps"]
            runs.append(spans)
            log(f"timing round {r + 1} {name:11} " + "  ".join(
                f"{k} {v:.2f}" for k, v in spans.items() if k != "rps"))
        results[name] = {k: median([run[k] for run in runs]) for k in runs[0]}
        results[name]["rounds"] = len(runs)
    return results


def memory(boots, cold, token, notes):
    full = MEMORY != "reduced"
    distinct, first = (100_000, 1_000_000) if full else (20_000, 200_000)
    cold.ensure(distinct)
    path = os.path.join(WORK, "memory-tokens.txt")
    with open(cold.path) as src, open(path, "w") as dst:
        for i, line in enumerate(src):
            if i >= distinct:
                break
            dst.write(line)
    envoy = gateway("memory", boots["ours"], "get", "ok", token)
    points = []
    try:
        done = 0
        for upto in (distinct, first, 2 * first):
            t = time.monotonic()
            res = load(envoy.addr, path, "get", "--requests", upto - done, "--offset", done,
                       "--connections", WRK_CONNECTIONS)
            done = upto
            if res["non_200"] or res["errors"]:
                notes.append(f"memory phase: {res['non_200']} non-200, {res['errors']} errors "
                             f"by {upto} requests")
            time.sleep(0.5)
            mem = vm_memory(envoy)
            points.append({"requests": upto, "gauge": mem["gauge"], "rss": mem["rss"],
                           "rps": res["rps"], "seconds": time.monotonic() - t})
            log(f"memory after {upto} requests: gauge {mem['gauge']}, Envoy RSS {mem['rss']}, "
                f"{res['rps']:.0f} req/s")
        stats = envoy.stats("wasmcustom.mcp_auth.token_cache")
    finally:
        envoy.stop()
    return {"full": full, "distinct": distinct, "first": first, "points": points, "stats": stats}


def micro():
    cases = os.path.join(WORK, "micro.json")
    run([TOOL, "micro", str(MICRO_TOKENS), cases])
    native = [json.loads(l) for l in output([MICRO, cases]).splitlines() if l.strip()]
    v8 = [json.loads(l) for l in output(
        ["node", "--no-warnings", os.path.join(BENCH, "micro.mjs"), MICRO_WASM, cases]
    ).splitlines() if l.strip()]
    return {"native": {c["alg"]: c for c in native}, "v8": {c["alg"]: c for c in v8}}


# ---------------------------------------------------------------------------------------------
# Report


def machine():
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    # "<sha>/1.40.0/Clean/RELEASE/BoringSSL"
    build = output([ENVOY, "--version"]).strip().split("version:")[-1].strip().split("/")
    version = (f"{build[1]} ({build[0][:12]}, {'/'.join(build[2:])})" if len(build) > 2
               else "/".join(build))
    node = output(["node", "--version"]).strip()
    commit = output(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"]).strip()
    dirty = output(["git", "-C", ROOT, "status", "--porcelain", "--", "filter"]).strip()
    return {"nproc": os.cpu_count(), "cpu": cpu, "envoy": version, "node": node,
            "commit": commit + (" + uncommitted filter changes" if dirty else "")}


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else float("nan")


def verdict(ok):
    return "PASS" if ok else "FAIL"


def paired(tp, a, b):
    """The ratio a / b: the median of each round's ratio. The two run one after the other in
    every round, so a machine that gets busier or quieter over the run moves both alike; the
    ratio of the medians would mix rounds taken minutes apart."""
    return median([x["rps"] / y["rps"] for x, y in zip(tp[a], tp[b]) if y["rps"]])


def targets_of(tp, lat, mem, mic, module_size):
    """(what, measured, goal, PASS/FAIL) for every target that was measured."""
    rps = {k: median([r["rps"] for r in v]) for k, v in tp.items() if v}
    targets = []

    def ratio(what, a, b, goal):
        if a in rps and b in rps:
            value = paired(tp, a, b)
            targets.append((what, f"{value:.2f}× (medians {rps[a]:,.0f} / {rps[b]:,.0f} req/s)",
                            f"≥ {goal}×", verdict(value >= goal)))

    ratio("tools/call allowed: ours / jwt_authn + mcp + RBAC", "call_ours", "call_native", 1.0)
    ratio("tools/call denied: ours / jwt_authn + mcp + RBAC", "deny_ours", "deny_native", 1.0)
    ratio("tools/call allowed: ours / no auth", "call_ours", "call_none", 0.85)
    lat_p99 = {k: median([r["p99_ms"] for r in v]) for k, v in lat.items() if v}
    if "call_ours" in lat_p99 and "call_native" in lat_p99:
        diff = lat_p99["call_ours"] - lat_p99["call_native"]
        targets.append((f"tools/call p99 at {RATE:,} req/s: ours − jwt_authn + mcp + RBAC",
                        f"{diff:+.3f} ms ({lat_p99['call_ours']:.3f} vs "
                        f"{lat_p99['call_native']:.3f})", "≤ +0.5 ms", verdict(diff <= 0.5)))
    ratio(f"tools/list JSON, {HIDDEN} of {TOOLS} hidden: filtered / unfiltered", "list_json",
          "list_json_plain", 0.75)
    ratio(f"tools/list SSE, {HIDDEN} of {TOOLS} hidden: filtered / unfiltered", "list_sse",
          "list_sse_plain", 0.75)
    ratio("GET warm: ours / no-op wasm filter", "warm", "noop", 0.9)
    ratio("GET cold: ours / jwt_authn (no cache)", "cold", "jwt", 0.5)
    if mic:
        es = mic["v8"]["ES256"]["mean_us"]
        targets.append(("ES256 verification in V8 (mean)", f"{es:.0f} µs", "≤ 300 µs",
                        verdict(es <= 300)))
    targets.append(("module size (`make wasm`)",
                    f"{module_size:,} B ({module_size / MIB:.2f} MiB)", "≤ 2.5 MiB",
                    verdict(module_size <= 2.5 * MIB)))
    if mem:
        gauges = [p["gauge"] for p in mem["points"]]
        if None in gauges:
            targets.append(("memory gauge `mcp_auth.memory_bytes`", "gauge not published",
                            "bounded, no growth", "FAIL"))
        else:
            a, b, c = gauges
            ok = max(gauges) <= MEMORY_BOUND_MIB * MIB and c <= b
            targets.append((
                f"memory: {mem['first']:,} requests over {mem['distinct']:,} tokens, then "
                f"{mem['first']:,} more", f"{a / MIB:.2f} → {b / MIB:.2f} → {c / MIB:.2f} MiB",
                f"≤ {MEMORY_BOUND_MIB:g} MiB, no growth in the second run", verdict(ok)))
    return rps, targets


def mib(value):
    return f"{value / MIB:.2f}" if value == value and value is not None else "–"


def report(info, load_avg, tp, lat, mem, mic, module_size, notes, spans=None):
    now = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    rps, targets = targets_of(tp, lat, mem, mic, module_size)
    lines = [
        "## Benchmark results",
        "",
        f"{now} · {info['nproc']} cores, {info['cpu']} · Envoy {info['envoy']} "
        f"(`--concurrency {CONCURRENCY}`) · Node {info['node']} · commit {info['commit']}",
        "",
        f"`wrk -t1 -c{WRK_CONNECTIONS}`, {SECONDS} s per run after {WARMUP:g} s of warm-up, "
        f"{ROUNDS} rounds in alternation, a fresh gateway Envoy per run; the gateway's bootstrap "
        "rendered by `host-shim envoy`, only `http_filters` swapped per chain; upstream = one "
        "Envoy answering with `direct_response` (`ok`, a `tools/call` result, a `tools/list` of "
        f"{TOOLS} tools as JSON or SSE); RS256 2048-bit tokens, key set inline; MCP requests "
        f"with `MCP-Protocol-Version: {PROTOCOL}`. A ratio is the median of the rounds' ratios "
        "(the two measurements it compares run one after the other in each round). Load "
        "average at start / end: "
        f"{load_avg[0]:.2f} / {load_avg[1]:.2f}.",
    ]
    if os.environ.get("BENCH_NOTE"):
        lines += ["", "Note: " + os.environ["BENCH_NOTE"]]
    lines += ["", "| target | measured | goal | |", "|---|---:|---|---|"]
    lines += [f"| {n} | {m} | {g} | **{v}** |" for n, m, g, v in targets]
    lines += ["", "| measurement | requests/s (median) | min – max | p50 ms | p99 ms | "
              "VM memory MiB | Envoy RSS MiB |", "|---|---:|---:|---:|---:|---:|---:|"]
    for name, label, chain, *_ in MEASUREMENTS:
        runs = tp.get(name, [])
        if not runs:
            continue
        lines.append(
            f"| {label} | {rps[name]:,.0f} | {min(r['rps'] for r in runs):,.0f} – "
            f"{max(r['rps'] for r in runs):,.0f} | {median([r['p50_ms'] for r in runs]):.3f} | "
            f"{median([r['p99_ms'] for r in runs]):.3f} | "
            f"{mib(median([r['gauge'] for r in runs]))} | "
            f"{mib(median([r['rss'] for r in runs]))} |")
    if "warm" in rps and "jwt_cache" in rps:
        lines += ["", f"Not a target: warm GET is {paired(tp, 'warm', 'jwt_cache'):.2f}× native "
                  "`jwt_authn` with `jwt_cache_config`. That speed is out of reach for any wasm "
                  "filter: the per-stream cost of a proxy-wasm filter in Envoy (context create, "
                  "headers, log, done and delete, each a call into V8) is larger than what "
                  "`jwt_authn` spends on a cached token"
                  + (f" (the no-op wasm filter is {paired(tp, 'noop', 'jwt_cache'):.2f}× of it)."
                     if "noop" in rps else ".")]
    if "call_noop" in rps and "call_none" in rps:
        floor = paired(tp, "call_noop", "call_none")
        line = (f"The floor of any wasm filter on `tools/call`: the no-op wasm filter is "
                f"{floor:.2f}× no auth")
        if "call_ours" in rps:
            line += (f"; ours is {paired(tp, 'call_ours', 'call_noop'):.2f}× the no-op wasm "
                     "filter")
        line += (". A target above the floor against no auth cannot be met by a proxy-wasm "
                 "filter in this Envoy." if floor < 0.85 else ".")
        lines += ["", line]
    if spans:
        cols = [n for n in TIMED if n in spans]
        rounds = min(spans[n]["rounds"] for n in cols)
        clock = median([spans[n]["clock"] for n in cols])
        lines += ["", "Where our filter's time goes inside Envoy's V8: the module built with "
                  "`--features callback-timing` times each callback and the host calls every "
                  "request makes with the host's clock (µs per request, median of "
                  f"{rounds} rounds under the same `wrk` load; each span includes about "
                  f"{clock:.2f} µs of its own clock reads, so the timed runs are a little "
                  "slower):", "",
                  "| span | " + " | ".join(LABELS[n] for n in cols) + " |",
                  "|---|" + "---:|" * len(cols)]
        for span, label in SPANS:
            lines.append(f"| {label} | " + " | ".join(f"{spans[n][span]:.2f}" for n in cols)
                         + " |")
        top = ("request_headers", "request_body", "response_headers", "response_body", "done")
        lines.append("| **all callbacks** | " + " | ".join(
            f"**{sum(spans[n][k] for k in top):.2f}**" for n in cols) + " |")
        lines.append("| requests/s of the timed run | " + " | ".join(
            f"{spans[n]['rps']:,.0f}" for n in cols) + " |")
    if lat:
        lines += ["", f"tools/call at a fixed {RATE:,} requests/s (`bench-tool load`, open-loop, "
                  f"{LOAD_CONNECTIONS} connections, latency from the scheduled send time; "
                  f"median of {ROUNDS} rounds):", "",
                  "| chain | p50 ms | p90 ms | p99 ms | p99.9 ms |", "|---|---:|---:|---:|---:|"]
        for name in LATENCY:
            runs = lat.get(name) or []
            if runs:
                lines.append(f"| {LABELS[name]} | " + " | ".join(
                    f"{median([r[k] for r in runs]):.3f}"
                    for k in ("p50_ms", "p90_ms", "p99_ms", "p999_ms")) + " |")
    if mic:
        lines += ["", f"Token verification, the filter's `jwt::verify` ({MICRO_TOKENS - 100} fresh "
                  "tokens per algorithm after 100 of warm-up; µs per token):", "",
                  "| algorithm | V8 (wasm32-wasip1, Node WASI) mean | median | native mean | median |",
                  "|---|---:|---:|---:|---:|"]
        for alg in ("RS256", "ES256", "EdDSA"):
            v, n = mic["v8"][alg], mic["native"][alg]
            lines.append(f"| {alg} | {v['mean_us']:.0f} | {v['median_us']:.0f} | "
                         f"{n['mean_us']:.0f} | {n['median_us']:.0f} |")
        for alg in ("RS256", "ES256", "EdDSA"):
            first, key = f"keys_first_{alg}", f"keys_{alg}"
            if all(k in mic[r] for k in (first, key) for r in ("v8", "native")):
                v, n = mic["v8"], mic["native"]
                lines.append(f"| {alg} key set of one key read (the VM's first / each next) | "
                             f"{v[first]['mean_us']:.0f} / {v[key]['mean_us']:.0f} | "
                             f"{v[key]['median_us']:.0f} | "
                             f"{n[first]['mean_us']:.0f} / {n[key]['mean_us']:.0f} | "
                             f"{n[key]['median_us']:.0f} |")
        if "warm" in mic["v8"] and "warm" in mic["native"]:
            v, n = mic["v8"]["warm"], mic["native"]["warm"]
            lines.append(f"| warm decision: `engine::decide` on a cached token, the guide's "
                         f"policy | {v['mean_us']:.2f} | {v['median_us']:.2f} | "
                         f"{n['mean_us']:.2f} | {n['median_us']:.2f} |")
        for alg, what in (
                ("list_plain", "`tools/list`, guide's rule only: the answer passes unread"),
                ("list_filtered", "`tools/list` with the per-tool rule: read, 10 of 100 tools cut"),
                ("list_sse_filtered", "the same answer as one SSE event"),
                ("list_changing", "`tools/list` answers that change every time (nothing recalled), JSON"),
                ("call", "`tools/call` allowed, the guide's and the per-tool rule")):
            if alg in mic["v8"] and alg in mic["native"]:
                v, n = mic["v8"][alg], mic["native"][alg]
                lines.append(f"| a whole exchange through the lifecycle: {what} "
                             f"| {v['mean_us']:.1f} | {v['median_us']:.1f} | "
                             f"{n['mean_us']:.1f} | {n['median_us']:.1f} |")
    if mem:
        lines += ["", f"Memory (our filter, `tokenCacheSize` default; requests closed-loop over "
                  f"{WRK_CONNECTIONS} connections, each of the {mem['distinct']:,} tokens once per "
                  f"{mem['distinct']:,} requests, so every request misses the cache"
                  + ("" if mem["full"] else "; reduced (`BENCH_MEMORY=reduced`)")
                  + "):", "", "| after requests | `mcp_auth.memory_bytes` | Envoy RSS | req/s |",
                  "|---:|---:|---:|---:|"]
        for p in mem["points"]:
            g = f"{p['gauge'] / MIB:.2f} MiB" if p["gauge"] is not None else "n/a"
            rss = f"{p['rss'] / MIB:.1f} MiB" if p["rss"] else "n/a"
            lines.append(f"| {p['requests']:,} | {g} | {rss} | {p['rps']:,.0f} |")
    if notes:
        lines += ["", "Notes:"] + [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n", targets, now, info


def readme_block(targets, now, info):
    lines = ["<!-- bench:latest -->",
             f"Latest `make bench`: {now}, commit {info['commit']}, {SECONDS} s × {ROUNDS} "
             "rounds per measurement "
             "([bench/RESULTS.md](bench/RESULTS.md) has every number and how it was measured).",
             "", "| target | measured | goal | |", "|---|---:|---|---|"]
    lines += [f"| {n} | {m} | {g} | **{v}** |" for n, m, g, v in targets]
    lines.append("<!-- /bench:latest -->")
    return "\n".join(lines)


def write_readme(block):
    with open(README) as f:
        text = f.read()
    start, end = "<!-- bench:latest -->", "<!-- /bench:latest -->"
    i, j = text.find(start), text.find(end)
    if i < 0 or j < i:
        log("README.md has no bench:latest block: not updated")
        return
    with open(README, "w") as f:
        f.write(text[:i] + block + text[j + len(end):])
    log("README.md's bench:latest block rewritten")


def main():
    # A stop (timeout, kill) unwinds like an error, so every Envoy started here is stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    ensure_tools()
    build()
    os.makedirs(WORK, exist_ok=True)
    load_start = os.getloadavg()[0]
    module_size = os.path.getsize(FILTER_WASM)

    run([TOOL, "keys", WORK])
    with open(os.path.join(WORK, "jwks.json")) as f:
        jwks = f.read().strip()
    warm_file = os.path.join(WORK, "warm-tokens.txt")
    mint(WARM_TOKENS, warm_file)
    with open(warm_file) as f:
        token = f.readline().strip()

    measurements = [m for m in MEASUREMENTS if selected(m[0])]
    lat_measurements = [m for m in MEASUREMENTS if m[0] in LATENCY] if selected("latency") else []
    run_memory = MEMORY not in ("0", "skip") and selected("memory")
    need_cold = any(m[0] == "cold" for m in measurements) or run_memory
    cold = ColdTokens(os.path.join(WORK, "cold-tokens.txt"),
                      max(20_000, int(COLD_RPS * (SECONDS + WARMUP) * 1.2)) if need_cold else 1)

    notes = []
    mic = micro() if selected("micro") else None
    upstream = Envoy("upstream", upstream_bootstrap(), UPSTREAM_CONCURRENCY)
    try:
        rendered = render_gateway(jwks, upstream.addr)
        boots = {k: with_chain(rendered, c) for k, c in chains(rendered, jwks).items()}
        tp = throughput(measurements, boots, warm_file, cold, token, notes)
        lat = latency(lat_measurements, boots, warm_file, token, notes)
        mem = memory(boots, cold, token, notes) if run_memory else None
        spans = timing(boots, warm_file, token) if selected("timing") else None
    finally:
        upstream.stop()
    load_end = os.getloadavg()[0]

    text, targets, now, info = report(machine(), (load_start, load_end), tp, lat, mem, mic,
                                      module_size, notes, spans)
    print(text)
    for n, m, g, v in targets:
        log(f"{v}  {n}: {m} (goal {g})")
    if not ONLY:
        with open(os.path.join(BENCH, "RESULTS.md"), "w") as f:
            f.write(text)
        log("written to bench/RESULTS.md")
        write_readme(readme_block(targets, now, info))


if __name__ == "__main__":
    main()
