//! The Agent Gateway configuration file, as the Okta guide writes it: `binds` → `listeners` →
//! `routes` → `backends` (`mcp.targets`) and `policies`. Parsed strictly, so a typo is an
//! error naming the field's path instead of a silently ignored setting; each route's policy is
//! checked by the filter's own parser, so `host-shim` refuses what Envoy would refuse. Every
//! error is shown at the line and column of the file where the field is (see `location`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value as Json;

use crate::location::{self, Position};

/// A configuration that cannot be used, with the field it is about: the filter's own type,
/// so a policy error and a file error read alike.
pub use mcp_auth_filter::policy::ConfigError;

/// A configuration error in a file, at the field's line and column when the field is there:
/// `gw.yaml:10:17: binds[0].….mode: unknown variant `stric`, …`, then the line itself with a
/// caret under the column.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct FileError {
    pub file: String,
    pub at: Option<Position>,
    /// The field's path, as in `ConfigError`.
    pub path: String,
    pub reason: String,
    /// The line the error points at, as written.
    line: Option<String>,
}

impl std::fmt::Display for FileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(at) = self.at {
            write!(f, ":{}:{}", at.line, at.column)?;
        }
        if !self.path.is_empty() {
            write!(f, ": {}", self.path)?;
        }
        write!(f, ": {}", self.reason)?;
        if let (Some(at), Some(line)) = (self.at, &self.line) {
            let gutter = at.line.to_string();
            let pad = " ".repeat(gutter.len());
            let indent: String = line
                .chars()
                .take(at.column.saturating_sub(1))
                .map(|c| if c == '\t' { '\t' } else { ' ' })
                .collect();
            write!(f, "\n{pad} |\n{gutter} | {line}\n{pad} | {indent}^")?;
        }
        Ok(())
    }
}

/// The file a configuration came from: its name and text, to point errors at their place.
#[derive(Debug, Clone, Default)]
pub struct Source {
    pub file: String,
    text: String,
    index: location::Index,
}

impl Source {
    fn new(file: String, text: &str) -> Source {
        Source {
            file,
            text: text.to_string(),
            index: location::Index::new(text),
        }
    }

    /// `error`, shown where its field is in the file.
    pub fn error(&self, mut error: ConfigError) -> FileError {
        // A place in the reason is in the internal form the policy was checked in.
        error.reason = without_location(&error.reason, None);
        let at = self.index.locate(&error.path, &error.reason);
        self.error_at(at, error)
    }

    fn error_at(&self, at: Option<Position>, error: ConfigError) -> FileError {
        let line = at.and_then(|at| self.text.lines().nth(at.line.checked_sub(1)?));
        FileError {
            file: self.file.clone(),
            at,
            path: error.path,
            reason: error.reason,
            line: line.map(|l| l.trim_end().to_string()),
        }
    }

    /// A serde_yaml failure: at the place serde_yaml names; a syntax error (serde's path is
    /// then empty or holds a `?`) also gets the path of the field it is in.
    fn serde_error(&self, e: &serde_path_to_error::Error<serde_yaml::Error>) -> FileError {
        let at = e.inner().location().map(|l| Position {
            line: l.line(),
            column: l.column(),
        });
        let mut path = e.path().to_string();
        if (path == "." || path.contains('?'))
            && let Some(found) = at.and_then(|at| location::path_at(&self.text, at))
        {
            path = found;
        }
        // The place serde_yaml names is shown before the message; any other (the start of
        // what a syntax error was in) is the user's too, and stays.
        let reason = without_location(&e.inner().to_string(), Some(at));
        let error = ConfigError::from_serde(path, reason, "");
        let at = at.or_else(|| self.index.locate(&error.path, &error.reason));
        self.error_at(at, error)
    }
}

