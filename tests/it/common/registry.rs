//! A real CNCF distribution registry for the tests (Debian `docker-registry` 2.8), on a
//! free loopback port with its own data dir, stopped by PID when dropped; optionally
//! with htpasswd basic auth or token auth (a small token server here signs RS256 JWTs
//! with `openssl`). Plus a proxy that can throttle (429 + Retry-After), drop
//! connections, and log every request path.
//!
//! The tools are installed with apt-get when missing, so the tests run on a fresh machine.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use unsprawl_testkit::local_registry::LocalRegistry;

use base64::Engine;

pub enum Auth {
    None,
    Basic { user: String, password: String },
    Token { user: String, password: String },
}

pub struct Registry {
    pub port: u16,
    inner: LocalRegistry,
    _dir: tempfile::TempDir,
    _token: Option<TokenServer>,
}

impl Registry {
    pub fn host(&self) -> String {
        self.inner.host()
    }

    pub fn start(auth: Auth) -> Registry {
        unsprawl_testkit::local_registry::ensure_installed();
        let dir = tempfile::tempdir().unwrap();
        let mut auth_yaml = String::new();
        let mut token = None;
        match &auth {
            Auth::None => {}
            Auth::Basic { user, password } => {
                let out = Command::new("htpasswd")
                    .args(["-Bbn", user, password])
                    .output()
                    .unwrap();
                assert!(out.status.success());
                let file = dir.path().join("htpasswd");
                std::fs::write(&file, out.stdout).unwrap();
                auth_yaml = format!(
                    "auth:\n  htpasswd:\n    realm: test\n    path: {}\n",
                    file.display()
                );
            }
            Auth::Token { user, password } => {
                let t = TokenServer::start(dir.path(), user, password);
                auth_yaml = format!(
                    "auth:\n  token:\n    realm: http://127.0.0.1:{}/token\n    service: test-registry\n    issuer: test-issuer\n    rootcertbundle: {}\n",
                    t.port,
                    t.cert.display()
                );
                token = Some(t);
            }
        }
        let inner = LocalRegistry::start(dir.path(), &auth_yaml).expect("the registry starts");
        Registry {
            port: inner.port,
            inner,
            _dir: dir,
            _token: token,
        }
    }

    /// Stop it now (a registry dying mid-scan).
    pub fn kill(&mut self) {
        self.inner.kill();
    }
}

/// Push the fixture images named (all tagged specs when empty) with the binary.
pub fn push_fixtures(host: &str, spec_dirs: &[&str], names: &[&str], creds: Option<(&str, &str)>) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_unsprawl"));
    cmd.current_dir(super::repo())
        .args(["fixtures", "--specs", "fixtures/images"]);
    for d in spec_dirs {
        cmd.args(["--specs", d]);
    }
    cmd.args(["--files", "fixtures", "--push", host])
        .args(names);
    if let Some((u, p)) = creds {
        cmd.env("UNSPRAWL_PUSH_USER", u)
            .env("UNSPRAWL_PUSH_PASSWORD", p);
    }
    // a loopback push can still meet a registry settling in: try it a few times
    let mut last = String::new();
    for _ in 0..3 {
        let out = cmd.output().unwrap();
        if out.status.success() {
            return;
        }
        last = String::from_utf8_lossy(&out.stderr).into_owned();
        eprintln!("push failed, retrying: {last}");
        std::thread::sleep(Duration::from_millis(500));
    }
    panic!("push failed three times: {last}");
}

/// A token service: answers `GET /token?service=…&scope=…` for one user with a JWT the
/// registry trusts (RS256, certificate in `x5c`).
struct TokenServer {
    port: u16,
    cert: PathBuf,
    stop: Arc<AtomicBool>,
}

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

