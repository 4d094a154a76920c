//! `http://` and `https://` sources: one downloaded file in a new layer (BuildKit's
//! source/http).
//!
//! The key is computed from the content, as BuildKit's is: `cache_key` downloads the file into
//! the blob store (bounded, hashed while streaming) unless `http.checksum` pins the content, and
//! keys on its digest, the file name, mode, owner and Last-Modified. A small record per URL
//! (`root/http/<url hash>.json`) keeps the ETag of the last download, so the next build asks
//! with `If-None-Match` and a 304 reuses the stored blob without transferring it again.

use crate::Worker;
use crate::store::Ref;
use async_trait::async_trait;
use kiln_solver::{EventKind, ExecContext, Inputs, OpError, Operation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256, Sha384, Sha512};
use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

/// The largest download accepted unless `KILN_HTTP_MAX_SIZE` (bytes) says otherwise.
const DEFAULT_MAX_SIZE: u64 = 4 << 30;
pub const MAX_SIZE_ENV: &str = "KILN_HTTP_MAX_SIZE";

pub struct HttpSource {
    pub worker: Arc<Worker>,
    /// The identifier: the whole URL.
    pub url: String,
    pub attrs: BTreeMap<String, String>,
    /// What `cache_key` found, for `execute` to use (the same content the key names).
    pub resolved: tokio::sync::Mutex<Option<Resolved>>,
}

#[derive(Debug, Clone)]
pub struct Resolved {
    digest: String,
    filename: String,
    last_modified: Option<String>,
}

/// The source's attributes, validated.
#[derive(Debug, Default)]
struct Attrs {
    checksum: Option<Checksum>,
    filename: String,
    perm: u32,
    uid: u32,
    gid: u32,
    headers: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Checksum {
    algo: &'static str,
    hex: String,
}

impl std::fmt::Display for Checksum {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.algo, self.hex)
    }
}

/// Go's `digest.Parse`: `sha256|sha384|sha512:` and lowercase hex of the right length.
fn parse_checksum(s: &str) -> Result<Checksum, String> {
    let (algo, hex) = s
        .split_once(':')
        .ok_or_else(|| format!("invalid checksum digest format: {s:?}"))?;
    let (algo, len) = match algo {
        "sha256" => ("sha256", 64),
        "sha384" => ("sha384", 96),
        "sha512" => ("sha512", 128),
        _ => return Err(format!("unsupported digest algorithm: {s:?}")),
    };
    if hex.len() != len || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(format!("invalid checksum digest length or encoding: {s:?}"));
    }
    Ok(Checksum {
        algo,
        hex: hex.to_string(),
    })
}

/// Go's `strconv.ParseInt(v, 0, 64)` for the small non-negative numbers these attributes hold.
fn parse_int(key: &str, v: &str) -> Result<u32, String> {
    let bad = || format!("source attribute {key}={v:?}: not a number");
    let r = if let Some(h) = v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        u32::from_str_radix(h, 16)
    } else if let Some(o) = v.strip_prefix("0o").or_else(|| v.strip_prefix("0O")) {
        u32::from_str_radix(o, 8)
    } else if v.len() > 1 && v.starts_with('0') {
        u32::from_str_radix(&v[1..], 8)
    } else {
        v.parse()
    };
    r.map_err(|_| bad())
}

impl Attrs {
    fn parse(url: &str, attrs: &BTreeMap<String, String>) -> Result<Attrs, String> {
        let mut a = Attrs::default();
        for (k, v) in attrs {
            match k.as_str() {
                "http.checksum" => {
                    a.checksum = Some(parse_checksum(v).map_err(|e| format!("{url}: {e}"))?)
                }
                "http.filename" => a.filename = v.clone(),
                "http.perm" => a.perm = parse_int(k, v)?,
                "http.uid" => a.uid = parse_int(k, v)?,
                "http.gid" => a.gid = parse_int(k, v)?,
                _ => {
                    if let Some(name) = k.strip_prefix("http.header.") {
                        // BuildKit passes only these two user headers and drops the rest.
                        let name = name.to_ascii_lowercase();
                        if name == "accept" || name == "user-agent" {
                            a.headers.push((name, v.clone()));
                        }
                    } else if k.starts_with("http.") {
                        // Secrets and signatures need a session Kiln does not have yet.
                        return Err(format!("{url}: source attribute {k} is not supported yet"));
                    }
                }
            }
        }
        a.headers.sort();
        Ok(a)
    }
}

