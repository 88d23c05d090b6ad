//! Renders the Envoy bootstrap from the same Agent Gateway file the shim serves, so one file
//! describes the whole gateway: a listener per bind, a route per route (named as the filter
//! knows it, since a wasm filter has no per-route configuration and picks its policy by the
//! Envoy route name), the wasm filter carrying every route's policy, a cluster for the shim and
//! one per JWKS host (TLS with SNI, a CA and a SAN check for https).
//!
//! The bootstrap is hardened as a gateway facing untrusted clients should be: bounded headers,
//! buffers, streams and connections, paths normalised before routes (and the filter) see them,
//! timeouts that cut idle clients but not a quiet MCP event stream (the shim sends keep-alive
//! comments well within the stream idle timeout), and the filter holding request headers until
//! it has judged the body, so the shim never sees a request the filter would deny.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use mcp_auth_filter::location::Location;
use mcp_auth_filter::policy::{FilterConfig, KeySource};
use serde_json::{Value as Json, json};

use crate::address::Address;
use crate::config::{Config, PathMatch, RouteRef};

/// The header Envoy adds so the shim knows which route a request came through.
pub const ROUTE_HEADER: &str = "x-mcp-route";
/// The cluster that reaches `host-shim serve`.
pub const SHIM_CLUSTER: &str = "host-shim";
/// Where Debian and most distributions keep the system's trusted CAs.
pub const DEFAULT_CA_FILE: &str = "/etc/ssl/certs/ca-certificates.crt";
/// Idle streams and connections end after this long. An MCP event stream is never idle this
/// long: the shim sends a keep-alive comment every 15 s.
const IDLE_TIMEOUT: &str = "300s";
/// The route Envoy answers health checks on (`--health-path`): not in the filter's policies,
/// so it needs no token.
pub const HEALTH_ROUTE: &str = "health";
/// The access log line: the request, the status, the local reply's details, the filter's
/// decision and the route.
pub const ACCESS_LOG_FORMAT: &str = "[%START_TIME%] \"%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%\" %RESPONSE_CODE% %RESPONSE_CODE_DETAILS% mcp_auth=%FILTER_STATE(wasm.mcp_auth_decision:PLAIN)% route=%ROUTE_NAME% %DURATION%ms\n";
/// Open downstream connections across all listeners (Envoy's overload manager).
const MAX_CONNECTIONS: u64 = 10_000;

/// `host-shim envoy`: print the bootstrap for a configuration file.
#[derive(Debug, clap::Args)]
pub struct EnvoyArgs {
    /// The Agent Gateway configuration file.
    pub config: PathBuf,
    #[command(flatten)]
    pub gateway: GatewayFlags,
    /// Where `host-shim serve` listens: HOST:PORT or unix:/absolute/path. Repeat it for
    /// several shims: each MCP session then sticks to the shim that created it (Envoy's
    /// stateful_session with the envelope on `mcp-session-id`).
    #[arg(long, default_value = "127.0.0.1:3100")]
    pub shim: Vec<Address>,
    /// The path Envoy answers 200 on, without a token, for health checks ("" for none).
    #[arg(long, default_value = DEFAULT_HEALTH_PATH)]
    pub health_path: String,
    /// Write the bootstrap here instead of stdout.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
    /// Write the bootstrap as JSON instead of YAML (the same document; Envoy reads either),
    /// for tools that edit it without a YAML parser.
    #[arg(long)]
    pub json: bool,
}

/// The flags `host-shim envoy` and `host-shim up` share: what the rendered bootstrap loads and
/// where it listens, spelt the same way in both commands.
#[derive(Debug, Clone, clap::Args)]
pub struct GatewayFlags {
    /// The filter module.
    #[arg(long, default_value = DEFAULT_WASM)]
    pub wasm: PathBuf,
    /// The address the binds listen on (0.0.0.0 to serve other machines).
    #[arg(long, default_value = "127.0.0.1")]
    pub listen_address: String,
    /// Envoy's admin port (stats: /stats?filter=wasmcustom).
    #[arg(long, default_value_t = 9901)]
    pub admin_port: u16,
    /// The CAs that https JWKS endpoints are verified against.
    #[arg(long, default_value = DEFAULT_CA_FILE)]
    pub ca_file: PathBuf,
}

/// The default health path.
pub const DEFAULT_HEALTH_PATH: &str = "/healthz";

