//! `bench-tool`: what `bench/run.py` needs besides Envoy and wrk.
//!
//! - `keys DIR` — a fresh RS256 2048-bit key: `DIR/rsa-key.der` (PKCS#8) and `DIR/jwks.json`,
//!   the key set Envoy gets inline (the wasm filter's `jwks:` and `jwt_authn`'s `local_jwks`).
//! - `tokens DIR COUNT FILE` — COUNT distinct RS256 access tokens shaped like Okta's, signed with
//!   `DIR/rsa-key.der` on every core, one per line.
//! - `micro COUNT FILE` — the cases file of `bench-micro`: fresh RS256, ES256 and EdDSA keys,
//!   each with its key set and COUNT tokens.
//! - `load ADDR TOKENS [--rps R --seconds S --warmup S | --requests N] [--connections K]
//!   [--offset O] [--method M] [--path P] [--body FILE] [--header 'Name: value']...` —
//!   HTTP/1.1 requests (`GET /` unless told) with `Authorization: Bearer <token>` (tokens
//!   cycled from the file) to ADDR (`127.0.0.1:PORT`); `--body` sends the file's bytes with
//!   their `Content-Length`, `--header` (repeatable) adds a header to every request. With
//!   `--rps` it is open-loop at a constant rate: each request has a scheduled send time and its
//!   latency counts from that time, so a stalled server is not hidden (wrk has no rate
//!   control). With `--requests` it is closed-loop: exactly N requests as fast as the K
//!   connections go. Prints one JSON object.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use rand::RngCore as _;
use rsa::pkcs8::{DecodePrivateKey as _, EncodePrivateKey as _};
use rsa::signature::{SignatureEncoding as _, Signer as _};
use rsa::traits::PublicKeyParts as _;
use serde_json::{Value, json};

/// The issuer and audience of every token; `bench/run.py` writes the same into the policies.
const ISSUER: &str = "https://bench.okta.example/oauth2/default";
const AUDIENCE: &str = "api://agentgateway";
const RSA_KID: &str = "bench-rs256";

type Res<T> = Result<T, String>;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("keys") => keys(args.get(1..).unwrap_or_default()),
        Some("tokens") => tokens(args.get(1..).unwrap_or_default()),
        Some("micro") => micro(args.get(1..).unwrap_or_default()),
        Some("load") => load(args.get(1..).unwrap_or_default()),
        _ => Err("usage: bench-tool keys|tokens|micro|load … (see the crate doc)".to_string()),
    };
    if let Err(e) = result {
        eprintln!("bench-tool: {e}");
        std::process::exit(1);
    }
}

fn arg<'a>(args: &'a [String], i: usize, what: &str) -> Res<&'a str> {
    args.get(i)
        .map(String::as_str)
        .ok_or_else(|| format!("missing argument: {what}"))
}

fn parse<T: std::str::FromStr>(text: &str, what: &str) -> Res<T> {
    text.parse()
        .map_err(|_| format!("{what}: not a number: {text:?}"))
}

fn b64(bytes: &[u8]) -> String {
    B64.encode(bytes)
}

fn now_secs() -> Res<u64> {
    Ok(SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_secs())
}

fn write(path: &str, text: &str) -> Res<()> {
    std::fs::write(path, text).map_err(|e| format!("{path}: {e}"))
}

fn new_rsa_key() -> Res<rsa::RsaPrivateKey> {
    rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 2048).map_err(|e| e.to_string())
}

fn rsa_jwk(key: &rsa::RsaPrivateKey, kid: &str) -> Value {
    json!({
        "kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid,
        "n": b64(&key.n().to_bytes_be()), "e": b64(&key.e().to_bytes_be()),
    })
}

/// `keys DIR`
fn keys(args: &[String]) -> Res<()> {
    let dir = arg(args, 0, "DIR")?;
    let key = new_rsa_key()?;
    let der = key.to_pkcs8_der().map_err(|e| e.to_string())?;
    std::fs::write(format!("{dir}/rsa-key.der"), der.as_bytes())
        .map_err(|e| format!("{dir}/rsa-key.der: {e}"))?;
    let set = json!({"keys": [rsa_jwk(&key, RSA_KID)]});
    write(&format!("{dir}/jwks.json"), &set.to_string())
}