/// What the last download of a URL left: sent back as `If-None-Match` next time.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct UrlRecord {
    etag: String,
    digest: String,
    #[serde(default)]
    last_modified: Option<String>,
}

fn client() -> Result<&'static reqwest::Client, OpError> {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    if let Some(c) = CLIENT.get() {
        return Ok(c);
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    let c = reqwest::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(30))
        .read_timeout(std::time::Duration::from_secs(120))
        .redirect(reqwest::redirect::Policy::limited(10))
        .user_agent(concat!("kiln/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("http client: {e}"))?;
    Ok(CLIENT.get_or_init(|| c))
}

fn max_size() -> u64 {
    std::env::var(MAX_SIZE_ENV)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_MAX_SIZE)
}

impl HttpSource {
    fn attrs(&self) -> Result<Attrs, OpError> {
        Ok(Attrs::parse(&self.url, &self.attrs)?)
    }

    /// BuildKit's `urlHash`: what identifies one download of this URL.
    fn url_hash(&self, a: &Attrs) -> String {
        let v = serde_json::json!({
            "url": self.url, "filename": a.filename, "perm": a.perm, "uid": a.uid,
            "gid": a.gid, "headers": a.headers,
        });
        hex::encode(Sha256::digest(v.to_string().as_bytes()))
    }

    fn record_path(&self, a: &Attrs) -> PathBuf {
        self.worker
            .store
            .root()
            .join("http")
            .join(format!("{}.json", self.url_hash(a)))
    }

    fn load_record(&self, a: &Attrs) -> Option<UrlRecord> {
        let bytes = std::fs::read(self.record_path(a)).ok()?;
        let r: UrlRecord = serde_json::from_slice(&bytes).ok()?;
        // Only worth an If-None-Match if the content is still here.
        self.worker.store.blobs.has(&r.digest).then_some(r)
    }

    fn save_record(&self, a: &Attrs, r: &UrlRecord) -> Result<(), OpError> {
        let path = self.record_path(a);
        let dir = path.parent().expect("record has a directory");
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let tmp = self
            .worker
            .store
            .tmp_dir()
            .join(format!("http-record-{:016x}", rand::random::<u64>()));
        std::fs::write(&tmp, serde_json::to_vec(r)?)
            .and_then(|_| std::fs::rename(&tmp, &path))
            .map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(())
    }