/// Where `make wasm` puts the module.
pub const DEFAULT_WASM: &str = "target/filter-wasm/wasm32-wasip1/release/mcp_auth_filter.wasm";

impl RenderOptions {
    /// Options for the shims at `shims`, with the module path made absolute for Envoy.
    pub fn new(gateway: &GatewayFlags, shims: Vec<Address>) -> anyhow::Result<RenderOptions> {
        let wasm = &gateway.wasm;
        let wasm = std::fs::canonicalize(wasm)
            .with_context(|| format!("the filter module {} (run `make wasm`)", wasm.display()))?;
        Ok(RenderOptions {
            health_path: Some(DEFAULT_HEALTH_PATH.to_string()),
            gateway: GatewayFlags {
                wasm,
                ..gateway.clone()
            },
            shims,
        })
    }
}

pub fn run(args: EnvoyArgs) -> anyhow::Result<()> {
    let config = Config::load(&args.config)?;
    let mut options = RenderOptions::new(&args.gateway, args.shim)?;
    options.health_path = Some(args.health_path).filter(|p| !p.is_empty());
    let mut text = render(&config, &options)?;
    if args.json {
        let doc: Json = serde_yaml::from_str(&text)?;
        text = serde_json::to_string_pretty(&doc)? + "\n";
    }
    match args.output {
        Some(path) => std::fs::write(&path, text).with_context(|| path.display().to_string())?,
        None => print!("{text}"),
    }
    Ok(())
}

/// What the bootstrap needs besides the configuration file.
#[derive(Debug, Clone)]
pub struct RenderOptions {
    /// The module, the listen address, the admin port and the CAs; the filter module's path is
    /// best absolute (Envoy resolves it from its own cwd).
    pub gateway: GatewayFlags,
    /// Where the `host-shim serve` replicas listen.
    pub shims: Vec<Address>,
    /// The path Envoy answers 200 on without a token (`None`: no health route).
    pub health_path: Option<String>,
}

/// The Envoy bootstrap for `config`, as YAML.
pub fn render(config: &Config, options: &RenderOptions) -> anyhow::Result<String> {
    let routes = config.routes();
    let mut policies = serde_json::Map::new();
    for route in &routes {
        if let Some(p) = &route.route.policies {
            // The target names let the filter split `<target>_<tool>` for `mcp.tool.target`.
            let targets: Vec<&str> = route.route.targets().map(|t| t.name.as_str()).collect();
            let mut p = serde_json::to_value(p)?;
            // The shim rejects a 2026-07-28 request whose Mcp-Method / Mcp-Name disagree with
            // its body, so the filter may judge such a call from those headers alone.
            if let Some(authz) = p.get_mut("authorization").and_then(Json::as_object_mut) {
                authz.entry("trustMcpHeaders").or_insert(Json::Bool(true));
            }
            policies.insert(
                route.name.clone(),
                json!({ "policies": p, "mcpTargets": targets }),
            );
        }
    }
    let policies = json!({ "routes": policies });
    // The filter's own parser: what would fail in Envoy fails here, with the path.
    let parsed = FilterConfig::parse(policies.to_string().as_bytes())
        .map_err(|e| anyhow::anyhow!("policy: {e}"))?;
    // Holding the headers needs the plugin's `allow_on_headers_stop_iteration`, which the
    // module cannot read: the two are turned on together, here.
    let mut filter_config = policies;
    if let Some(fields) = filter_config.as_object_mut() {
        fields.insert("holdHeaders".into(), Json::Bool(true));
    }

    let mut clusters = vec![static_cluster(SHIM_CLUSTER, &options.shims)];
    let mut jwks_clusters = BTreeMap::new();
    for policy in parsed.policies() {
        if let Some(KeySource::Remote(remote)) = policy.authn.as_ref().map(|a| &a.keys) {
            jwks_clusters
                .entry(remote.location.cluster.clone())
                .or_insert_with(|| remote.location.clone());
        }
    }
    for (name, location) in &jwks_clusters {
        clusters.push(jwks_cluster(name, location, &options.gateway.ca_file)?);
    }

    let mut by_port: BTreeMap<u16, Vec<&RouteRef<'_>>> = BTreeMap::new();
    for route in &routes {
        by_port.entry(route.port).or_default().push(route);
    }
    let mut listeners = Vec::new();
    for bind in &config.binds {
        let routes = by_port.get(&bind.port).cloned().unwrap_or_default();
        listeners.push(listener(bind.port, &routes, &filter_config, options));
    }
    let bootstrap = json!({
        "admin": {
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": options.gateway.admin_port}}
        },
        "static_resources": {"listeners": listeners, "clusters": clusters},
        "overload_manager": {"resource_monitors": [{
            "name": "envoy.resource_monitors.global_downstream_max_connections",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.resource_monitors.downstream_connections.v3.DownstreamConnectionsConfig",
                "max_active_downstream_connections": MAX_CONNECTIONS,
            }
        }]},
    });
    Ok(serde_yaml::to_string(&bootstrap)?)
}

