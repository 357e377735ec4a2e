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

use unsprawl::fixture::local_registry::LocalRegistry;

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
        unsprawl::fixture::local_registry::ensure_installed();
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
}

/// An HTTP proxy in front of a registry, one request per connection.
pub struct Proxy {
    pub port: u16,
    pub log: Arc<Mutex<Vec<(String, String)>>>,
    pub throttled: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Proxy {
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn start(upstream: u16, mode: ProxyMode) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let throttled = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (log2, thr2, stop2) = (log.clone(), throttled.clone(), stop.clone());
        std::thread::spawn(move || {
            let seen = Arc::new(AtomicUsize::new(0));
            let blobs = Arc::new(AtomicUsize::new(0));
            while !stop2.load(Ordering::Relaxed) {
                let Ok((client, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                let (log3, thr3, seen3, blobs3) =
                    (log2.clone(), thr2.clone(), seen.clone(), blobs.clone());
                std::thread::spawn(move || {
                    let _ = serve(client, upstream, mode, &log3, &thr3, &seen3, &blobs3);
                });
            }
        });
        Proxy {
            port,
            log,
            throttled,
            stop,
        }
    }

    pub fn paths(&self) -> Vec<(String, String)> {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn serve(
    mut client: TcpStream,
    upstream: u16,
    mode: ProxyMode,
    log: &Mutex<Vec<(String, String)>>,
    throttled: &AtomicUsize,
    seen: &AtomicUsize,
    blobs: &AtomicUsize,
) -> std::io::Result<()> {
    client.set_nonblocking(false)?;
    let mut reader = BufReader::new(client.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut head = Vec::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h.trim().is_empty() {
            break;
        }
        if !h.to_ascii_lowercase().starts_with("connection:") {
            head.push(h);
        }
    }
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let path = parts.next().unwrap_or("").to_string();
    log.lock().unwrap().push((method.clone(), path.clone()));
    let n = seen.fetch_add(1, Ordering::SeqCst) + 1;
    match mode {
        ProxyMode::Throttle { every } if n.is_multiple_of(every) => {
            throttled.fetch_add(1, Ordering::SeqCst);
            let body = r#"{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}"#;
            write!(
                client,
                "HTTP/1.1 429 Too Many Requests\r\nRetry-After: 1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )?;
            return Ok(());
        }
        ProxyMode::DieAfterBlobs { n: limit }
            if path.contains("/blobs/") && blobs.fetch_add(1, Ordering::SeqCst) >= limit =>
        {
            return Ok(()); // close without an answer, like a dead registry
        }
        _ => {}
    }
    let mut up = TcpStream::connect(("127.0.0.1", upstream))?;
    let mut out = request_line.into_bytes();
    for h in head {
        out.extend(h.into_bytes());
    }
    out.extend(b"Connection: close\r\n\r\n");
    up.write_all(&out)?;
    // a request body (none for the GET/HEAD a scan sends) would follow; copy what is buffered
    let buffered = reader.buffer().to_vec();
    if !buffered.is_empty() {
        up.write_all(&buffered)?;
    }
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let k = up.read(&mut buf)?;
        if k == 0 {
            break;
        }
        client.write_all(&buf[..k])?;
    }
    Ok(())
}