impl TokenServer {
    fn start(dir: &Path, user: &str, password: &str) -> TokenServer {
        let key = dir.join("token.key");
        let cert = dir.join("token.crt");
        let st = Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=unsprawl-test-token",
            ])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(st.success(), "openssl makes a key");
        let der = Command::new("openssl")
            .args(["x509", "-outform", "DER", "-in"])
            .arg(&cert)
            .output()
            .unwrap()
            .stdout;
        let x5c = base64::engine::general_purpose::STANDARD.encode(der);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let expected = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        );
        let (stop2, key2, user2) = (stop.clone(), key.clone(), user.to_string());
        std::thread::spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                let Ok((mut s, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                };
                s.set_nonblocking(false).unwrap();
                let (path, headers) = read_head(&mut s);
                let authorized = headers
                    .iter()
                    .any(|(k, v)| k.eq_ignore_ascii_case("authorization") && *v == expected);
                if !authorized {
                    let _ = s.write_all(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                    continue;
                }
                let query = path.split_once('?').map(|(_, q)| q).unwrap_or("");
                let pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
                    .into_owned()
                    .collect();
                let access: Vec<serde_json::Value> = pairs
                    .iter()
                    .filter(|(k, _)| k == "scope")
                    .filter_map(|(_, v)| {
                        let (typ, rest) = v.split_once(':')?;
                        let (name, actions) = rest.rsplit_once(':')?;
                        Some(serde_json::json!({"type": typ, "name": name, "actions": actions.split(',').collect::<Vec<_>>()}))
                    })
                    .collect();
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_secs();
                let header = serde_json::json!({"typ": "JWT", "alg": "RS256", "x5c": [x5c]});
                let claims = serde_json::json!({
                    "iss": "test-issuer", "sub": user2, "aud": "test-registry",
                    "exp": now + 600, "nbf": now - 10, "iat": now, "jti": format!("{now}-{port}"),
                    "access": access,
                });
                let signing_input = format!(
                    "{}.{}",
                    b64url(&serde_json::to_vec(&header).unwrap()),
                    b64url(&serde_json::to_vec(&claims).unwrap())
                );
                let mut child = Command::new("openssl")
                    .args(["dgst", "-sha256", "-sign"])
                    .arg(&key2)
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .spawn()
                    .unwrap();
                child
                    .stdin
                    .take()
                    .unwrap()
                    .write_all(signing_input.as_bytes())
                    .unwrap();
                let sig = child.wait_with_output().unwrap().stdout;
                let jwt = format!("{signing_input}.{}", b64url(&sig));
                let body =
                    serde_json::json!({"token": jwt, "access_token": jwt, "expires_in": 600})
                        .to_string();
                let _ = write!(
                    s,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        TokenServer { port, cert, stop }
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Read an HTTP request head: (request target, headers).
fn read_head(s: &mut TcpStream) -> (String, Vec<(String, String)>) {
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut line = String::new();
    r.read_line(&mut line).unwrap_or(0);
    let target = line.split_whitespace().nth(1).unwrap_or("/").to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.trim_end().split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    (target, headers)
}

/// What the proxy does to the requests it sees.
#[derive(Clone, Copy)]
pub enum ProxyMode {
    /// Forward everything.
    Pass,
    /// Answer every `n`th request with 429 and `Retry-After: 1`.
    Throttle { every: usize },
    /// Forward the first `n` blob requests, then close every connection unanswered.
    DieAfterBlobs { n: usize },
    /// Inject faults at random (seeded), each with its own chance.
    Faults(Faults),
}

/// Faults per request, each a chance in a thousand, drawn from `seed`.
#[derive(Clone, Copy, Default)]
pub struct Faults {
    pub seed: u64,
    /// Close the connection without an answer (a reset).
    pub reset: u32,
    /// 429 with `Retry-After: 1`.
    pub throttle: u32,
    /// 503 with `Retry-After: 0`.
    pub unavailable: u32,
    /// Forward a blob's answer but cut its body half way.
    pub truncate: u32,
    /// The first this many blob requests trickle their body, a byte every 200 ms.
    pub trickle_first: usize,
    /// At this blob request the registry goes away for this long (kill and restart).
    pub outage: Option<(usize, Duration)>,
    /// The answers of these writes (PATCH, and POSTs but `…/filter` reads), counted from
    /// 1, are lost after the server acted on them: the client cannot tell it did.
    pub lose_answer_of_writes: &'static [usize],
}

/// What a proxy injected, by kind.
pub type Injected = Arc<Mutex<std::collections::BTreeMap<&'static str, usize>>>;

/// An HTTP proxy in front of a registry, one request per connection.
pub struct Proxy {
    pub port: u16,
    pub log: Arc<Mutex<Vec<(String, String)>>>,
    pub throttled: Arc<AtomicUsize>,
    pub injected: Injected,
    /// While set, the registry is gone: connections close unanswered, answers in flight
    /// break off.
    pub down: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
}

/// What every connection of a proxy shares.
#[derive(Clone)]
struct Ctx {
    upstream: u16,
    mode: ProxyMode,
    log: Arc<Mutex<Vec<(String, String)>>>,
    throttled: Arc<AtomicUsize>,
    injected: Injected,
    down: Arc<AtomicBool>,
    seen: Arc<AtomicUsize>,
    blobs: Arc<AtomicUsize>,
    writes: Arc<AtomicUsize>,
}

impl Ctx {
    fn inject(&self, kind: &'static str) {
        *self.injected.lock().unwrap().entry(kind).or_default() += 1;
    }
}

/// splitmix64: a seeded draw per request.
fn draw(seed: u64, n: usize) -> u64 {
    let mut z = seed.wrapping_add((n as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Proxy {
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn start(upstream: u16, mode: ProxyMode) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let ctx = Ctx {
            upstream,
            mode,
            log: Arc::new(Mutex::new(Vec::new())),
            throttled: Arc::new(AtomicUsize::new(0)),
            injected: Default::default(),
            down: Arc::new(AtomicBool::new(false)),
            seen: Arc::new(AtomicUsize::new(0)),
            blobs: Arc::new(AtomicUsize::new(0)),
            writes: Arc::new(AtomicUsize::new(0)),
        };
        let stop = Arc::new(AtomicBool::new(false));
        let proxy = Proxy {
            port,
            log: ctx.log.clone(),
            throttled: ctx.throttled.clone(),
            injected: ctx.injected.clone(),
            down: ctx.down.clone(),
            stop: stop.clone(),
        };
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let Ok((client, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                let ctx = ctx.clone();
                std::thread::spawn(move || {
                    let _ = serve(client, &ctx);
                });
            }
        });
        proxy
    }

    pub fn paths(&self) -> Vec<(String, String)> {
        self.log.lock().unwrap().clone()
    }

    pub fn injected(&self) -> std::collections::BTreeMap<&'static str, usize> {
        self.injected.lock().unwrap().clone()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A registry's 429 body.
const SLOW_DOWN: &str = r#"{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}"#;

fn serve(mut client: TcpStream, ctx: &Ctx) -> std::io::Result<()> {
    client.set_nonblocking(false)?;
    if ctx.down.load(Ordering::SeqCst) {
        return Ok(()); // nobody there
    }
    let mut reader = BufReader::new(client.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut head = Vec::new();
    let mut content_length = 0usize;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h.trim().is_empty() {
            break;
        }
        let lower = h.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            content_length = v.trim().parse().unwrap_or(0);
        }
        if !lower.starts_with("connection:") {
            head.push(h);
        }
    }
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let path = parts.next().unwrap_or("").to_string();
    ctx.log.lock().unwrap().push((method.clone(), path.clone()));
    let n = ctx.seen.fetch_add(1, Ordering::SeqCst) + 1;
    let blob = path.contains("/blobs/") && method == "GET";
    let answer = |client: &mut TcpStream, status: &str, extra: &str, body: &str| {
        write!(
            client,
            "HTTP/1.1 {status}\r\n{extra}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    };
    let mut truncate = false;
    let mut trickle = false;
    let mut lose_answer = false;
    match ctx.mode {
        ProxyMode::Throttle { every } if n.is_multiple_of(every) => {
            ctx.throttled.fetch_add(1, Ordering::SeqCst);
            return answer(
                &mut client,
                "429 Too Many Requests",
                "Retry-After: 1\r\n",
                SLOW_DOWN,
            );
        }
        ProxyMode::DieAfterBlobs { n: limit }
            if path.contains("/blobs/") && ctx.blobs.fetch_add(1, Ordering::SeqCst) >= limit =>
        {
            return Ok(()); // close without an answer, like a dead registry
        }
        ProxyMode::Faults(f) => {
            let nth_blob = if blob {
                ctx.blobs.fetch_add(1, Ordering::SeqCst)
            } else {
                usize::MAX
            };
            if let Some((at, long)) = f.outage
                && nth_blob == at
            {
                ctx.inject("outage");
                ctx.down.store(true, Ordering::SeqCst);
                let down = ctx.down.clone();
                std::thread::spawn(move || {
                    std::thread::sleep(long);
                    down.store(false, Ordering::SeqCst);
                });
                return Ok(());
            }
            let write = method == "PATCH" || (method == "POST" && !path.ends_with("/filter"));
            if write {
                let nth = ctx.writes.fetch_add(1, Ordering::SeqCst) + 1;
                if f.lose_answer_of_writes.contains(&nth) {
                    lose_answer = true;
                    ctx.inject("lost answer");
                }
            }
            if lose_answer {
                // forwarded below, its answer dropped
            } else if nth_blob < f.trickle_first {
                trickle = true;
                ctx.inject("trickle");
            } else {
                let roll = (draw(f.seed, n) % 1000) as u32;
                let mut edge = f.reset;
                if roll < edge {
                    ctx.inject("reset");
                    return Ok(());
                }
                edge += f.throttle;
                if roll < edge {
                    ctx.inject("429");
                    ctx.throttled.fetch_add(1, Ordering::SeqCst);
                    return answer(
                        &mut client,
                        "429 Too Many Requests",
                        "Retry-After: 1\r\n",
                        SLOW_DOWN,
                    );
                }
                edge += f.unavailable;
                if roll < edge {
                    ctx.inject("503");
                    return answer(
                        &mut client,
                        "503 Service Unavailable",
                        "Retry-After: 0\r\n",
                        "{}",
                    );
                }
                edge += f.truncate;
                if roll < edge && blob {
                    truncate = true;
                    ctx.inject("truncated");
                }
            }
        }
        _ => {}
    }
    let mut up = TcpStream::connect(("127.0.0.1", ctx.upstream))?;
    let mut out = request_line.into_bytes();
    for h in head {
        out.extend(h.into_bytes());
    }
    out.extend(b"Connection: close\r\n\r\n");
    // the request body (a PATCH's, a POST's) follows
    let mut body = vec![0u8; content_length];
    reader.read_exact(&mut body)?;
    out.extend(body);
    up.write_all(&out)?;
    if lose_answer {
        let mut whole = vec![];
        up.read_to_end(&mut whole)?;
        return Ok(()); // the server acted; the client hears nothing
    }
    if truncate || trickle {
        let mut whole = vec![];
        up.read_to_end(&mut whole)?;
        let split = whole
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map_or(whole.len(), |i| i + 4);
        let (head, body) = whole.split_at(split);
        client.write_all(head)?;
        if truncate {
            client.write_all(&body[..body.len() / 2])?;
            return Ok(()); // and close: the body broke off
        }
        for b in body {
            if ctx.down.load(Ordering::SeqCst) {
                return Ok(());
            }
            client.write_all(std::slice::from_ref(b))?;
            std::thread::sleep(Duration::from_millis(200));
        }
        return Ok(());
    }
    let mut buf = vec![0u8; 64 << 10];
    loop {
        if ctx.down.load(Ordering::SeqCst) {
            return Ok(()); // the registry died mid-answer
        }
        let k = up.read(&mut buf)?;
        if k == 0 {
            break;
        }
        client.write_all(&buf[..k])?;
    }
    Ok(())
}