fn listener(
    port: u16,
    routes: &[&RouteRef<'_>],
    filter_config: &Json,
    options: &RenderOptions,
) -> Json {
    // Agent Gateway's listeners of one bind share the port and differ by hostname: in Envoy
    // they are virtual hosts of one listener.
    let mut hosts: BTreeMap<Vec<String>, Vec<Json>> = BTreeMap::new();
    for route in routes {
        let domains = if !route.route.hostnames.is_empty() {
            route.route.hostnames.clone()
        } else if let Some(h) = &route.listener.hostname {
            vec![h.clone()]
        } else {
            vec!["*".to_string()]
        };
        hosts
            .entry(domains)
            .or_default()
            .extend(envoy_routes(route, options.shims.len() > 1));
    }
    // Most specific hosts first is Envoy's own rule; "*" matches what is left.
    let virtual_hosts: Vec<Json> = hosts
        .into_iter()
        .enumerate()
        .map(|(i, (domains, routes))| {
            let domains: Vec<String> = domains
                .iter()
                .flat_map(|d| {
                    if d == "*" {
                        vec![d.clone()]
                    } else {
                        vec![d.clone(), format!("{d}:*")]
                    }
                })
                .collect();
            let mut routes = routes;
            if let Some(path) = &options.health_path {
                // Answered by Envoy itself, before any route: no token, no shim.
                routes.insert(
                    0,
                    json!({
                        "name": HEALTH_ROUTE,
                        "match": {"path": path},
                        "direct_response": {"status": 200, "body": {"inline_string": "ok\n"}},
                    }),
                );
            }
            json!({"name": format!("bind{port}-host{i}"), "domains": domains, "routes": routes})
        })
        .collect();
    let mut filters = vec![wasm_filter(filter_config, options)];
    if options.shims.len() > 1 {
        filters.push(stateful_session());
    }
    filters.push(json!({
        "name": "envoy.filters.http.router",
        "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}
    }));
    json!({
        "name": format!("bind-{port}"),
        "address": {"socket_address": {"address": options.gateway.listen_address, "port_value": port}},
        // A second gateway on the same port must fail to start, not share the traffic.
        "enable_reuse_port": false,
        "per_connection_buffer_limit_bytes": 1024 * 1024,
        "filter_chains": [{"filters": [{
            "name": "envoy.filters.network.http_connection_manager",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                "stat_prefix": format!("bind_{port}"),
                "request_headers_timeout": "10s",
                // MCP keeps SSE streams open for a session's life; the shim's keep-alives keep
                // them from being idle.
                "stream_idle_timeout": IDLE_TIMEOUT,
                "common_http_protocol_options": {
                    "idle_timeout": IDLE_TIMEOUT,
                    "max_headers_count": 100,
                    // Some servers read `x_mcp_auth_identity` as `x-mcp-auth-identity`, which
                    // the filter strips from clients by its dashed name only.
                    "headers_with_underscores_action": "REJECT_REQUEST",
                },
                "max_request_headers_kb": 32,
                "http2_protocol_options": {"max_concurrent_streams": 100},
                // Routes and the filter judge the path the shim will see.
                "normalize_path": true,
                "merge_slashes": true,
                "path_with_escaped_slashes_action": "REJECT_REQUEST",
                "route_config": {"name": format!("bind-{port}"), "virtual_hosts": virtual_hosts},
                // One line per request, with the filter's decision (`allow`, `deny:<reason>`)
                // and the local reply's details (e.g. `mcp_auth_mcp_denied`).
                "access_log": [{
                    "name": "envoy.access_loggers.stderr",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StderrAccessLog",
                        "log_format": {"text_format_source": {"inline_string": ACCESS_LOG_FORMAT}},
                    },
                }],
                "http_filters": filters,
            }
        }]}],
    })
}

