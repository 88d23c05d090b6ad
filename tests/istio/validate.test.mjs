// Validates every manifest under envoy/istio against Istio's CRD schemas, through the model
// classes `@kubernetes-models/istio` generates from Istio's CRDs (pinned in package.json).
// `validate()` throws on a schema violation; the tests at the bottom prove it does, on
// deliberately broken copies, so this file cannot pass by validating nothing.
//
// The CRD schemas do not reject unknown fields (the API server prunes them), so the fields the
// setup depends on are also checked by value. That the pluginConfig is a policy the filter
// accepts is checked in Rust (tests/tests/istio_manifests.rs, with the filter's own parser).
//
//   node --test tests/istio/

import { test } from "node:test";
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

import { parseAllDocuments } from "yaml";
import { WasmPlugin } from "@kubernetes-models/istio/extensions.istio.io/v1alpha1/WasmPlugin";
import { ServiceEntry } from "@kubernetes-models/istio/networking.istio.io/v1/ServiceEntry";
import { DestinationRule } from "@kubernetes-models/istio/networking.istio.io/v1/DestinationRule";

const ISTIO_DIR = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "envoy", "istio");

const MODELS = {
  "extensions.istio.io/v1alpha1 WasmPlugin": WasmPlugin,
  "networking.istio.io/v1 ServiceEntry": ServiceEntry,
  "networking.istio.io/v1 DestinationRule": DestinationRule,
};

/** Every YAML document under envoy/istio, with the file it came from. */
function manifests() {
  const files = readdirSync(ISTIO_DIR).filter((f) => /\.ya?ml$/.test(f)).sort();
  const docs = [];
  for (const file of files) {
    for (const doc of parseAllDocuments(readFileSync(join(ISTIO_DIR, file), "utf8"))) {
      assert.equal(doc.errors.length, 0, `${file}: ${doc.errors.join("; ")}`);
      const value = doc.toJS();
      if (value !== null) docs.push({ file, value });
    }
  }
  return docs;
}

/** Validates one object against its kind's CRD schema; throws on an unknown kind too. */
function validate(value) {
  const key = `${value.apiVersion} ${value.kind}`;
  const Model = MODELS[key];
  if (!Model) throw new Error(`no model for ${key}: add it to MODELS`);
  new Model(value).validate();
}

const clone = (v) => structuredClone(v);
const ofKind = (kind) => manifests().filter((d) => d.value.kind === kind);

test("envoy/istio holds the sidecar and gateway WasmPlugins, ServiceEntries and DestinationRules", () => {
  const files = new Set(manifests().map((d) => `${d.file} ${d.value.kind}`));
  for (const expected of [
    "wasmplugin.yaml WasmPlugin",
    "okta-egress.yaml ServiceEntry",
    "okta-egress.yaml DestinationRule",
    "gateway-wasmplugin.yaml WasmPlugin",
    "gateway-okta-egress.yaml ServiceEntry",
    "gateway-okta-egress.yaml DestinationRule",
  ]) {
    assert.ok(files.has(expected), `missing ${expected}; found ${[...files].join(", ")}`);
  }
});

test("every manifest validates against Istio's CRD schema", () => {
  const docs = manifests();
  assert.ok(docs.length >= 6, `only ${docs.length} documents`);
  for (const { file, value } of docs) {
    assert.doesNotThrow(() => validate(value), `${file} ${value.kind} ${value.metadata?.name}`);
  }
});

test("the WasmPlugins authenticate, fail closed and fetch keys through the ServiceEntry's cluster", () => {
  const plugins = ofKind("WasmPlugin");
  assert.equal(plugins.length, 2);
  for (const { file, value } of plugins) {
    const spec = value.spec;
    assert.equal(spec.phase, "AUTHN", file);
    assert.equal(spec.failStrategy, "FAIL_CLOSE", file);
    assert.match(spec.url, /^oci:\/\//, file);
    assert.ok(spec.selector?.matchLabels || spec.targetRefs, `${file}: selector or targetRefs`);
    const authn = spec.pluginConfig.policies.mcpAuthentication;
    const host = new URL(authn.jwks.url).hostname;
    assert.equal(authn.jwks.cluster, `outbound|443||${host}`, file);
    assert.equal(authn.issuer, `https://${host}/oauth2/default`, file);

    // The cluster exists only if a ServiceEntry in the plugin's namespace declares the host on
    // 443, and speaks TLS only if a DestinationRule there originates it with the right SNI.
    const ns = value.metadata.namespace;
    const entries = ofKind("ServiceEntry").filter((d) => d.value.metadata.namespace === ns);
    assert.ok(
      entries.some(
        ({ value: se }) =>
          se.spec.hosts.includes(host) && se.spec.ports.some((p) => p.number === 443),
      ),
      `${file}: no ServiceEntry for ${host}:443 in ${ns}`,
    );
    const rules = ofKind("DestinationRule").filter((d) => d.value.metadata.namespace === ns);
    assert.ok(
      rules.some(({ value: dr }) =>
        dr.spec.host === host &&
        dr.spec.trafficPolicy.portLevelSettings.some(
          (s) => s.port.number === 443 && s.tls.mode === "SIMPLE" && s.tls.sni === host,
        ),
      ),
      `${file}: no DestinationRule originating TLS to ${host}:443 in ${ns}`,
    );
  }
  const sidecar = plugins.find((d) => d.file === "wasmplugin.yaml").value.spec;
  assert.deepEqual(sidecar.match, [{ mode: "SERVER", ports: [{ number: 3000 }] }]);
});

// The validator must be able to fail: each broken copy below must be rejected.
const BREAKAGES = [
  ["WasmPlugin", "an unknown phase", (m) => { m.spec.phase = "AUTHENTICATE"; }],
  ["WasmPlugin", "an unknown failStrategy", (m) => { m.spec.failStrategy = "FAIL_SOMETIMES"; }],
  ["WasmPlugin", "a port out of range", (m) => { m.spec.match = [{ ports: [{ number: 70000 }] }]; }],
  ["WasmPlugin", "pluginConfig that is not an object", (m) => { m.spec.pluginConfig = "policies: {}"; }],
  ["ServiceEntry", "no hosts", (m) => { delete m.spec.hosts; }],
  ["ServiceEntry", "a port without a number", (m) => { delete m.spec.ports[0].number; }],
  ["DestinationRule", "an unknown TLS mode", (m) => {
    m.spec.trafficPolicy.portLevelSettings[0].tls.mode = "SIMPLEST";
  }],
  ["DestinationRule", "no host", (m) => { delete m.spec.host; }],
];

for (const [kind, what, breakIt] of BREAKAGES) {
  test(`a ${kind} with ${what} is rejected`, () => {
    const [{ value }] = ofKind(kind);
    assert.doesNotThrow(() => validate(value), "the original must validate");
    const broken = clone(value);
    breakIt(broken);
    assert.throws(() => validate(broken), `${kind} with ${what} passed validation`);
  });
}

test("a kind without a model is an error, not a skip", () => {
  assert.throws(
    () => validate({ apiVersion: "networking.istio.io/v1", kind: "Nonsense", spec: {} }),
    /no model/,
  );
});