    fn request(&self, a: &Attrs) -> Result<reqwest::RequestBuilder, OpError> {
        let mut req = client()?.get(&self.url);
        for (k, v) in &a.headers {
            req = req.header(k.as_str(), v.as_str());
        }
        Ok(req)
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<reqwest::Response, OpError> {
        req.send()
            .await
            .map_err(|e| format!("GET {}: {}", self.url, error_chain(&e)).into())
    }

    /// Fetches the URL (conditionally when a record exists) and returns what the key names.
    async fn resolve(&self, a: &Attrs, ctx: Option<&ExecContext>) -> Result<Resolved, OpError> {
        let record = self.load_record(a);
        let mut req = self.request(a)?;
        if let Some(r) = &record {
            req = req.header("If-None-Match", r.etag.as_str());
        }
        let resp = self.send(req).await?;
        if resp.status() == reqwest::StatusCode::NOT_MODIFIED {
            let r = record.ok_or_else(|| {
                format!(
                    "GET {}: 304 Not Modified to an unconditional request",
                    self.url
                )
            })?;
            let etag = resp.headers().get("etag").and_then(|v| v.to_str().ok());
            if etag.is_some_and(|t| etag_value(t) != r.etag) {
                return Err(format!("GET {}: 304 Not Modified with another ETag", self.url).into());
            }
            return Ok(Resolved {
                digest: r.digest,
                filename: file_name(&self.url, &a.filename, Some(&resp)),
                last_modified: r.last_modified,
            });
        }
        let filename = file_name(&self.url, &a.filename, Some(&resp));
        let etag = header(&resp, "etag").map(|t| etag_value(&t).to_string());
        let last_modified = header(&resp, "last-modified");
        if let Some(ctx) = ctx {
            ctx.progress.send(
                &ctx.vertex,
                "",
                EventKind::Info {
                    message: format!("downloading {}", self.url),
                },
            );
        }
        let digest = self.download(resp, a.checksum.as_ref()).await?;
        if let Some(etag) = etag {
            self.save_record(
                a,
                &UrlRecord {
                    etag,
                    digest: digest.clone(),
                    last_modified: last_modified.clone(),
                },
            )?;
        }
        Ok(Resolved {
            digest,
            filename,
            last_modified,
        })
    }

    /// Streams a 2xx response into the blob store: at most the size limit, verified against
    /// `checksum` when there is one. Returns the content's sha256 digest.
    async fn download(
        &self,
        mut resp: reqwest::Response,
        checksum: Option<&Checksum>,
    ) -> Result<String, OpError> {
        let url = self.url.clone();
        if !resp.status().is_success() {
            return Err(format!("GET {url}: invalid response status {}", resp.status()).into());
        }
        let max = max_size();
        if let Some(len) = resp.content_length()
            && len > max
        {
            return Err(format!("GET {url}: {len} bytes is more than the limit of {max}").into());
        }
        let blobs = self.worker.store.blobs.clone();
        let (tx, mut rx) = tokio::sync::mpsc::channel(8);
        let expected = checksum.cloned();
        let url2 = url.clone();
        // File writes off the async workers; the channel carries the body's chunks.
        let writer = tokio::task::spawn_blocking(move || -> Result<String, OpError> {
            let mut ingest = match expected.as_ref().filter(|c| c.algo == "sha256") {
                Some(c) => blobs.begin(&c.to_string(), None)?,
                None => blobs.begin_computed()?,
            };
            let mut other = OtherHash::new(expected.as_ref());
            while let Some(chunk) = rx.blocking_recv() {
                let chunk: Vec<u8> = chunk;
                ingest
                    .write_all(&chunk)
                    .map_err(|e| format!("GET {url2}: storing: {e}"))?;
                other.update(&chunk);
            }
            if let (Some(c), Some(got)) = (&expected, other.finish())
                && got != c.hex
            {
                return Err(mismatch(&url2, c, &format!("{}:{got}", c.algo)));
            }
            let committed = ingest
                .commit_computed()
                .map_err(|e| match (&expected, &e) {
                    (Some(c), kiln_content::blobs::BlobError::DigestMismatch { actual, .. }) => {
                        mismatch(&url2, c, actual)
                    }
                    _ => format!("GET {url2}: storing: {e}").into(),
                })?;
            Ok(committed.digest)
        });
        let mut received = 0u64;
        let streamed: Result<(), OpError> = async {
            loop {
                let chunk = resp
                    .chunk()
                    .await
                    .map_err(|e| format!("GET {url}: reading the body: {}", error_chain(&e)))?;
                let Some(chunk) = chunk else { break };
                received += chunk.len() as u64;
                if received > max {
                    return Err(format!("GET {url}: more than the limit of {max} bytes").into());
                }
                if tx.send(chunk.to_vec()).await.is_err() {
                    break; // the writer failed; its error is the one to report
                }
            }
            Ok(())
        }
        .await;
        drop(tx);
        let written = writer.await?;
        streamed?;
        written
    }

    /// A layer holding the blob as the one file BuildKit writes.
    async fn layer(&self, a: &Attrs, r: &Resolved) -> Result<Ref, OpError> {
        let store = self.worker.store.clone();
        let blob = store.blobs.path(&r.digest)?;
        let name = r.filename.clone();
        let mode = if a.perm == 0 { 0o600 } else { a.perm & 0o7777 };
        let (uid, gid) = (a.uid, a.gid);
        let mtime = r
            .last_modified
            .as_deref()
            .and_then(parse_http_date)
            .unwrap_or(0);
        let url = self.url.clone();
        tokio::task::spawn_blocking(move || -> Result<Ref, OpError> {
            use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
            let layer = store.new_layer()?;
            let dest = layer.dir.join(&name);
            let named = |e: std::io::Error| format!("{url}: writing {name}: {e}");
            let mut src = std::fs::File::open(&blob).map_err(named)?;
            let mut out = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&dest)
                .map_err(named)?;
            std::io::copy(&mut src, &mut out).map_err(named)?;
            out.sync_all().map_err(named)?;
            drop(out);
            // Set after creating: the process umask must not change the mode.
            std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(mode))
                .map_err(named)?;
            if uid != 0 || gid != 0 {
                std::os::unix::fs::lchown(&dest, Some(uid), Some(gid)).map_err(named)?;
            }
            let t = filetime::FileTime::from_unix_time(mtime, 0);
            filetime::set_file_times(&dest, t, t).map_err(named)?;
            store.finish_layer(&layer);
            Ok(Ref::scratch().with_layer(&layer.id))
        })
        .await?
    }
}