fn wasm_filter(filter_config: &Json, options: &RenderOptions) -> Json {
    json!({
        "name": "envoy.filters.http.wasm",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": {
                "name": "mcp_auth",
                "root_id": "mcp_auth",
                "configuration": {
                    "@type": "type.googleapis.com/google.protobuf.StringValue",
                    "value": filter_config.to_string(),
                },
                "vm_config": {
                    "vm_id": "mcp_auth",
                    "runtime": "envoy.wasm.runtime.v8",
                    "code": {"local": {"filename": options.gateway.wasm.display().to_string()}},
                },
                // A filter that cannot run must not let requests through.
                "fail_open": false,
                // Lets the filter hold the request headers until the body is judged.
                "allow_on_headers_stop_iteration": true,
            }
        }
    })
}

/// The Envoy routes of one configured route: one per `matches` entry (all named after the
/// route), plus the RFC 9728 metadata path of each, so the filter can answer it.
fn envoy_routes(route: &RouteRef<'_>, several_shims: bool) -> Vec<Json> {
    let mut matchers: Vec<Json> = Vec::new();
    let mut prefixes = Vec::new();
    if route.route.matches.is_empty() {
        matchers.push(json!({"prefix": "/"}));
    }
    for m in &route.route.matches {
        let Some(path) = &m.path else {
            matchers.push(json!({"prefix": "/"}));
            continue;
        };
        match path {
            PathMatch::Exact(exact) => {
                matchers.push(json!({"path": exact}));
                prefixes.push(exact.clone());
            }
            PathMatch::PathPrefix(prefix) => {
                matchers.push(json!({"prefix": prefix}));
                prefixes.push(prefix.clone());
            }
            PathMatch::Regex(regex) => matchers.push(json!({"safe_regex": {"regex": regex}})),
        }
    }
    let authenticated = route
        .route
        .policies
        .as_ref()
        .is_some_and(|p| p.get("mcpAuthentication").is_some());
    if authenticated {
        for prefix in prefixes {
            let path = prefix.trim_end_matches('/');
            matchers.push(json!({
                "path": format!("{}{path}", mcp_auth_filter::response::METADATA_PREFIX)
            }));
        }
    }
    matchers
        .into_iter()
        .map(|m| {
            let mut action = json!({"cluster": SHIM_CLUSTER, "timeout": "0s"});
            if several_shims && let Some(action) = action.as_object_mut() {
                // A shim that is gone refuses connections: a new session tries another one
                // (a request of an existing session is pinned by stateful_session and fails).
                action.insert("retry_policy".into(), json!({
                    "retry_on": "connect-failure,refused-stream",
                    "num_retries": 2,
                    "retry_host_predicate": [{
                        "name": "envoy.retry_host_predicates.previous_hosts",
                        "typed_config": {"@type": "type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate"}
                    }],
                    "host_selection_retry_max_attempts": 3,
                }));
            }
            json!({
                "name": route.name,
                "match": m,
                "route": action,
                "request_headers_to_add": [{
                    "header": {"key": ROUTE_HEADER, "value": route.name},
                    "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
                }],
            })
        })
        .collect()
}

fn static_cluster(name: &str, addrs: &[Address]) -> Json {
    let endpoints: Vec<Json> = addrs
        .iter()
        .map(|addr| {
            let address = match addr {
                Address::Tcp(addr) => json!({"socket_address": {
                    "address": addr.ip().to_string(), "port_value": addr.port()
                }}),
                Address::Unix(path) => json!({"pipe": {"path": path.display().to_string()}}),
            };
            json!({"endpoint": {"address": address}})
        })
        .collect();
    json!({
        "name": name,
        "type": "STATIC",
        "connect_timeout": "2s",
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": endpoints}]},
    })
}

/// An MCP session lives in one shim (its child holds the state): with several shims, Envoy
/// wraps the shim's address into `mcp-session-id` on the way out and routes by it on the way
/// in. Strict: a session whose shim is gone gets a 503, and the client re-initializes.
fn stateful_session() -> Json {
    json!({
        "name": "envoy.filters.http.stateful_session",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.stateful_session.v3.StatefulSession",
            "session_state": {
                "name": "envoy.http.stateful_session.envelope",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.http.stateful_session.envelope.v3.EnvelopeSessionState",
                    "header": {"name": "mcp-session-id"},
                }
            },
            "strict": true,
        }
    })
}