/// The claims of an Okta access token (custom authorization server), token `i` of run `nonce`.
fn claims(nonce: &str, i: u64, now: u64) -> Value {
    json!({
        "ver": 1,
        "jti": format!("AT.{nonce}.{i}"),
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": now,
        "exp": now + 3600,
        "cid": "0oabench0client0id",
        "uid": format!("00ubench{:08}", i % 1000),
        "scp": ["agentgateway"],
        "sub": format!("user{}@example.com", i % 1000),
        "groups": ["AI-Users"],
    })
}

fn signing_input(alg: &str, kid: &str, claims: &Value) -> String {
    let header = json!({"kid": kid, "alg": alg});
    format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    )
}

fn nonce() -> String {
    let mut bytes = [0u8; 6];
    rand::thread_rng().fill_bytes(&mut bytes);
    b64(&bytes)
}

fn threads() -> u64 {
    std::thread::available_parallelism().map_or(1, |n| n.get() as u64)
}

/// Mints `count` RS256 tokens on every core, in order.
fn mint_rs256(key: &rsa::RsaPrivateKey, kid: &str, count: u64) -> Res<Vec<String>> {
    let signer = rsa::pkcs1v15::SigningKey::<sha2::Sha256>::new(key.clone());
    let (nonce, now) = (nonce(), now_secs()?);
    let workers = threads().min(count.max(1));
    let per = count.div_ceil(workers);
    let chunks = on_threads(workers, "minting", |w| {
        (w * per..((w + 1) * per).min(count))
            .map(|i| {
                let input = signing_input("RS256", kid, &claims(&nonce, i, now));
                let sig = signer.sign(input.as_bytes()).to_bytes();
                format!("{input}.{}", b64(&sig))
            })
            .collect::<Vec<_>>()
    })?;
    Ok(chunks.into_iter().flatten().collect())
}

/// Runs `work(0)` … `work(count - 1)` on a thread each and returns their results in that
/// order; a thread that panics fails the whole (`what` names the work in the error).
fn on_threads<T: Send>(count: u64, what: &str, work: impl Fn(u64) -> T + Sync) -> Res<Vec<T>> {
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..count)
            .map(|w| {
                let work = &work;
                s.spawn(move || work(w))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().map_err(|_| format!("a {what} thread failed")))
            .collect()
    })
}

/// `tokens DIR COUNT FILE`
fn tokens(args: &[String]) -> Res<()> {
    let dir = arg(args, 0, "DIR")?;
    let count: u64 = parse(arg(args, 1, "COUNT")?, "COUNT")?;
    let out = arg(args, 2, "FILE")?;
    let der_path = format!("{dir}/rsa-key.der");
    let der = std::fs::read(&der_path).map_err(|e| format!("{der_path}: {e}"))?;
    let key = rsa::RsaPrivateKey::from_pkcs8_der(&der).map_err(|e| e.to_string())?;
    let tokens = mint_rs256(&key, RSA_KID, count)?;
    write(out, &(tokens.join("\n") + "\n"))
}

/// `micro COUNT FILE`
fn micro(args: &[String]) -> Res<()> {
    let count: u64 = parse(arg(args, 0, "COUNT")?, "COUNT")?;
    let out = arg(args, 1, "FILE")?;
    let (nonce, now) = (nonce(), now_secs()?);

    let rsa_key = new_rsa_key()?;
    let rs256 = mint_rs256(&rsa_key, "micro-rs256", count)?;

    let ec_key = p256::ecdsa::SigningKey::random(&mut rand::thread_rng());
    let point = ec_key.verifying_key().to_encoded_point(false);
    let (x, y) = (
        point.x().ok_or("P-256 point without x")?,
        point.y().ok_or("P-256 point without y")?,
    );
    let es256_jwk = json!({
        "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": "micro-es256",
        "x": b64(x), "y": b64(y),
    });
    let es256: Vec<String> = (0..count)
        .map(|i| {
            let input = signing_input("ES256", "micro-es256", &claims(&nonce, i, now));
            let sig: p256::ecdsa::Signature = ec_key.sign(input.as_bytes());
            format!("{input}.{}", b64(&sig.to_bytes()))
        })
        .collect();

    let mut seed = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut seed);
    let ed = ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new(seed));
    let ed_jwk = json!({
        "kty": "OKP", "crv": "Ed25519", "use": "sig", "alg": "EdDSA", "kid": "micro-eddsa",
        "x": b64(ed.pk.as_ref()),
    });
    let eddsa: Vec<String> = (0..count)
        .map(|i| {
            let input = signing_input("EdDSA", "micro-eddsa", &claims(&nonce, i, now));
            let sig = ed.sk.sign(input.as_bytes(), None);
            format!("{input}.{}", b64(sig.as_ref()))
        })
        .collect();

    let set = |jwk: Value| json!({"keys": [jwk]}).to_string();
    let cases = json!({
        "issuer": ISSUER,
        "audience": AUDIENCE,
        "cases": [
            {"alg": "RS256", "jwks": set(rsa_jwk(&rsa_key, "micro-rs256")), "tokens": rs256},
            {"alg": "ES256", "jwks": set(es256_jwk), "tokens": es256},
            {"alg": "EdDSA", "jwks": set(ed_jwk), "tokens": eddsa},
        ],
    });
    write(out, &cases.to_string())
}