#[async_trait]
impl Operation<Ref> for HttpSource {
    async fn cache_key(&self, _: &Inputs<'_, Ref>) -> Result<String, OpError> {
        let a = self.attrs()?;
        let resolved = match &a.checksum {
            // Pinned content needs no request to be keyed (BuildKit's resolveMetadataStatic).
            Some(c) => Resolved {
                digest: c.to_string(),
                filename: file_name(&self.url, &a.filename, None),
                last_modified: None,
            },
            None => self.resolve(&a, None).await?,
        };
        let key = serde_json::json!({
            "Filename": resolved.filename, "Perm": a.perm, "UID": a.uid, "GID": a.gid,
            "Checksum": resolved.digest,
            "LastModTime": resolved.last_modified.clone().unwrap_or_default(),
            "Header": a.headers,
        });
        *self.resolved.lock().await = Some(resolved);
        Ok(format!(
            "http:sha256:{}",
            hex::encode(Sha256::digest(key.to_string().as_bytes()))
        ))
    }

    async fn execute(&self, _: &Inputs<'_, Ref>, ctx: &ExecContext) -> Result<Vec<Ref>, OpError> {
        let a = self.attrs()?;
        let resolved = self.resolved.lock().await.clone();
        let resolved = match resolved {
            Some(r) if self.worker.store.blobs.has(&r.digest) => r,
            // Pinned by checksum and not stored yet (or the blob went away): download now.
            Some(pinned) => {
                let r = self.resolve(&a, Some(ctx)).await?;
                if a.checksum.is_none() && r.digest != pinned.digest {
                    return Err(format!(
                        "{}: the content changed while building ({} then {})",
                        self.url, pinned.digest, r.digest
                    )
                    .into());
                }
                Resolved {
                    filename: pinned.filename,
                    ..r
                }
            }
            None => self.resolve(&a, Some(ctx)).await?,
        };
        Ok(vec![self.layer(&a, &resolved).await?])
    }
}

fn mismatch(url: &str, want: &Checksum, got: &str) -> OpError {
    format!("digest mismatch for {url}: {got} (expected: {want})").into()
}

/// The other algorithms `http.checksum` may name (sha256 is checked by the blob store).
enum OtherHash {
    None,
    Sha384(Sha384),
    Sha512(Sha512),
}

impl OtherHash {
    fn new(c: Option<&Checksum>) -> OtherHash {
        match c.map(|c| c.algo) {
            Some("sha384") => OtherHash::Sha384(Sha384::new()),
            Some("sha512") => OtherHash::Sha512(Sha512::new()),
            _ => OtherHash::None,
        }
    }
    fn update(&mut self, b: &[u8]) {
        match self {
            OtherHash::None => {}
            OtherHash::Sha384(h) => h.update(b),
            OtherHash::Sha512(h) => h.update(b),
        }
    }
    fn finish(self) -> Option<String> {
        match self {
            OtherHash::None => None,
            OtherHash::Sha384(h) => Some(hex::encode(h.finalize())),
            OtherHash::Sha512(h) => Some(hex::encode(h.finalize())),
        }
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(&format!(": {inner}"));
        src = inner.source();
    }
    s
}

fn header(resp: &reqwest::Response, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .filter(|v| !v.is_empty())
}

/// Weak and strong ETags compare alike (as BuildKit's `etagValue`).
fn etag_value(v: &str) -> &str {
    v.strip_prefix("W/").unwrap_or(v)
}

/// BuildKit's `getFileName`: the `http.filename` attribute, else the response's
/// Content-Disposition file name, else the URL path's last segment; always one safe name.
fn file_name(url: &str, manual: &str, resp: Option<&reqwest::Response>) -> String {
    if !manual.is_empty() {
        return safe_file_name(manual);
    }
    if let Some(cd) = resp.and_then(|r| header(r, "content-disposition"))
        && let Some(name) = disposition_filename(&cd)
        && !name.ends_with('/')
    {
        return safe_file_name(&name);
    }
    let path = url_path(url);
    let base = go_path_base(&path);
    if base != "." && base != "/" {
        return safe_file_name(base);
    }
    safe_file_name("")
}

/// BuildKit's `pathutil.SafeFileName`: a last path element that is neither empty, `.`, `..`
/// nor holds control characters, else `download`.
pub(crate) fn safe_file_name(s: &str) -> String {
    let base = go_path_base(s.trim());
    if base.is_empty()
        || base == "."
        || base == ".."
        || base == "/"
        || base.chars().any(|c| c.is_control())
    {
        return "download".into();
    }
    base.to_string()
}