/// A cluster that reaches an issuer's keys: DNS for names, TLS that checks the certificate
/// against `ca_file` *and* the host name (a CA alone accepts any certificate it signed).
fn jwks_cluster(name: &str, location: &Location, ca_file: &Path) -> anyhow::Result<Json> {
    let https = location.url.starts_with("https://");
    let (host, port) = split_authority(&location.authority, if https { 443 } else { 80 })?;
    let literal = host
        .trim_matches(['[', ']'])
        .parse::<std::net::IpAddr>()
        .is_ok();
    let mut cluster = json!({
        "name": name,
        "type": if literal { "STATIC" } else { "STRICT_DNS" },
        "dns_lookup_family": "V4_PREFERRED",
        "connect_timeout": "5s",
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [{"endpoint": {
            "address": {"socket_address": {"address": host.trim_matches(['[', ']']), "port_value": port}}
        }}]}]},
    });
    if https && let Some(fields) = cluster.as_object_mut() {
        fields.insert("transport_socket".into(), json!({
            "name": "envoy.transport_sockets.tls",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
                "sni": host,
                "common_tls_context": {"validation_context": {
                    "trusted_ca": {"filename": ca_file.display().to_string()},
                    "match_typed_subject_alt_names": [{"san_type": "DNS", "matcher": {"exact": host}}],
                }},
            }
        }));
    }
    Ok(cluster)
}

