//! The request-level vocabulary tests speak: what a client sends ([`Request`]), what the
//! filter made of it ([`Outcome`]) and what came back ([`Response`]). Kept apart from the VM
//! plumbing so the contract the scenario tests are written against is easy to read.

use std::time::Duration;

/// A downstream request, built the way a client would send it; the host adds the pseudo-headers
/// and the headers Envoy's connection manager adds before any HTTP filter runs.
#[derive(Clone, Debug)]
pub struct Request {
    pub(crate) method: String,
    pub(crate) path: String,
    pub(crate) authority: String,
    pub(crate) scheme: String,
    pub(crate) headers: Vec<(String, Vec<u8>)>,
    pub(crate) body: Option<Vec<u8>>,
    /// The body as the client's data frames split it (`None`: one frame).
    pub(crate) chunks: Option<Vec<Vec<u8>>>,
    /// Request trailers after the body (HTTP/2, gRPC): the last data frame then does not end
    /// the stream, the trailers do.
    pub(crate) trailers: Vec<(String, Vec<u8>)>,
    pub(crate) upstream: UpstreamResponse,
    pub(crate) properties: Vec<(String, Vec<u8>)>,
}

/// The canned answer of the upstream (the MCP server) for a forwarded request.
#[derive(Clone, Debug)]
pub(crate) struct UpstreamResponse {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, Vec<u8>)>,
    pub(crate) body: Vec<u8>,
    /// The body as the upstream's data frames split it (`None`: one frame).
    pub(crate) chunks: Option<Vec<Vec<u8>>>,
}

impl Request {
    /// A request with any method.
    pub fn new(method: &str, path: &str) -> Request {
        Request {
            method: method.to_string(),
            path: path.to_string(),
            authority: "localhost:3000".to_string(),
            scheme: "http".to_string(),
            headers: Vec::new(),
            body: None,
            chunks: None,
            trailers: Vec::new(),
            upstream: UpstreamResponse {
                status: 200,
                headers: Vec::new(),
                body: Vec::new(),
                chunks: None,
            },
            properties: Vec::new(),
        }
    }

    pub fn get(path: &str) -> Request {
        Request::new("GET", path)
    }

    pub fn post(path: &str) -> Request {
        Request::new("POST", path)
    }

    /// Sets a JSON body with `content-type: application/json`.
    pub fn json(self, body: &serde_json::Value) -> Request {
        self.header("content-type", "application/json")
            .body(body.to_string().as_bytes())
    }

    /// Sets a raw body; `content-length` is added as a client would.
    pub fn body(mut self, body: &[u8]) -> Request {
        self.body = Some(body.to_vec());
        self.chunks = None;
        self
    }

    /// Sends the body in these data frames, one body callback each.
    pub fn body_chunks(mut self, chunks: &[&[u8]]) -> Request {
        self.body = Some(chunks.concat());
        self.chunks = Some(chunks.iter().map(|c| c.to_vec()).collect());
        self
    }

    /// Ends the request with trailers after its body (the trailers callback ends the stream).
    pub fn trailers(mut self, trailers: &[(&str, &str)]) -> Request {
        self.trailers = trailers
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.as_bytes().to_vec()))
            .collect();
        self
    }

    /// The body's data frames as the host delivers them.
    pub(crate) fn frames(&self) -> Vec<Vec<u8>> {
        match (&self.chunks, &self.body) {
            (Some(chunks), _) => chunks.clone(),
            (None, Some(body)) => vec![body.clone()],
            (None, None) => Vec::new(),
        }
    }

    /// Appends a header (names are lower-cased, as Envoy's codecs do).
    pub fn header(self, name: &str, value: &str) -> Request {
        self.header_bytes(name, value.as_bytes())
    }

    /// Appends a header whose value need not be UTF-8.
    pub fn header_bytes(mut self, name: &str, value: &[u8]) -> Request {
        self.headers
            .push((name.to_ascii_lowercase(), value.to_vec()));
        self
    }

    /// `authorization: Bearer <token>`.
    pub fn bearer(self, token: &str) -> Request {
        self.header("authorization", &format!("Bearer {token}"))
    }

    pub fn authority(mut self, authority: &str) -> Request {
        self.authority = authority.to_string();
        self
    }

    pub fn scheme(mut self, scheme: &str) -> Request {
        self.scheme = scheme.to_string();
        self
    }

    /// A stream property such as `xds.route_name`, as Envoy would answer `proxy_get_property`
    /// for this request (dotted path; the value is returned as given).
    pub fn property(mut self, path: &str, value: impl AsRef<[u8]>) -> Request {
        self.properties
            .push((path.to_string(), value.as_ref().to_vec()));
        self
    }

    /// What the upstream answers if the filter lets the request through (default 200, empty).
    pub fn upstream_response(
        mut self,
        status: u16,
        headers: Vec<(String, String)>,
        body: &[u8],
    ) -> Request {
        self.upstream = UpstreamResponse {
            status,
            headers: headers
                .into_iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v.into_bytes()))
                .collect(),
            body: body.to_vec(),
            chunks: None,
        };
        self
    }

    /// Like [`Request::upstream_response`], the body sent in these data frames.
    pub fn upstream_chunks(
        self,
        status: u16,
        headers: Vec<(String, String)>,
        chunks: &[&[u8]],
    ) -> Request {
        let mut out = self.upstream_response(status, headers, &chunks.concat());
        out.upstream.chunks = Some(chunks.iter().map(|c| c.to_vec()).collect());
        out
    }
}