/// Go's `path.Base`.
fn go_path_base(p: &str) -> &str {
    if p.is_empty() {
        return ".";
    }
    let t = p.trim_end_matches('/');
    if t.is_empty() {
        return "/";
    }
    t.rsplit('/').next().unwrap_or(t)
}

/// The decoded path of a URL (after the authority, before `?` and `#`).
fn url_path(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest.split(['#', '?']).next().unwrap_or("");
    let path = rest.find('/').map_or("", |i| &rest[i..]);
    percent_decode(path)
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let (Some(h), Some(l)) = (
                b.get(i + 1).and_then(|c| (*c as char).to_digit(16)),
                b.get(i + 2).and_then(|c| (*c as char).to_digit(16)),
            )
        {
            out.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The `filename` of a Content-Disposition header (`filename*=UTF-8''…` preferred).
fn disposition_filename(v: &str) -> Option<String> {
    let mut plain = None;
    let mut extended = None;
    for part in v.split(';').skip(1) {
        let Some((k, val)) = part.split_once('=') else {
            continue;
        };
        let k = k.trim().to_ascii_lowercase();
        let val = val.trim();
        if k == "filename" {
            let unquoted = match val.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
                Some(q) => q.replace("\\\"", "\"").replace("\\\\", "\\"),
                None => val.to_string(),
            };
            plain = Some(unquoted);
        } else if k == "filename*" {
            let mut it = val.splitn(3, '\'');
            let (charset, _, value) = (it.next()?, it.next(), it.next());
            if let Some(value) = value
                && (charset.eq_ignore_ascii_case("utf-8")
                    || charset.eq_ignore_ascii_case("us-ascii"))
            {
                extended = Some(percent_decode(value));
            }
        }
    }
    extended.or(plain).filter(|s| !s.is_empty())
}

/// An HTTP date (IMF-fixdate, `Sun, 06 Nov 1994 08:49:37 GMT`) as Unix seconds.
fn parse_http_date(s: &str) -> Option<i64> {
    let parts: Vec<&str> = s.split_whitespace().collect();
    let [_, day, mon, year, time, "GMT"] = parts.as_slice() else {
        return None;
    };
    let day: i64 = day.parse().ok()?;
    let year: i64 = year.parse().ok()?;
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let mon = MONTHS.iter().position(|m| m == mon)? as i64 + 1;
    let t: Vec<i64> = time
        .split(':')
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    let [h, m, sec] = t.as_slice() else {
        return None;
    };
    // Days from civil (Howard Hinnant's algorithm).
    let y = if mon <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (mon + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146097 + doe - 719468;
    Some(days * 86400 + h * 3600 + m * 60 + sec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_never_escape() {
        assert_eq!(safe_file_name("../../etc/passwd"), "passwd");
        assert_eq!(safe_file_name(".."), "download");
        assert_eq!(safe_file_name("a\nb"), "download");
        assert_eq!(safe_file_name("/"), "download");
        assert_eq!(file_name("http://h/a/b%2F..", "", None), "download");
        assert_eq!(file_name("http://h/a/f.txt?x=1#y", "", None), "f.txt");
        assert_eq!(file_name("http://h/", "", None), "download");
        assert_eq!(file_name("http://h", "", None), "download");
        assert_eq!(file_name("http://h/x", "../y", None), "y");
    }

    #[test]
    fn content_disposition() {
        assert_eq!(
            disposition_filename(r#"attachment; filename="../a b.tgz""#).as_deref(),
            Some("../a b.tgz")
        );
        assert_eq!(
            disposition_filename("attachment; filename*=UTF-8''%e2%82%ac.txt; filename=x")
                .as_deref(),
            Some("€.txt")
        );
        assert_eq!(disposition_filename("inline"), None);
    }

    #[test]
    fn checksums_and_numbers() {
        assert!(parse_checksum(&format!("sha256:{}", "a".repeat(64))).is_ok());
        assert!(parse_checksum(&format!("sha256:{}", "A".repeat(64))).is_err());
        assert!(parse_checksum("md5:abc").is_err());
        assert_eq!(parse_int("p", "0644"), Ok(0o644));
        assert_eq!(parse_int("p", "420"), Ok(420));
        assert_eq!(parse_int("p", "0x1ff"), Ok(0o777));
    }

    #[test]
    fn http_dates() {
        assert_eq!(
            parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784111777)
        );
        assert_eq!(parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(parse_http_date("yesterday"), None);
    }
}
