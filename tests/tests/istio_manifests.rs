//! The Istio manifests under `envoy/istio/`, read with the filter's own parser: every
//! `WasmPlugin`'s `pluginConfig`, turned into the JSON Istio hands the module, must be a
//! configuration the filter accepts, fetching its keys through the cluster the manifests'
//! `ServiceEntry` makes Istio build (`outbound|443||<host>`). Schema validation against Istio's
//! CRDs is the node test `tests/istio/validate.test.mjs`.
use std::path::PathBuf;

use mcp_auth_filter::policy::{FilterConfig, KeySource};
use serde::Deserialize as _;
use serde_json::Value;

fn istio_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../envoy/istio")
}

/// Every document of every YAML file under `envoy/istio`, as JSON, with its file name.
fn manifests() -> Vec<(String, Value)> {
    let mut files: Vec<_> = std::fs::read_dir(istio_dir())
        .expect("envoy/istio")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    let mut docs = Vec::new();
    for path in files {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&path).unwrap();
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let value = serde_yaml::Value::deserialize(doc)
                .unwrap_or_else(|e| panic!("{name}: not YAML: {e}"));
            if !value.is_null() {
                let json = serde_json::to_value(value)
                    .unwrap_or_else(|e| panic!("{name}: not JSON-compatible: {e}"));
                docs.push((name.clone(), json));
            }
        }
    }
    docs
}

fn of_kind(kind: &str) -> Vec<(String, Value)> {
    manifests()
        .into_iter()
        .filter(|(_, v)| v["kind"] == kind)
        .collect()
}

/// What Istio passes the module: `pluginConfig` as JSON (istiod's `protomarshal.ToJSON`).
fn plugin_config_json(plugin: &Value) -> Vec<u8> {
    let config = &plugin["spec"]["pluginConfig"];
    assert!(config.is_object(), "pluginConfig is not an object");
    serde_json::to_vec(config).unwrap()
}

#[test]
fn both_wasm_plugins_are_found() {
    let names: Vec<String> = of_kind("WasmPlugin").into_iter().map(|(f, _)| f).collect();
    assert_eq!(names, ["gateway-wasmplugin.yaml", "wasmplugin.yaml"]);
}

#[test]
fn every_plugin_config_is_a_policy_the_filter_accepts_with_keys_through_the_istio_cluster() {
    let plugins = of_kind("WasmPlugin");
    assert!(!plugins.is_empty());
    for (file, plugin) in plugins {
        let config = FilterConfig::parse(&plugin_config_json(&plugin))
            .unwrap_or_else(|e| panic!("{file}: the filter rejects pluginConfig: {e}"));
        let policy = config.default.as_ref().expect("one policy for every route");
        let authn = policy.authn.as_ref().expect("mcpAuthentication");
        let KeySource::Remote(remote) = &authn.keys else {
            panic!("{file}: keys are not fetched");
        };
        let host = "your-org.okta.com";
        assert_eq!(remote.location.cluster, format!("outbound|443||{host}"));
        assert_eq!(remote.location.authority, host);
        assert_eq!(remote.location.path, "/oauth2/default/v1/keys");
        assert_eq!(
            authn.expect.issuer,
            format!("https://{host}/oauth2/default")
        );
        assert_eq!(policy.rules.len(), 1, "{file}: the guide's group rule");

        // The cluster the policy names is the one the ServiceEntry in the same namespace
        // makes Istio build: `outbound|<port>|<subset>|<host>`.
        let ns = &plugin["metadata"]["namespace"];
        let built: Vec<String> = of_kind("ServiceEntry")
            .iter()
            .filter(|(_, se)| &se["metadata"]["namespace"] == ns)
            .flat_map(|(_, se)| {
                let hosts = se["spec"]["hosts"].as_array().unwrap().clone();
                let ports = se["spec"]["ports"].as_array().unwrap().clone();
                hosts.into_iter().flat_map(move |h| {
                    ports
                        .clone()
                        .into_iter()
                        .map(move |p| format!("outbound|{}||{}", p["number"], h.as_str().unwrap()))
                })
            })
            .collect();
        assert!(
            built.contains(&remote.location.cluster),
            "{file}: {} is not among the clusters the ServiceEntries build: {built:?}",
            remote.location.cluster
        );
    }
}

#[test]
fn a_broken_plugin_config_is_rejected() {
    let (_, plugin) = of_kind("WasmPlugin").remove(0);
    type Breakage = (&'static str, fn(&mut Value));
    let breakages: [Breakage; 4] = [
        ("no issuer", |c| {
            c["policies"]["mcpAuthentication"]
                .as_object_mut()
                .unwrap()
                .remove("issuer");
        }),
        ("a CEL rule that does not parse", |c| {
            c["policies"]["authorization"]["rules"][0]["if"] = Value::from("auth.claims.groups ((");
        }),
        ("an unknown mode", |c| {
            c["policies"]["mcpAuthentication"]["mode"] = Value::from("lenient");
        }),
        ("a misspelt field", |c| {
            let authn = c["policies"]["mcpAuthentication"].as_object_mut().unwrap();
            let jwks = authn.remove("jwks").unwrap();
            authn.insert("jwsk".into(), jwks);
        }),
    ];
    assert!(FilterConfig::parse(&plugin_config_json(&plugin)).is_ok());
    for (what, breakage) in breakages {
        let mut broken = plugin.clone();
        breakage(&mut broken["spec"]["pluginConfig"]);
        assert!(
            FilterConfig::parse(&plugin_config_json(&broken)).is_err(),
            "pluginConfig with {what} was accepted"
        );
    }
}
