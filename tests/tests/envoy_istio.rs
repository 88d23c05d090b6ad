//! The filter as Istio runs it, in a real Envoy 1.40: the HTTP filter istiod renders for
//! `envoy/istio/wasmplugin.yaml`, with the manifest's own `pluginConfig`, and the JWKS cluster
//! named as Istio names the ServiceEntry's (`outbound|443||your-org.okta.com`). Valid, missing
//! and wrong-group tokens must behave as in plain Envoy (`envoy_e2e.rs`).
//!
//! Needs `envoy/install-envoy.sh` and `cargo build -p host-shim` first (`make test` does both);
//! `MCP_AUTH_SKIP_ENVOY=1` skips, loudly.
//!
//! What istiod renders (pilot/pkg/model/extensions.go, `buildPluginConfig`), and how it is
//! reproduced here:
//! - the filter's `config.name` is `<namespace>.<name>`, `root_id` the plugin's `pluginName`
//!   (empty here), and the HTTP filter is named `extensions.istio.io/wasmplugin/<ns>.<name>`;
//! - `configuration` is `pluginConfig` marshalled to JSON, in a `google.protobuf.StringValue`
//!   wrapped in `Any`. (Not a `google.protobuf.Struct`: Envoy hands the module a `StringValue`'s
//!   or `BytesValue`'s content, and any other message as its protobuf encoding, which no JSON
//!   parser reads.);
//! - `vm_config`: runtime `envoy.wasm.runtime.v8`, no `vm_id`, the `ISTIO_META_WASM_*`
//!   environment variables, and `code` a remote `oci://` source that istio-agent replaces with
//!   the local file it fetched — here `code.local` is that file;
//! - `failStrategy: FAIL_CLOSE` becomes `failure_policy: FAIL_CLOSED` (Istio ≥ 1.25);
//! - istiod delivers the filter over ECDS; here it is inline, which the module cannot tell
//!   apart;
//! - the cluster: in the mesh, DNS for `your-org.okta.com:443` with the DestinationRule's TLS;
//!   here the local issuer over plain HTTP on loopback, under the same name, which is all the
//!   filter sees.
mod envoy_support;

use envoy_support::{AI_USER, Issuer, Options, PLAIN_USER, Stack, Upstream};
use serde::Deserialize as _;
use serde_json::{Value, json};

const OKTA: &str = "your-org.okta.com";
const CLUSTER: &str = "outbound|443||your-org.okta.com";

/// `envoy/istio/wasmplugin.yaml`, as JSON.
fn wasm_plugin() -> Value {
    let path = envoy_support::repo_root().join("envoy/istio/wasmplugin.yaml");
    let text = std::fs::read_to_string(&path).expect("envoy/istio/wasmplugin.yaml");
    let yaml = serde_yaml::Value::deserialize(serde_yaml::Deserializer::from_str(&text))
        .expect("WasmPlugin YAML");
    serde_json::to_value(yaml).expect("as JSON")
}

/// The manifest's `pluginConfig` with the Okta org's URLs pointed at the local issuer. The JWKS
/// cluster is left exactly as the manifest names it.
fn plugin_config(issuer: &Issuer) -> Value {
    let text = serde_json::to_string(&wasm_plugin()["spec"]["pluginConfig"]).unwrap();
    let local = text.replace(&format!("https://{OKTA}"), &issuer.base);
    assert_ne!(local, text, "the pluginConfig names https://{OKTA}");
    let config: Value = serde_json::from_str(&local).unwrap();
    let jwks = &config["policies"]["mcpAuthentication"]["jwks"];
    assert_eq!(jwks["cluster"], CLUSTER, "the manifest's cluster name");
    config
}

