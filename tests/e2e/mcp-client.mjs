// A real MCP client for the end-to-end tests: the official TypeScript SDK over Streamable HTTP,
// with the bearer token the way an application passes it. It runs a list of steps given as JSON
// and prints one JSON line per step, so the Rust tests drive it and check each answer.
//
//   node tests/e2e/mcp-client.mjs <url> <token or -> '<steps>'
//
// Steps: "connect", "listTools", "listPrompts", "listResources", "sessionId", "close",
// {"call": [name, args]}, {"read": uri}, {"getPrompt": [name, args]},
// {"waitLine": true} (blocks until a line arrives on stdin: the test acts in between).
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { createInterface } from "node:readline";

const [url, token, stepsJson] = process.argv.slice(2);
const steps = JSON.parse(stepsJson);
const headers = token && token !== "-" ? { Authorization: `Bearer ${token}` } : {};
const transport = new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers } });
const client = new Client({ name: "mcp-auth-filter-e2e", version: "1.0.0" });
const stdin = createInterface({ input: process.stdin });
const lines = stdin[Symbol.asyncIterator]();

function out(step, value) {
  process.stdout.write(JSON.stringify({ step, ...value }) + "\n");
}

function failure(e) {
  return { error: { code: e?.code ?? null, message: String(e?.message ?? e) } };
}

for (const step of steps) {
  const name = typeof step === "string" ? step : Object.keys(step)[0];
  try {
    switch (name) {
      case "connect":
        await client.connect(transport);
        out(name, { ok: true, protocolVersion: transport.protocolVersion ?? null });
        break;
      case "sessionId":
        out(name, { sessionId: transport.sessionId ?? null });
        break;
      case "listTools":
        out(name, { tools: (await client.listTools()).tools.map((t) => t.name) });
        break;
      case "listPrompts":
        out(name, { prompts: (await client.listPrompts()).prompts.map((p) => p.name) });
        break;
      case "listResources":
        out(name, { resources: (await client.listResources()).resources.map((r) => r.uri) });
        break;
      case "call": {
        const [tool, args] = step.call;
        const result = await client.callTool({ name: tool, arguments: args ?? {} });
        out(name, { result });
        break;
      }
      case "read":
        out(name, { result: await client.readResource({ uri: step.read }) });
        break;
      case "getPrompt": {
        const [prompt, args] = step.getPrompt;
        out(name, { result: await client.getPrompt({ name: prompt, arguments: args ?? {} }) });
        break;
      }
      case "waitLine":
        out(name, { waiting: true });
        await lines.next();
        break;
      case "close":
        await transport.terminateSession().catch(() => {});
        await client.close();
        out(name, { ok: true });
        break;
      default:
        out(name, { error: { code: null, message: `unknown step ${name}` } });
    }
  } catch (e) {
    out(name, failure(e));
    if (name === "connect") break;
  }
}
stdin.close();
process.exit(0);
