//! A bearer-token server in front of a registry, for the registry auth tests: `/token` issues
//! tokens for HTTP basic credentials and logs each request's service and scopes; `/v2/…` is
//! passed on to the registry only with a live token covering the repository and action.

use std::collections::{BTreeSet, HashMap};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::auth::{AUTH_USER, b64};

pub const BEARER_PASSWORD: &str = "kiln-bearer-pw-91c2e6aa-s3cret";
pub const SERVICE: &str = "kiln-test";

/// One `GET /token`.
#[derive(Debug, Clone)]
pub struct TokenRequest {
    pub service: String,
    pub scopes: Vec<String>,
    /// Whether its basic credentials were the right ones.
    pub authenticated: bool,
}

/// A token the server issued: what it grants (repository → actions) and until when.
pub struct Issued {
    pub grants: Vec<(String, BTreeSet<String>)>,
    pub until: Instant,
}

#[derive(Default)]
pub struct Seen {
    pub tokens: Vec<TokenRequest>,
    /// `POST /token` (OAuth2 form); this server has no such endpoint and answers 404.
    pub token_posts: usize,
    /// Requests passed on to the registry: `METHOD PATH`.
    pub forwarded: Vec<String>,
    /// Requests answered 401 and why (`none`, `unknown`, `expired`, `scope`).
    pub refused: Vec<(String, &'static str)>,
    /// The heads of every request meant for the registry, for leak checks.
    pub heads: Vec<String>,
}

pub struct TokenState {
    pub seen: Seen,
    pub issued: HashMap<String, Issued>,
    pub next: u64,
    /// How long a token is good for (and the `expires_in` the server answers).
    pub lifetime: Duration,
    /// A wait before each request is passed on (so that a build outlives short tokens).
    pub delay: Duration,
}

/// The token server and the registry proxy, on one loopback port: `/token` issues bearer
/// tokens for HTTP basic credentials; `/v2/…` needs a live token whose grants cover the
/// repository and action, else 401 with a Bearer challenge naming the scope.
pub struct BearerProxy {
    pub port: u16,
    pub state: Arc<Mutex<TokenState>>,
}

impl BearerProxy {
    pub fn start(upstream: u16) -> BearerProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(TokenState {
            seen: Seen::default(),
            issued: HashMap::new(),
            next: 0,
            lifetime: Duration::from_secs(300),
            delay: Duration::ZERO,
        }));
        let st = state.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let st = st.clone();
                std::thread::spawn(move || serve(conn, port, upstream, &st));
            }
        });
        BearerProxy { port, state }
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn take(&self) -> Seen {
        std::mem::take(&mut self.state.lock().unwrap().seen)
    }

    pub fn set(&self, lifetime: Duration, delay: Duration) {
        let mut s = self.state.lock().unwrap();
        s.lifetime = lifetime;
        s.delay = delay;
    }
}

pub struct Request {
    pub method: String,
    pub target: String,
    pub head: String,
    pub body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

pub fn read_request(r: &mut impl BufRead) -> Option<Request> {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).ok()? == 0 {
            return None;
        }
        head.push_str(&line);
        if line == "\r\n" {
            break;
        }
    }
    let mut first = head.lines().next()?.split(' ');
    let method = first.next()?.to_string();
    let target = first.next()?.to_string();
    let mut req = Request {
        method,
        target,
        head,
        body: Vec::new(),
    };
    assert!(
        req.header("transfer-encoding").is_none(),
        "this proxy reads Content-Length bodies only: {}",
        req.head
    );
    let len: usize = req
        .header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    req.body = vec![0; len];
    r.read_exact(&mut req.body).ok()?;
    Some(req)
}

pub fn respond(w: &mut impl Write, status: &str, headers: &[(&str, String)], body: &[u8]) -> bool {
    let mut out = format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    w.write_all(out.as_bytes()).is_ok() && w.write_all(body).is_ok()
}

pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                match u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or(""), 16) {
                    Ok(v) => {
                        out.push(v);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub fn query(target: &str) -> Vec<(String, String)> {
    let Some((_, q)) = target.split_once('?') else {
        return Vec::new();
    };
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

/// `repository:NAME:A,B` → (NAME, {A, B}).
pub fn parse_scope(scope: &str) -> Option<(String, BTreeSet<String>)> {
    let rest = scope.strip_prefix("repository:")?;
    let (name, actions) = rest.rsplit_once(':')?;
    Some((
        name.to_string(),
        actions.split(',').map(str::to_string).collect(),
    ))
}

/// The (repository, action) pairs a registry request needs, as distribution's token auth
/// asks for them: pull to read; pull and push to write; pull on `from` for a mount.
pub fn required(method: &str, target: &str) -> Vec<(String, &'static str)> {
    let path = target.split('?').next().unwrap_or("");
    let Some(rest) = path.strip_prefix("/v2/") else {
        return Vec::new();
    };
    let name = ["/blobs/", "/manifests/", "/tags/"]
        .iter()
        .filter_map(|m| rest.rfind(m).map(|i| &rest[..i]))
        .min_by_key(|n| n.len());
    let Some(name) = name else {
        return Vec::new();
    };
    let mut need = vec![(name.to_string(), "pull")];
    if !matches!(method, "GET" | "HEAD") {
        need.push((name.to_string(), "push"));
    }
    if let Some((_, from)) = query(target).into_iter().find(|(k, _)| k == "from") {
        need.push((from, "pull"));
    }
    need
}

pub fn challenge_scope(need: &[(String, &str)]) -> String {
    let mut by_repo: Vec<(String, Vec<&str>)> = Vec::new();
    for (repo, action) in need {
        match by_repo.iter_mut().find(|(r, _)| r == repo) {
            Some((_, a)) => a.push(action),
            None => by_repo.push((repo.clone(), vec![action])),
        }
    }
    by_repo
        .iter()
        .map(|(r, a)| format!("repository:{r}:{}", a.join(",")))
        .collect::<Vec<_>>()
        .join(" ")
}

pub fn serve(conn: TcpStream, port: u16, upstream: u16, state: &Mutex<TokenState>) {
    let mut writer = conn.try_clone().unwrap();
    let mut reader = BufReader::new(conn);
    while let Some(req) = read_request(&mut reader) {
        let path = req.target.split('?').next().unwrap_or("").to_string();
        if path == "/token" {
            if !token(&req, &mut writer, state) {
                return;
            }
            continue;
        }
        let line = format!("{} {}", req.method, req.target);
        let need = required(&req.method, &req.target);
        let bearer = req
            .header("authorization")
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::to_string);
        let (refusal, delay) = {
            let mut s = state.lock().unwrap();
            s.seen.heads.push(req.head.clone());
            let refusal = match bearer.as_deref().map(|t| s.issued.get(t)) {
                None => Some("none"),
                Some(None) => Some("unknown"),
                Some(Some(t)) if Instant::now() > t.until => Some("expired"),
                Some(Some(t)) => need
                    .iter()
                    .any(|(repo, action)| {
                        !t.grants
                            .iter()
                            .any(|(r, a)| r == repo && a.contains(*action))
                    })
                    .then_some("scope"),
            };
            match refusal {
                Some(why) => s.seen.refused.push((line.clone(), why)),
                None => s.seen.forwarded.push(line.clone()),
            }
            (refusal, s.delay)
        };
        if refusal.is_some() {
            let mut challenge =
                format!("Bearer realm=\"http://127.0.0.1:{port}/token\",service=\"{SERVICE}\"");
            if !need.is_empty() {
                challenge.push_str(&format!(",scope=\"{}\"", challenge_scope(&need)));
            }
            let body =
                br#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#;
            if !respond(
                &mut writer,
                "401 Unauthorized",
                &[
                    ("WWW-Authenticate", challenge),
                    ("Content-Type", "application/json".into()),
                ],
                body,
            ) {
                return;
            }
            continue;
        }
        std::thread::sleep(delay);
        // Pass it on without the token, on a connection of its own, and relay the answer.
        let Ok(mut up) = TcpStream::connect(("127.0.0.1", upstream)) else {
            return;
        };
        let mut head = String::new();
        for l in req.head.lines() {
            let name = l.split(':').next().unwrap_or("").trim();
            if name.eq_ignore_ascii_case("authorization") || name.eq_ignore_ascii_case("connection")
            {
                continue;
            }
            if l.is_empty() {
                break;
            }
            head.push_str(l);
            head.push_str("\r\n");
        }
        head.push_str("Connection: close\r\n\r\n");
        if up.write_all(head.as_bytes()).is_err() || up.write_all(&req.body).is_err() {
            return;
        }
        let mut answer = Vec::new();
        let _ = up.read_to_end(&mut answer);
        let _ = writer.write_all(&answer);
        // The registry answered `Connection: close`: so does this connection.
        return;
    }
}

/// `/token`: GET with basic credentials issues a token for the scopes asked; the OAuth2 POST
/// is not served (404), so a client falls back to GET.
pub fn token(req: &Request, w: &mut impl Write, state: &Mutex<TokenState>) -> bool {
    if req.method == "POST" {
        state.lock().unwrap().seen.token_posts += 1;
        return respond(w, "404 Not Found", &[], b"404 page not found\n");
    }
    let q = query(&req.target);
    let service = q
        .iter()
        .find(|(k, _)| k == "service")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    let scopes: Vec<String> = q
        .iter()
        .filter(|(k, _)| k == "scope")
        .flat_map(|(_, v)| v.split(' ').map(str::to_string).collect::<Vec<_>>())
        .filter(|s| !s.is_empty())
        .collect();
    let expected = format!("Basic {}", b64(&format!("{AUTH_USER}:{BEARER_PASSWORD}")));
    let authenticated = req.header("authorization") == Some(expected.as_str());
    let mut s = state.lock().unwrap();
    s.seen.tokens.push(TokenRequest {
        service: service.clone(),
        scopes: scopes.clone(),
        authenticated,
    });
    if !authenticated || service != SERVICE {
        drop(s);
        return respond(
            w,
            "401 Unauthorized",
            &[("WWW-Authenticate", "Basic realm=\"kiln-test\"".into())],
            br#"{"details":"incorrect username or password"}"#,
        );
    }
    s.next += 1;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let token = format!("kt{}x{nanos:08x}", s.next);
    let lifetime = s.lifetime;
    s.issued.insert(
        token.clone(),
        Issued {
            grants: scopes.iter().filter_map(|sc| parse_scope(sc)).collect(),
            until: Instant::now() + lifetime,
        },
    );
    drop(s);
    let body = format!(
        r#"{{"token":"{token}","expires_in":{}}}"#,
        lifetime.as_secs().max(1)
    );
    respond(
        w,
        "200 OK",
        &[("Content-Type", "application/json".into())],
        body.as_bytes(),
    )
}

/// A token request's scopes as (repository, actions) sets, for comparing without order.
pub fn scope_set(t: &TokenRequest) -> BTreeSet<(String, BTreeSet<String>)> {
    t.scopes
        .iter()
        .map(|s| parse_scope(s).unwrap_or_else(|| panic!("not a repository scope: {s:?}")))
        .collect()
}

pub fn actions(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|s| s.to_string()).collect()
}