fn split_authority(authority: &str, default_port: u16) -> anyhow::Result<(String, u16)> {
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !p.contains(']') => (h, p.parse().context("port")?),
        _ => (authority, default_port),
    };
    if host.is_empty() {
        bail!("no host in {authority:?}");
    }
    Ok((host.to_string(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> RenderOptions {
        RenderOptions {
            health_path: None,
            gateway: GatewayFlags {
                wasm: "/abs/filter.wasm".into(),
                listen_address: "127.0.0.1".into(),
                admin_port: 9901,
                ca_file: DEFAULT_CA_FILE.into(),
            },
            shims: vec![Address::Tcp("127.0.0.1:3100".parse().unwrap())],
        }
    }

    const GUIDE: &str = include_str!("../../examples/okta.yaml");

    /// `envoy/*.yaml` are this renderer's output for the examples, with the default flags and
    /// the module path as `make wasm` leaves it (relative: run Envoy from the repository
    /// root). `make envoy-examples` rewrites them (this test, with `UPDATE_ENVOY_EXAMPLES=1`).
    #[test]
    fn the_envoy_examples_are_what_the_renderer_makes() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let examples = [
            (
                "examples/okta-local.yaml",
                "envoy/envoy-local.yaml",
                "the local issuer (`host-shim issuer`, port 9000) standing in for an Okta org",
            ),
            (
                "examples/okta.yaml",
                "envoy/envoy-okta-https.yaml",
                "a real Okta org, its keys fetched over verified TLS (replace `your-org.okta.com`)",
            ),
        ];
        for (example, bootstrap, what) in examples {
            let config = Config::load(&root.join(example)).unwrap();
            let mut options = RenderOptions {
                health_path: Some(DEFAULT_HEALTH_PATH.to_string()),
                ..options()
            };
            options.gateway.wasm = DEFAULT_WASM.into();
            let rendered = format!(
                "# Envoy 1.40 bootstrap for {what}.\n\
                 # Generated from {example} by `make envoy-examples` (the renderer of\n\
                 # `host-shim envoy`): edit the example or the renderer, not this file.\n\
                 # Run from the repository root, beside `host-shim serve {example}` (port 3100):\n\
                 #   make wasm && .tools/bin/envoy -c {bootstrap}\n\n{}",
                render(&config, &options).unwrap()
            );
            let path = root.join(bootstrap);
            if std::env::var_os("UPDATE_ENVOY_EXAMPLES").is_some() {
                std::fs::write(&path, &rendered).unwrap();
            }
            let committed = std::fs::read_to_string(&path).unwrap();
            assert!(
                committed == rendered,
                "{bootstrap} is not what the renderer makes of {example}: run `make envoy-examples`"
            );
        }
    }

    /// The bootstrap `host-shim envoy` renders for `make run`'s config, as a reviewed snapshot.
    #[test]
    fn the_default_config_renders_this_bootstrap() {
        let config = Config::parse(include_str!("../../examples/okta-local.yaml")).unwrap();
        let options = RenderOptions {
            health_path: Some(DEFAULT_HEALTH_PATH.to_string()),
            ..options()
        };
        insta::assert_snapshot!(render(&config, &options).unwrap());
    }

    /// A route with two targets behind two shims (one on a socket), as a reviewed snapshot.
    #[test]
    fn two_targets_behind_two_shims_render_this_bootstrap() {
        let text = include_str!("../../examples/okta-local.yaml").replace(
            "          targets:\n",
            "          sessionTtl: 5m\n          targets:\n          - name: fetch\n            stdio: {cmd: uvx, args: [mcp-server-fetch]}\n",
        );
        let config = Config::parse(&text).unwrap();
        assert_eq!(config.routes()[0].route.targets().count(), 2);
        let mut options = options();
        options
            .shims
            .push("unix:/run/host-shim/2.sock".parse().unwrap());
        insta::assert_snapshot!(render(&config, &options).unwrap());
    }

    #[test]
    fn a_health_route_answered_by_envoy_comes_first_when_asked() {
        let config = Config::parse(GUIDE).unwrap();
        let options = RenderOptions {
            health_path: Some(DEFAULT_HEALTH_PATH.to_string()),
            ..options()
        };
        let yaml = render(&config, &options).unwrap();
        let bootstrap: Json = serde_yaml::from_str(&yaml).unwrap();
        let hcm = &bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
            ["typed_config"];
        let first = &hcm["route_config"]["virtual_hosts"][0]["routes"][0];
        assert_eq!(first["name"], HEALTH_ROUTE);
        assert_eq!(first["match"]["path"], "/healthz");
        assert_eq!(first["direct_response"]["status"], 200);
        // Not a route the filter has a policy for: it needs no token.
        let plugin = &hcm["http_filters"][0]["typed_config"]["config"]["configuration"]["value"];
        let policies: Json = serde_json::from_str(plugin.as_str().unwrap()).unwrap();
        assert!(policies["routes"].get(HEALTH_ROUTE).is_none());
        assert!(hcm["access_log"][0]["typed_config"]["log_format"]["text_format_source"]
            ["inline_string"]
            .as_str()
            .unwrap()
            .contains("%FILTER_STATE(wasm.mcp_auth_decision:PLAIN)%"));
    }

    #[test]
    fn the_guide_renders_a_listener_the_filter_and_the_clusters() {
        let config = Config::parse(GUIDE).unwrap();
        let yaml = render(&config, &options()).unwrap();
        let doc: Json = serde_yaml::from_str(&yaml).unwrap();
        let listener = &doc["static_resources"]["listeners"][0];
        assert_eq!(listener["address"]["socket_address"]["port_value"], 3000);
        let hcm = &listener["filter_chains"][0]["filters"][0]["typed_config"];
        let wasm = &hcm["http_filters"][0]["typed_config"]["config"];
        let policy: Json =
            serde_json::from_str(wasm["configuration"]["value"].as_str().unwrap()).unwrap();
        let route_name = "bind0-listener0-route0";
        assert_eq!(
            policy["routes"][route_name]["policies"]["mcpAuthentication"]["issuer"],
            "https://your-org.okta.com/oauth2/default"
        );
        let routes = &hcm["route_config"]["virtual_hosts"][0]["routes"];
        assert_eq!(
            policy["routes"][route_name]["mcpTargets"],
            json!(["my-server"])
        );
        assert_eq!(routes[0]["name"], route_name);
        assert_eq!(
            routes[0]["request_headers_to_add"][0]["header"]["value"],
            route_name
        );
        let clusters = doc["static_resources"]["clusters"].as_array().unwrap();
        let okta = clusters
            .iter()
            .find(|c| c["name"] == "your-org.okta.com")
            .unwrap();
        assert_eq!(okta["type"], "STRICT_DNS");
        let tls = &okta["transport_socket"]["typed_config"];
        assert_eq!(tls["sni"], "your-org.okta.com");
        assert_eq!(
            tls["common_tls_context"]["validation_context"]["trusted_ca"]["filename"],
            DEFAULT_CA_FILE
        );
        assert_eq!(
            okta["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]
                ["port_value"],
            443
        );
    }

    #[test]
    fn shims_on_sockets_are_pipes_and_the_listener_is_hardened() {
        let config = Config::parse(GUIDE).unwrap();
        let mut options = options();
        options.shims = vec![
            Address::Unix("/run/gw/shim-0.sock".into()),
            Address::Tcp("127.0.0.1:4000".parse().unwrap()),
        ];
        let doc: Json = serde_yaml::from_str(&render(&config, &options).unwrap()).unwrap();
        let clusters = doc["static_resources"]["clusters"].as_array().unwrap();
        let shim = clusters.iter().find(|c| c["name"] == SHIM_CLUSTER).unwrap();
        let endpoints = &shim["load_assignment"]["endpoints"][0]["lb_endpoints"];
        assert_eq!(
            endpoints[0]["endpoint"]["address"],
            json!({"pipe": {"path": "/run/gw/shim-0.sock"}})
        );
        assert_eq!(
            endpoints[1]["endpoint"]["address"]["socket_address"],
            json!({"address": "127.0.0.1", "port_value": 4000})
        );

        let listener = &doc["static_resources"]["listeners"][0];
        assert_eq!(listener["enable_reuse_port"], false);
        assert_eq!(listener["per_connection_buffer_limit_bytes"], 1024 * 1024);
        let hcm = &listener["filter_chains"][0]["filters"][0]["typed_config"];
        assert_eq!(hcm["request_headers_timeout"], "10s");
        assert_eq!(hcm["stream_idle_timeout"], IDLE_TIMEOUT);
        assert_eq!(
            hcm["common_http_protocol_options"],
            json!({"idle_timeout": IDLE_TIMEOUT, "max_headers_count": 100,
                "headers_with_underscores_action": "REJECT_REQUEST"})
        );
        assert_eq!(hcm["max_request_headers_kb"], 32);
        assert_eq!(hcm["http2_protocol_options"]["max_concurrent_streams"], 100);
        assert_eq!(hcm["normalize_path"], true);
        assert_eq!(hcm["merge_slashes"], true);
        assert_eq!(hcm["path_with_escaped_slashes_action"], "REJECT_REQUEST");
        // Long streams: no route timeout, the stream idle timeout above still applies.
        let routes = hcm["route_config"]["virtual_hosts"][0]["routes"]
            .as_array()
            .unwrap();
        assert!(routes.iter().all(|r| r["route"]["timeout"] == "0s"));
        let monitor = &doc["overload_manager"]["resource_monitors"][0];
        assert_eq!(
            monitor["name"],
            "envoy.resource_monitors.global_downstream_max_connections"
        );
        assert_eq!(
            monitor["typed_config"]["max_active_downstream_connections"],
            MAX_CONNECTIONS
        );

        // The filter holds headers only where the host lets it: both are on, or neither.
        let plugin = &hcm["http_filters"][0]["typed_config"]["config"];
        assert_eq!(plugin["allow_on_headers_stop_iteration"], true);
        let filter: Json =
            serde_json::from_str(plugin["configuration"]["value"].as_str().unwrap()).unwrap();
        assert_eq!(filter["holdHeaders"], true);
        assert!(filter["routes"]["bind0-listener0-route0"]["policies"].is_object());
        assert_eq!(
            hcm["http_filters"][1]["name"], "envoy.filters.http.stateful_session",
            "two shims: sessions stick to theirs"
        );
    }

    #[test]
    fn path_matches_get_a_metadata_route() {
        let config = Config::parse(
            r#"
binds:
- port: 3000
  listeners:
  - routes:
    - name: tools
      matches: [{path: {pathPrefix: /mcp}}]
      backends: [{mcp: {targets: [{name: a, stdio: {cmd: x}}]}}]
      policies:
        mcpAuthentication:
          issuer: http://127.0.0.1:9000/oauth2/default
          audiences: []
          jwks: {url: http://127.0.0.1:9000/oauth2/default/v1/keys}
"#,
        )
        .unwrap();
        let doc: Json = serde_yaml::from_str(&render(&config, &options()).unwrap()).unwrap();
        let hcm = &doc["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"];
        let routes = hcm["route_config"]["virtual_hosts"][0]["routes"]
            .as_array()
            .unwrap();
        assert_eq!(routes[0]["match"]["prefix"], "/mcp");
        assert_eq!(
            routes[1]["match"]["path"],
            "/.well-known/oauth-protected-resource/mcp"
        );
        assert!(routes.iter().all(|r| r["name"] == "tools"));
        let clusters = doc["static_resources"]["clusters"].as_array().unwrap();
        let jwks = clusters.iter().find(|c| c["name"] == "127.0.0.1").unwrap();
        assert_eq!(jwks["type"], "STATIC");
        assert!(jwks.get("transport_socket").is_none());
    }
}