/// `reason` without the ` at line L column C` its parser added: every one (`only: None`), or
/// only the one at `only` (none when that place is unknown).
fn without_location(reason: &str, only: Option<Option<Position>>) -> String {
    let mut out = String::with_capacity(reason.len());
    let mut rest = reason;
    while let Some(i) = rest.find(" at line ") {
        let (before, after) = rest.split_at(i);
        out.push_str(before);
        let tail = after.trim_start_matches(" at line ");
        let (line, tail) = number(tail);
        let (column, tail) = match tail.strip_prefix(" column ") {
            Some(t) => number(t),
            None => (None, tail),
        };
        let matches = match (line, column, only) {
            (Some(_), Some(_), None) => true,
            (Some(line), Some(column), Some(Some(at))) => at == Position { line, column },
            _ => false,
        };
        if !matches {
            out.push_str(after.get(..after.len() - tail.len()).unwrap_or_default());
        }
        rest = tail;
    }
    out.push_str(rest);
    out
}

/// The decimal number `text` starts with, and what follows it.
fn number(text: &str) -> (Option<usize>, &str) {
    let end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, rest) = text.split_at(end);
    (digits.parse().ok(), rest)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Config {
    pub binds: Vec<Bind>,
    /// Where it was read from, to point later errors (a missing command, say) at the file.
    #[serde(skip)]
    pub source: Source,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Bind {
    pub port: u16,
    #[serde(default)]
    pub listeners: Vec<Listener>,
}

/// Every field may be left out.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct Listener {
    pub name: Option<String>,
    /// Only requests for this host (`Host`/`:authority`, port ignored) match the listener.
    pub hostname: Option<String>,
    /// `HTTP` is the only protocol served.
    pub protocol: Option<String>,
    pub routes: Vec<Route>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Route {
    pub name: Option<String>,
    #[serde(default)]
    pub hostnames: Vec<String>,
    #[serde(default)]
    pub matches: Vec<Match>,
    /// Kinds are keys (`- mcp: {…}`), as Agent Gateway writes them, not YAML tags.
    #[serde(default, with = "serde_yaml::with::singleton_map_recursive")]
    pub backends: Vec<Backend>,
    /// Kept as written: the filter parses it (and `host-shim` checks it with the same code).
    pub policies: Option<Json>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Match {
    #[serde(default, with = "serde_yaml::with::singleton_map")]
    pub path: Option<PathMatch>,
}

/// One of `exact`, `pathPrefix`, `regex`: a map with one key, as Agent Gateway writes it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum PathMatch {
    Exact(String),
    PathPrefix(String),
    Regex(String),
}

impl PathMatch {
    /// The literal path a client can be sent to (none for a regex).
    pub fn literal(&self) -> Option<&str> {
        match self {
            PathMatch::Exact(p) | PathMatch::PathPrefix(p) => Some(p),
            PathMatch::Regex(_) => None,
        }
    }
}

/// A backend, keyed by its kind; `mcp` is the kind this project serves.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Backend {
    Mcp(McpBackend),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct McpBackend {
    pub targets: Vec<Target>,
    /// Idle MCP sessions end after this long (`30m` by default).
    #[serde(default, with = "humantime_serde")]
    pub session_ttl: Option<Duration>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Target {
    pub name: String,
    pub stdio: Option<Stdio>,
}

/// An MCP server the shim starts as a child process and talks to over stdin/stdout.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Stdio {
    pub cmd: String,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Start the child with only `env` (and `PATH`, so `cmd` is still found).
    #[serde(default)]
    pub clear_env: bool,
    pub cwd: Option<PathBuf>,
    /// How long a call may wait for the server's answer (`5m` by default); then the caller
    /// gets a JSON-RPC error instead of waiting forever on a server that never answers.
    #[serde(default, with = "humantime_serde")]
    pub request_timeout: Option<Duration>,
}

pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(5 * 60);

pub const DEFAULT_SESSION_TTL: Duration = Duration::from_secs(30 * 60);

/// A route as the rest of the shim uses it: its name (the Envoy route name the filter picks
/// its policy by), where it listens, and what it serves.
#[derive(Debug, Clone)]
pub struct RouteRef<'a> {
    pub name: String,
    /// Where the route is in the file, as error paths name it: `binds[0].listeners[0].routes[0]`.
    pub at: String,
    pub port: u16,
    pub listener: &'a Listener,
    pub route: &'a Route,
}

