// Generates the fuzz crate's fixed key set (src/keys.json, public keys only) and seed tokens
// signed by those keys (corpus/jwt_verify/seed-*). Run once: `node fuzz/seeds.mjs`.
import { generateKeyPairSync, sign } from "node:crypto";
import { mkdirSync, writeFileSync } from "node:fs";

const dir = new URL(".", import.meta.url).pathname;
const b64 = (b) => Buffer.from(b).toString("base64url");
const keys = [];
const seeds = {};
const claims = { iss: "https://issuer.test", aud: "api://mcp", sub: "fuzz", exp: 2000000000, iat: 1700000000, nbf: 1700000000, scp: ["mcp.read"] };

function token(alg, kid, signer) {
  const head = b64(JSON.stringify({ alg, kid, typ: "JWT" }));
  const body = b64(JSON.stringify(claims));
  return `${head}.${body}.${b64(signer(Buffer.from(`${head}.${body}`)))}`;
}

{
  const { publicKey, privateKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
  keys.push({ ...publicKey.export({ format: "jwk" }), kid: "rsa", use: "sig" });
  seeds.rs256 = token("RS256", "rsa", (m) => sign("sha256", m, privateKey));
  seeds.ps256 = token("PS256", "rsa", (m) => sign("sha256", m, { key: privateKey, padding: 6, saltLength: 32 }));
}
{
  const { publicKey, privateKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
  keys.push({ ...publicKey.export({ format: "jwk" }), kid: "p256", alg: "ES256" });
  seeds.es256 = token("ES256", "p256", (m) => sign("sha256", m, { key: privateKey, dsaEncoding: "ieee-p1363" }));
}
{
  const { publicKey, privateKey } = generateKeyPairSync("ec", { namedCurve: "P-384" });
  keys.push({ ...publicKey.export({ format: "jwk" }), kid: "p384" });
  seeds.es384 = token("ES384", "p384", (m) => sign("sha384", m, { key: privateKey, dsaEncoding: "ieee-p1363" }));
}
{
  const { publicKey, privateKey } = generateKeyPairSync("ed25519");
  keys.push({ ...publicKey.export({ format: "jwk" }), kid: "ed" });
  seeds.eddsa = token("EdDSA", "ed", (m) => sign(null, m, privateKey));
}
writeFileSync(`${dir}src/keys.json`, JSON.stringify({ keys }, null, 1) + "\n");
mkdirSync(`${dir}corpus/jwt_verify`, { recursive: true });
for (const [name, t] of Object.entries(seeds)) writeFileSync(`${dir}corpus/jwt_verify/seed-${name}`, t);
