// A person logging in through the gateway with the official MCP TypeScript SDK's OAuth client:
// an OAuthClientProvider that keeps what the SDK hands it in memory and, where a desktop client
// would open a browser, fetches the authorization URL, posts the login form as the person and
// reads the code from the redirect (plain HTTP, no browser). Everything else (discovery,
// registration, PKCE, the token exchange, refresh on a 401) is the SDK's own. It runs a list of
// steps and prints one JSON line per step, like mcp-client.mjs.
//
//   node tests/e2e/oauth-client.mjs <url> <username> <password> '<steps>'
//
// Steps: "connect" (signs in when the gateway asks), "listTools", {"call": [name, args]},
// {"sleep": seconds}, "token" (the current access token's claims and the count of logins and
// token grants so far), "close".
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { UnauthorizedError } from "@modelcontextprotocol/sdk/client/auth.js";

const [url, username, password, stepsJson] = process.argv.slice(2);
const steps = JSON.parse(stepsJson);
const REDIRECT = "http://127.0.0.1:53683/callback";

function out(step, value) {
  process.stdout.write(JSON.stringify({ step, ...value }) + "\n");
}

/// The hidden request field and the form's action, from the login page.
function form(page) {
  const id = /name="request_id" value="([^"]+)"/.exec(page);
  const action = /<form method="post" action="([^"]+)"/.exec(page);
  if (!id || !action) throw new Error(`no login form in: ${page.slice(0, 300)}`);
  return { requestId: id[1], action: action[1].replaceAll("&amp;", "&") };
}

class PersonProvider {
  constructor() {
    this.info = undefined;
    this.saved = undefined;
    this.verifier = undefined;
    this.code = undefined;
    this.logins = 0;
    this.grants = 0;
  }
  get redirectUrl() {
    return REDIRECT;
  }
  get clientMetadata() {
    return {
      client_name: "oauth-e2e (TypeScript SDK)",
      redirect_uris: [REDIRECT],
      grant_types: ["authorization_code", "refresh_token"],
      response_types: ["code"],
      token_endpoint_auth_method: "none",
      // Used when neither the challenge nor the resource's metadata names scopes.
      scope: "agentgateway offline_access",
    };
  }
  clientInformation() {
    return this.info;
  }
  saveClientInformation(info) {
    this.info = info;
  }
  tokens() {
    return this.saved;
  }
  saveTokens(tokens) {
    this.grants += 1;
    this.saved = tokens;
  }
  saveCodeVerifier(verifier) {
    this.verifier = verifier;
  }
  codeVerifier() {
    return this.verifier;
  }
  // Where a desktop client opens the browser: the person signs in on the issuer's page.
  async redirectToAuthorization(authorizationUrl) {
    this.logins += 1;
    const page = await fetch(authorizationUrl, { redirect: "manual" });
    const html = await page.text();
    if (page.status !== 200) throw new Error(`login page: ${page.status} ${html.slice(0, 300)}`);
    const { requestId, action } = form(html);
    const signedIn = await fetch(action, {
      method: "POST",
      redirect: "manual",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({ request_id: requestId, username, password, action: "login" }),
    });
    const location = signedIn.headers.get("location");
    if (!location) throw new Error(`sign-in: ${signedIn.status} ${(await signedIn.text()).slice(0, 300)}`);
    const back = new URL(location);
    if (back.searchParams.get("error")) throw new Error(`sign-in refused: ${location}`);
    this.code = back.searchParams.get("code");
  }
}

function claims(token) {
  const [, payload] = token.split(".");
  return JSON.parse(Buffer.from(payload, "base64url").toString());
}

const provider = new PersonProvider();
let transport;
let client;

async function connect() {
  transport = new StreamableHTTPClientTransport(new URL(url), { authProvider: provider });
  client = new Client({ name: "oauth-e2e", version: "1.0.0" });
  try {
    await client.connect(transport);
    return;
  } catch (e) {
    if (!(e instanceof UnauthorizedError) || !provider.code) throw e;
  }
  // The person signed in: the SDK redeems the code, then the client connects with the token.
  await transport.finishAuth(provider.code);
  transport = new StreamableHTTPClientTransport(new URL(url), { authProvider: provider });
  client = new Client({ name: "oauth-e2e", version: "1.0.0" });
  await client.connect(transport);
}

for (const step of steps) {
  const name = typeof step === "string" ? step : Object.keys(step)[0];
  try {
    switch (name) {
      case "connect":
        await connect();
        out(name, { ok: true, clientId: provider.info?.client_id ?? null });
        break;
      case "listTools":
        out(name, { tools: (await client.listTools()).tools.map((t) => t.name) });
        break;
      case "call": {
        const [tool, args] = step.call;
        out(name, { result: await client.callTool({ name: tool, arguments: args ?? {} }) });
        break;
      }
      case "sleep":
        await new Promise((resolve) => setTimeout(resolve, step.sleep * 1000));
        out(name, { ok: true });
        break;
      case "token":
        out(name, {
          claims: provider.saved ? claims(provider.saved.access_token) : null,
          refreshToken: Boolean(provider.saved?.refresh_token),
          logins: provider.logins,
          grants: provider.grants,
        });
        break;
      case "close":
        await transport.terminateSession().catch(() => {});
        await client.close();
        out(name, { ok: true });
        break;
      default:
        out(name, { error: { message: `unknown step ${name}` } });
    }
  } catch (e) {
    out(name, { error: { code: e?.code ?? null, message: String(e?.message ?? e) } });
    if (name === "connect") break;
  }
}