impl Route {
    /// The route's MCP targets (empty when it has no `mcp` backend).
    pub fn targets(&self) -> impl Iterator<Item = &Target> {
        self.backends
            .iter()
            .flat_map(|Backend::Mcp(m)| m.targets.iter())
    }

    pub fn session_ttl(&self) -> Duration {
        self.backends
            .iter()
            .find_map(|Backend::Mcp(m)| m.session_ttl)
            .unwrap_or(DEFAULT_SESSION_TTL)
    }
}

impl Config {
    /// Reads the file; `jwks.file` paths are relative to its directory.
    pub fn load(path: &Path) -> Result<Config, FileError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| FileError {
            file: file.clone(),
            at: None,
            path: String::new(),
            reason: format!("cannot be read: {e}"),
            line: None,
        })?;
        Config::parse_in(&text, path.parent().unwrap_or(Path::new(".")), file)
    }

    /// Parses a file's text, reading `jwks.file` relative to the working directory (for
    /// callers that hold the text, such as tests).
    pub fn parse(text: &str) -> Result<Config, FileError> {
        Config::parse_in(text, Path::new("."), "(config)".into())
    }

    fn parse_in(text: &str, base: &Path, file: String) -> Result<Config, FileError> {
        let source = Source::new(file, text);
        let de = serde_yaml::Deserializer::from_str(text);
        let mut config: Config =
            serde_path_to_error::deserialize(de).map_err(|e| source.serde_error(&e))?;
        config
            .inline_jwks_files(base)
            .and_then(|()| config.validate())
            .map_err(|e| source.error(e))?;
        config.source = source;
        Ok(config)
    }

    /// `jwks: {file: path}` becomes the file's key set, inline: the filter cannot read files,
    /// and what is validated is then exactly what Envoy will be given.
    fn inline_jwks_files(&mut self, base: &Path) -> Result<(), ConfigError> {
        for (b, bind) in self.binds.iter_mut().enumerate() {
            for (l, listener) in bind.listeners.iter_mut().enumerate() {
                for (r, route) in listener.routes.iter_mut().enumerate() {
                    let Some(jwks) = route
                        .policies
                        .as_mut()
                        .and_then(|p| p.pointer_mut("/mcpAuthentication/jwks"))
                    else {
                        continue;
                    };
                    let Some(file) = jwks.get("file").and_then(Json::as_str) else {
                        continue;
                    };
                    let at = format!(
                        "binds[{b}].listeners[{l}].routes[{r}].policies.mcpAuthentication.jwks.file"
                    );
                    let path = base.join(file);
                    let text = std::fs::read_to_string(&path).map_err(|e| {
                        ConfigError::new(at, format!("{} cannot be read: {e}", path.display()))
                    })?;
                    *jwks = Json::String(text);
                }
            }
        }
        Ok(())
    }

    /// Every route with its resolved name, in file order.
    pub fn routes(&self) -> Vec<RouteRef<'_>> {
        let mut out = Vec::new();
        for (b, bind) in self.binds.iter().enumerate() {
            for (l, listener) in bind.listeners.iter().enumerate() {
                for (r, route) in listener.routes.iter().enumerate() {
                    let name = route
                        .name
                        .clone()
                        .unwrap_or_else(|| format!("bind{b}-listener{l}-route{r}"));
                    out.push(RouteRef {
                        name,
                        at: format!("binds[{b}].listeners[{l}].routes[{r}]"),
                        port: bind.port,
                        listener,
                        route,
                    });
                }
            }
        }
        out
    }

    /// The route called `name`.
    pub fn route(&self, name: &str) -> Option<RouteRef<'_>> {
        self.routes().into_iter().find(|r| r.name == name)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.binds.is_empty() {
            return Err(ConfigError::new("binds", "at least one bind is needed"));
        }
        let mut names = BTreeMap::new();
        let mut ports = BTreeMap::new();
        let routes = self.routes();
        let mut route_names = routes.iter().map(|r| r.name.clone());
        for (b, bind) in self.binds.iter().enumerate() {
            if ports.insert(bind.port, b).is_some() {
                return Err(ConfigError::new(
                    format!("binds[{b}].port"),
                    format!("port {} is bound twice", bind.port),
                ));
            }
            for (l, listener) in bind.listeners.iter().enumerate() {
                let at = format!("binds[{b}].listeners[{l}]");
                if let Some(p) = &listener.protocol
                    && !p.eq_ignore_ascii_case("http")
                {
                    return Err(ConfigError::new(
                        format!("{at}.protocol"),
                        format!("{p:?} is not supported (HTTP only)"),
                    ));
                }
                for (r, route) in listener.routes.iter().enumerate() {
                    let at = format!("{at}.routes[{r}]");
                    validate_route(route, &at)?;
                    let name = route_names.next().unwrap_or_default();
                    if names.insert(name.clone(), ()).is_some() {
                        return Err(ConfigError::new(
                            format!("{at}.name"),
                            format!("two routes are named {name:?}"),
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}

fn validate_target(target: &Target, at: &str) -> Result<(), ConfigError> {
    if let Err(e) = mcp_auth_filter::target::TargetName::new(&target.name) {
        return Err(ConfigError::new(format!("{at}.name"), e.to_string()));
    }
    match &target.stdio {
        None => Err(ConfigError::new(
            at,
            "a target needs `stdio:` (the transport host-shim runs)",
        )),
        Some(stdio) if stdio.cmd.trim().is_empty() => {
            Err(ConfigError::new(format!("{at}.stdio.cmd"), "is empty"))
        }
        Some(_) => Ok(()),
    }
}

fn validate_route(route: &Route, at: &str) -> Result<(), ConfigError> {
    if let Some(name) = &route.name
        && (name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)))
    {
        return Err(ConfigError::new(
            format!("{at}.name"),
            "use letters, digits, '-', '_' and '.' (it becomes an Envoy route name)",
        ));
    }
    for (m, matcher) in route.matches.iter().enumerate() {
        let Some(path) = &matcher.path else { continue };
        let at = format!("{at}.matches[{m}].path");
        if let Some(p) = path.literal()
            && !p.starts_with('/')
        {
            return Err(ConfigError::new(at, "must start with '/'"));
        }
    }
    let mut seen = BTreeMap::new();
    for (i, backend) in route.backends.iter().enumerate() {
        let Backend::Mcp(mcp) = backend;
        for (t, target) in mcp.targets.iter().enumerate() {
            validate_target(target, &format!("{at}.backends[{i}].mcp.targets[{t}]"))?;
            if seen.insert(target.name.clone(), ()).is_some() {
                return Err(ConfigError::new(
                    format!("{at}.backends[{i}].mcp.targets[{t}].name"),
                    format!("{:?} is used twice on this route", target.name),
                ));
            }
        }
    }
    if let Some(policies) = &route.policies {
        let document = serde_json::json!({ "policies": policies });
        mcp_auth_filter::policy::FilterConfig::parse(document.to_string().as_bytes()).map_err(
            |e| {
                let path = e.path.strip_prefix("policies").unwrap_or(&e.path);
                ConfigError::new(format!("{at}.policies{path}"), e.reason)
            },
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Okta guide's configuration, as the repository ships it.
    const GUIDE: &str = include_str!("../../examples/okta.yaml");

    #[test]
    fn the_okta_guide_parses_as_written() {
        let config = Config::parse(GUIDE).unwrap();
        let routes = config.routes();
        assert_eq!(routes.len(), 1);
        assert_eq!(routes[0].name, "bind0-listener0-route0");
        assert_eq!(routes[0].port, 3000);
        let target = routes[0].route.targets().next().unwrap();
        assert_eq!(target.name, "my-server");
        assert_eq!(target.stdio.as_ref().unwrap().cmd, "npx");
        assert_eq!(routes[0].route.session_ttl(), DEFAULT_SESSION_TTL);
    }

    #[test]
    fn errors_name_the_path() {
        let e = Config::parse(&GUIDE.replace("cmd: npx", "command: npx")).unwrap_err();
        assert!(
            e.path
                .starts_with("binds[0].listeners[0].routes[0].backends[0].mcp.targets[0].stdio"),
            "{e}"
        );
        let e = Config::parse(&GUIDE.replace("mode: strict", "mode: lax")).unwrap_err();
        assert_eq!(
            e.path, "binds[0].listeners[0].routes[0].policies.mcpAuthentication.mode",
            "{e}"
        );
        let e = Config::parse(&GUIDE.replace("name: my-server", "name: my.server")).unwrap_err();
        assert!(e.path.ends_with("targets[0].name"), "{e}");
        let e = Config::parse("binds: []").unwrap_err();
        assert_eq!(e.path, "binds");
    }

    /// Backends and path matchers are maps keyed by their kind; another kind, or two at once,
    /// is named at the key.
    #[test]
    fn kinds_are_keys() {
        let e = Config::parse(&GUIDE.replace("- mcp:", "- host:")).unwrap_err();
        assert_eq!(e.path, "binds[0].listeners[0].routes[0].backends[0].host");
        assert_eq!(e.reason, "unknown variant `host`, expected `mcp`");
        let two = "    - matches:\n      - path: {exact: /mcp, pathPrefix: /m}\n      backends:";
        let e = Config::parse(&GUIDE.replace("    - backends:", two)).unwrap_err();
        assert_eq!(e.path, "binds[0].listeners[0].routes[0].matches[0].path");
        assert!(e.reason.contains("single key"), "{e}");
        let one = "    - matches:\n      - path: {regex: '^/mcp$'}\n      backends:";
        let config = Config::parse(&GUIDE.replace("    - backends:", one)).unwrap();
        let path = config.routes()[0].route.matches[0].path.clone();
        assert_eq!(path, Some(PathMatch::Regex("^/mcp$".into())));
    }

    #[test]
    fn jwks_files_are_inlined_relative_to_the_config_file() {
        let dir = std::env::temp_dir().join(format!("shim-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let text = GUIDE.replace(
            "jwks:\n            url: https://your-org.okta.com/oauth2/default/v1/keys",
            "jwks:\n            file: keys.json",
        );
        std::fs::write(dir.join("gw.yaml"), &text).unwrap();
        // A key set without a usable key is refused by the filter's own parser, with the path.
        std::fs::write(
            dir.join("keys.json"),
            r#"{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}"#,
        )
        .unwrap();
        let e = Config::load(&dir.join("gw.yaml")).unwrap_err();
        assert_eq!(
            e.path, "binds[0].listeners[0].routes[0].policies.mcpAuthentication.jwks",
            "{e}"
        );
        assert!(e.reason.contains("no usable key"), "{e}");
        std::fs::remove_file(dir.join("keys.json")).unwrap();
        let e = Config::load(&dir.join("gw.yaml")).unwrap_err();
        assert!(e.path.ends_with("jwks.file"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn session_ttl_and_matches() {
        let text = GUIDE
            .replace("      - mcp:\n", "      - mcp:\n          sessionTtl: 5m\n")
            .replace("    - backends:", "    - name: tools\n      matches:\n      - path: {pathPrefix: /mcp}\n      backends:");
        let config = Config::parse(&text).unwrap();
        let route = config.route("tools").unwrap();
        assert_eq!(route.route.session_ttl(), Duration::from_secs(300));
        assert_eq!(
            route.route.matches[0].path,
            Some(PathMatch::PathPrefix("/mcp".into()))
        );
    }
}