/// The listener and clusters, with the wasm filter as istiod renders the WasmPlugin.
fn istio_bootstrap(issuer: &Issuer, upstream: &Upstream, wasm: &str) -> String {
    let plugin = wasm_plugin();
    let (ns, name) = (
        plugin["metadata"]["namespace"].as_str().unwrap(),
        plugin["metadata"]["name"].as_str().unwrap(),
    );
    let spec = &plugin["spec"];
    assert_eq!(spec["failStrategy"], "FAIL_CLOSE");
    assert_eq!(spec["phase"], "AUTHN");
    // istiod: protomarshal.ToJSON(pluginConfig) in a StringValue.
    let configuration = serde_json::to_string(&plugin_config(issuer)).unwrap();
    let wasm_filter = json!({
        "name": format!("extensions.istio.io/wasmplugin/{ns}.{name}"),
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": {
                "name": format!("{ns}.{name}"),
                "configuration": {
                    "@type": "type.googleapis.com/google.protobuf.StringValue",
                    "value": configuration,
                },
                "vm_config": {
                    "runtime": "envoy.wasm.runtime.v8",
                    "code": { "local": { "filename": wasm } },
                    "environment_variables": {
                        "key_values": {
                            "ISTIO_META_WASM_IMAGE_PULL_POLICY": spec["imagePullPolicy"],
                            "ISTIO_META_WASM_PLUGIN_RESOURCE_VERSION": "1",
                        }
                    },
                },
                "failure_policy": "FAIL_CLOSED",
            }
        }
    });
    let static_cluster = |name: &str, port: u16| {
        json!({
            "name": name,
            "type": "STATIC",
            "connect_timeout": "2s",
            "load_assignment": {
                "cluster_name": name,
                "endpoints": [{ "lb_endpoints": [{ "endpoint": { "address": {
                    "socket_address": { "address": "127.0.0.1", "port_value": port }
                } } }] }],
            },
        })
    };
    let bootstrap = json!({
        "admin": { "address": { "socket_address": { "address": "127.0.0.1", "port_value": 0 } } },
        "static_resources": {
            "listeners": [{
                "name": "virtualInbound",
                "address": { "socket_address": { "address": "127.0.0.1", "port_value": 0 } },
                "filter_chains": [{ "filters": [{
                    "name": "envoy.filters.network.http_connection_manager",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                        "stat_prefix": "inbound_0.0.0.0_3000",
                        "route_config": {
                            "name": "inbound|3000||",
                            "virtual_hosts": [{
                                "name": "inbound|http|3000",
                                "domains": ["*"],
                                "routes": [{
                                    "match": { "prefix": "/" },
                                    "route": { "cluster": "inbound|3000||", "timeout": "0s" },
                                }],
                            }],
                        },
                        "http_filters": [
                            wasm_filter,
                            {
                                "name": "envoy.filters.http.router",
                                "typed_config": {
                                    "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
                                },
                            },
                        ],
                    },
                }] }],
            }],
            "clusters": [
                static_cluster("inbound|3000||", upstream.port),
                static_cluster(CLUSTER, issuer.port),
            ],
        },
    });
    serde_json::to_string_pretty(&bootstrap).unwrap()
}

fn start() -> Option<Stack> {
    Stack::start_with_bootstrap(Options::default(), istio_bootstrap)
}

#[test]
fn the_istio_rendered_plugin_config_is_json_the_filter_accepts() {
    // Cheap, and says which half broke when the Envoy test below fails.
    let json = serde_json::to_vec(&wasm_plugin()["spec"]["pluginConfig"]).unwrap();
    mcp_auth_filter::policy::FilterConfig::parse(&json).expect("pluginConfig as JSON");
}

/// One Envoy for the three cases (each start compiles the module with V8): a valid token, no
/// token, a token outside the group, as `envoy_e2e.rs` checks them in plain Envoy.
#[test]
fn valid_missing_and_wrong_group_tokens_behave_as_in_plain_envoy() {
    let Some(stack) = start() else {
        return;
    };

    // No token: 401 pointing at the protected-resource metadata, nothing forwarded.
    let reply = stack.request("/mcp", None);
    stack.assert_challenge(&reply);

    // An AI-Users member: 200, the token stripped, the keys fetched through the cluster named
    // as Istio names it.
    let token = stack.issuer.token(AI_USER.0, AI_USER.1);
    let reply = stack.request("/mcp", Some(&token));
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.json()["path"], "/mcp");
    let seen = stack.upstream.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].header("authorization"), None, "token stripped");
    assert!(stack.issuer.keys_requests() >= 1, "keys from the issuer");
    let through = stack
        .envoy
        .stat(&format!("cluster.{CLUSTER}.upstream_rq_completed"))
        .unwrap_or(0);
    assert!(
        through >= 1,
        "no request went through {CLUSTER}: {:?}",
        stack.envoy.stats_matching("upstream_rq_completed")
    );

    // Outside AI-Users: 403, nothing more forwarded.
    let token = stack.issuer.token(PLAIN_USER.0, PLAIN_USER.1);
    let reply = stack.request("/mcp", Some(&token));
    assert_eq!(reply.status, 403, "{reply:?}");
    assert_eq!(stack.upstream.seen().len(), 1);
}