/// A response as the client sees it. `headers` excludes `:status`.
#[derive(Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
    /// The response code details the filter gave `proxy_send_local_response` (local replies only).
    pub details: Option<String>,
}

impl Response {
    /// The first value of a header, lossily decoded.
    pub fn header(&self, name: &str) -> Option<String> {
        self.header_bytes(name)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }

    pub fn header_bytes(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }

    /// The body parsed as JSON; panics (test failure) with the body if it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "response body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// What became of one request.
#[derive(Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The filter let it through: what went upstream, and what the client then saw.
    Forwarded {
        request_headers: Vec<(String, Vec<u8>)>,
        request_body: Vec<u8>,
        response: Response,
    },
    /// The filter answered itself (`proxy_send_local_response`); the response as the client saw
    /// it, after the filter's own response callbacks ran on it, as they do in Envoy.
    Local(Response),
    /// The filter paused the stream and nothing resumed it yet.
    Paused,
    /// The filter reset the stream (`proxy_close_stream`).
    Reset,
}

impl Outcome {
    /// The response the client saw, if the stream has finished with one.
    pub fn response(&self) -> Option<&Response> {
        match self {
            Outcome::Forwarded { response, .. } | Outcome::Local(response) => Some(response),
            Outcome::Paused | Outcome::Reset => None,
        }
    }

    /// The status the client saw (0 when paused or reset).
    pub fn status(&self) -> u16 {
        self.response().map_or(0, |r| r.status)
    }

    pub fn is_forwarded(&self) -> bool {
        matches!(self, Outcome::Forwarded { .. })
    }

    /// The JSON body of the request as it went upstream; panics unless it was forwarded.
    #[track_caller]
    pub fn forwarded_json(&self) -> serde_json::Value {
        let Outcome::Forwarded { request_body, .. } = self else {
            panic!("expected the request to go upstream, got {self:?}")
        };
        serde_json::from_slice(request_body).unwrap()
    }

    /// A header of the request as it went upstream (forwarded only).
    pub fn upstream_header(&self, name: &str) -> Option<String> {
        match self {
            Outcome::Forwarded {
                request_headers, ..
            } => request_headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| String::from_utf8_lossy(v).into_owned()),
            _ => None,
        }
    }
}

/// The id of an HTTP stream (its proxy-wasm context id) on one [`crate::Vm`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct StreamId(pub u32);

/// An outgoing `proxy_http_call` the filter made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpCall {
    /// Index of the VM that made it (see [`crate::LogLine::vm`]).
    pub vm: usize,
    /// The context that made it (root or a stream).
    pub context_id: u32,
    pub token: u32,
    /// The cluster name.
    pub upstream: String,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
    /// `None` when the filter passed 0 (Envoy then applies no timeout).
    pub timeout: Option<Duration>,
}

impl HttpCall {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    }

    /// `:path`.
    pub fn path(&self) -> String {
        self.header(":path").unwrap_or_default()
    }
}

/// Anything that names a pending call: its token or the call itself.
pub trait CallRef {
    fn token(&self) -> u32;
}

impl CallRef for u32 {
    fn token(&self) -> u32 {
        *self
    }
}

impl CallRef for HttpCall {
    fn token(&self) -> u32 {
        self.token
    }
}

impl CallRef for &HttpCall {
    fn token(&self) -> u32 {
        self.token
    }
}

/// proxy-wasm log levels, in the ABI's numbering.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LogLevel {
    Trace = 0,
    Debug = 1,
    Info = 2,
    Warn = 3,
    Error = 4,
    Critical = 5,
}

impl LogLevel {
    pub(crate) fn from_abi(v: i32) -> Option<LogLevel> {
        Some(match v {
            0 => LogLevel::Trace,
            1 => LogLevel::Debug,
            2 => LogLevel::Info,
            3 => LogLevel::Warn,
            4 => LogLevel::Error,
            5 => LogLevel::Critical,
            _ => return None,
        })
    }
}

/// One line the module logged (`proxy_log`, or a line written to stdout/stderr, which Envoy
/// logs at info/error).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLine {
    pub vm: usize,
    pub level: LogLevel,
    pub message: String,
}

/// Header values and bodies are bytes; failure messages are far easier to read as text.
struct Lossy<'a>(&'a [(String, Vec<u8>)]);

impl std::fmt::Debug for Lossy<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(
                self.0
                    .iter()
                    .map(|(k, v)| format!("{k}: {}", String::from_utf8_lossy(v))),
            )
            .finish()
    }
}

impl std::fmt::Debug for Response {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Response")
            .field("status", &self.status)
            .field("headers", &Lossy(&self.headers))
            .field("body", &String::from_utf8_lossy(&self.body))
            .field("details", &self.details)
            .finish()
    }
}

impl std::fmt::Debug for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Forwarded {
                request_headers,
                request_body,
                response,
            } => f
                .debug_struct("Forwarded")
                .field("request_headers", &Lossy(request_headers))
                .field("request_body", &String::from_utf8_lossy(request_body))
                .field("response", response)
                .finish(),
            Outcome::Local(r) => f.debug_tuple("Local").field(r).finish(),
            Outcome::Paused => f.write_str("Paused"),
            Outcome::Reset => f.write_str("Reset"),
        }
    }
}