/// How `load` paces its requests.
#[derive(Clone, Copy)]
enum Pace {
    /// Open-loop: `total` requests, request `s` scheduled at `start + s / rps`; requests
    /// scheduled before `warmup` are sent but not counted.
    Rate { rps: f64, total: u64, warmup: f64 },
    /// Closed-loop: exactly `total` requests.
    Count { total: u64 },
}

#[derive(Default)]
struct Tally {
    latencies_us: Vec<u32>,
    ok: u64,
    non_200: u64,
    errors: u64,
}

/// `load ADDR TOKENS [options]`
fn load(args: &[String]) -> Res<()> {
    let addr = arg(args, 0, "ADDR")?.to_string();
    let path = arg(args, 1, "TOKENS")?;
    let mut opts = std::collections::HashMap::new();
    let mut headers = String::new();
    let mut rest = args.get(2..).unwrap_or_default().iter();
    while let Some(name) = rest.next() {
        let value = rest.next().ok_or_else(|| format!("{name} needs a value"))?;
        if name == "--header" {
            headers.push_str(value);
            headers.push_str("\r\n");
        } else {
            opts.insert(name.trim_start_matches("--").to_string(), value.clone());
        }
    }
    let method = opts.get("method").map_or("GET", String::as_str);
    let target = opts.get("path").map_or("/", String::as_str);
    let body = match opts.get("body") {
        Some(file) => std::fs::read(file).map_err(|e| format!("{file}: {e}"))?,
        None => Vec::new(),
    };
    if !body.is_empty() {
        headers.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    let opt = |name: &str, default: f64| -> Res<f64> {
        opts.get(name).map_or(Ok(default), |v| parse(v, name))
    };
    let connections = opt("connections", 32.0)?.max(1.0) as u64;
    let offset = opt("offset", 0.0)? as u64;
    let pace = if let Some(rps) = opts.get("rps") {
        let rps: f64 = parse(rps, "rps")?;
        let warmup = opt("warmup", 1.0)?;
        let total = (rps * (opt("seconds", 10.0)? + warmup)) as u64;
        Pace::Rate { rps, total, warmup }
    } else {
        Pace::Count {
            total: opt("requests", 10000.0)? as u64,
        }
    };

    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    let requests: Vec<Vec<u8>> = text
        .lines()
        .filter(|l| !l.is_empty())
        .map(|t| {
            let mut request = format!(
                "{method} {target} HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {t}\r\n\
                 {headers}\r\n"
            )
            .into_bytes();
            request.extend_from_slice(&body);
            request
        })
        .collect();
    if requests.is_empty() {
        return Err(format!("{path}: no tokens"));
    }

    let next = AtomicU64::new(0);
    let start = Instant::now() + Duration::from_millis(50);
    let tallies = on_threads(connections, "load", |w| {
        worker(&addr, &requests, offset, pace, w, connections, &next, start)
    })?;
    let elapsed = start.elapsed().as_secs_f64();

    let mut all = Tally::default();
    for t in tallies {
        all.latencies_us.extend(t.latencies_us);
        all.ok += t.ok;
        all.non_200 += t.non_200;
        all.errors += t.errors;
    }
    all.latencies_us.sort_unstable();
    let pct = |p: f64| -> f64 {
        let n = all.latencies_us.len();
        if n == 0 {
            return 0.0;
        }
        let i = ((p / 100.0) * n as f64).ceil() as usize;
        f64::from(
            all.latencies_us
                .get(i.saturating_sub(1).min(n - 1))
                .copied()
                .unwrap_or(0),
        ) / 1000.0
    };
    let (measured_s, target_rps) = match pace {
        Pace::Rate { rps, total, warmup } => (total as f64 / rps - warmup, rps),
        Pace::Count { .. } => (elapsed, 0.0),
    };
    let result = json!({
        "counted": all.latencies_us.len(),
        "ok": all.ok,
        "non_200": all.non_200,
        "errors": all.errors,
        "elapsed_s": elapsed,
        "target_rps": target_rps,
        "rps": all.latencies_us.len() as f64 / measured_s.max(1e-9),
        "p50_ms": pct(50.0),
        "p90_ms": pct(90.0),
        "p99_ms": pct(99.0),
        "p999_ms": pct(99.9),
        "max_ms": pct(100.0),
    });
    println!("{result}");
    Ok(())
}

/// One connection's loop. Open-loop: this worker owns slots `w, w+K, w+2K, …`.
#[allow(clippy::too_many_arguments)]
fn worker(
    addr: &str,
    requests: &[Vec<u8>],
    offset: u64,
    pace: Pace,
    w: u64,
    connections: u64,
    next: &AtomicU64,
    start: Instant,
) -> Tally {
    let mut tally = Tally::default();
    let mut conn: Option<Conn> = None;
    let mut slot = w;
    loop {
        let (s, scheduled, counted) = match pace {
            Pace::Rate { rps, total, warmup } => {
                if slot >= total {
                    break;
                }
                let at = slot as f64 / rps;
                let scheduled = start + Duration::from_secs_f64(at);
                let now = Instant::now();
                if scheduled > now {
                    std::thread::sleep(scheduled - now);
                }
                let s = slot;
                slot += connections;
                (s, scheduled, at >= warmup)
            }
            Pace::Count { total } => {
                let s = next.fetch_add(1, Ordering::Relaxed);
                if s >= total {
                    break;
                }
                (s, Instant::now(), true)
            }
        };
        let index = ((s + offset) % requests.len() as u64) as usize;
        let Some(request) = requests.get(index) else {
            break;
        };
        let outcome = match conn.as_mut() {
            Some(c) => c.exchange(request),
            None => Conn::open(addr).and_then(|c| {
                let c = conn.insert(c);
                c.exchange(request)
            }),
        };
        let latency = scheduled.elapsed();
        match outcome {
            Ok((status, keep_alive)) => {
                if !keep_alive {
                    conn = None;
                }
                if counted {
                    tally
                        .latencies_us
                        .push(u32::try_from(latency.as_micros()).unwrap_or(u32::MAX));
                    if status == 200 {
                        tally.ok += 1;
                    } else {
                        tally.non_200 += 1;
                    }
                }
            }
            Err(_) => {
                conn = None;
                if counted {
                    tally.errors += 1;
                }
            }
        }
    }
    tally
}

/// A keep-alive HTTP/1.1 connection that reads responses framed by `content-length`.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    fn open(addr: &str) -> std::io::Result<Conn> {
        let stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        Ok(Conn {
            stream,
            buf: Vec::with_capacity(4096),
        })
    }

    /// Sends one request and reads its whole response: the status code, and whether the
    /// connection stays open.
    fn exchange(&mut self, request: &[u8]) -> std::io::Result<(u16, bool)> {
        self.stream.write_all(request)?;
        let bad =
            |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
        let mut chunk = [0u8; 4096];
        let head_end = loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let n = self.stream.read(&mut chunk)?;
            if n == 0 {
                return Err(bad("connection closed"));
            }
            self.buf
                .extend_from_slice(chunk.get(..n).unwrap_or_default());
        };
        let head =
            String::from_utf8_lossy(self.buf.get(..head_end).unwrap_or_default()).to_string();
        let status: u16 = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad("no status"))?;
        let mut length = 0usize;
        for line in head.lines().skip(1) {
            if let Some((name, value)) = line.split_once(':') {
                let name = name.trim().to_ascii_lowercase();
                if name == "content-length" {
                    length = value.trim().parse().map_err(|_| bad("content-length"))?;
                } else if name == "transfer-encoding" {
                    return Err(bad("chunked responses are not supported"));
                }
            }
        }
        while self.buf.len() < head_end + length {
            let n = self.stream.read(&mut chunk)?;
            if n == 0 {
                return Err(bad("connection closed in the body"));
            }
            self.buf
                .extend_from_slice(chunk.get(..n).unwrap_or_default());
        }
        self.buf.drain(..head_end + length);
        let keep_alive = !head.to_ascii_lowercase().contains("\nconnection: close");
        Ok((status, keep_alive))
    }
}
