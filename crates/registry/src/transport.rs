//! Requests to a registry: endpoints (mirrors, http/insecure), authentication (anonymous,
//! basic, bearer tokens fetched anonymously, with a password or with an identity token) and
//! retries. Credentials go only into Authorization headers and token requests; errors quote
//! the registry's answer, never what was sent.

use crate::RegistryError;
use crate::auth::{Challenge, TokenResponse, parse_challenges};
use crate::client::{Client, check_status, read_capped, retryable, transient};
use crate::creds::Credentials;
use crate::hosts::{self, Endpoint};
use crate::reference::Reference;
use base64::Engine as _;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use reqwest::{Method, StatusCode};
use std::collections::BTreeMap;

const MAX_TOKEN_RESPONSE: u64 = 1024 * 1024;

/// One request's shape; the body is in memory so that it can be sent again after a 401.
#[derive(Debug, Clone)]
pub(crate) struct Req<'a> {
    pub method: Method,
    pub accept: Option<&'a str>,
    pub content_type: Option<&'a str>,
    pub headers: Vec<(&'static str, String)>,
    pub body: Option<bytes::Bytes>,
    /// Whether 5xx, 429 and connection errors are retried (not for non-idempotent steps).
    pub retry: bool,
}

impl Req<'_> {
    pub fn new(method: Method) -> Self {
        Req {
            method,
            accept: None,
            content_type: None,
            headers: Vec::new(),
            body: None,
            retry: true,
        }
    }
}

/// What answered: the response and the URL asked.
pub(crate) struct Answer {
    pub resp: reqwest::Response,
    pub url: String,
}

/// The token scope of one repository: `repository:NAME:ACTIONS`.
pub(crate) fn scope(reference: &Reference, actions: &str) -> String {
    format!("repository:{}:{actions}", reference.repository)
}

impl Client {
    /// The endpoints for `reference`'s registry: its mirrors first when pulling, then itself.
    pub(crate) fn endpoints(
        &self,
        reference: &Reference,
        pull: bool,
    ) -> Result<Vec<Endpoint>, RegistryError> {
        let mut out = Vec::new();
        let own = self.config.host(&reference.registry);
        if pull {
            for m in own.map(|c| c.mirrors.as_slice()).unwrap_or_default() {
                let (host, path) = hosts::split_mirror(m);
                let mc = self.config.host(&host);
                for scheme in hosts::schemes(&host, mc, false) {
                    out.push(Endpoint {
                        base: format!("{scheme}://{host}{path}"),
                        http: self.http_for(&host, mc, scheme == "https" && insecure(mc))?,
                        mirror: true,
                    });
                }
            }
        }
        let host = reference.api_host();
        let forced = self.is_insecure(&reference.registry);
        let schemes = if forced {
            vec!["https", "http"]
        } else {
            hosts::schemes(host, own, false)
        };
        for scheme in schemes {
            let skip_verify = scheme == "https" && (forced || insecure(own));
            out.push(Endpoint {
                base: format!("{scheme}://{host}/v2"),
                http: self.http_for(host, own, skip_verify)?,
                mirror: false,
            });
        }
        Ok(out)
    }

    /// Sends `req` for `path` (under `/v2`) to the first endpoint that answers: a connection
    /// error moves on to the next, and so does a 404 from a mirror.
    pub(crate) async fn send_path(
        &self,
        reference: &Reference,
        endpoints: &[Endpoint],
        path: &str,
        scope: &str,
        req: &Req<'_>,
    ) -> Result<Answer, RegistryError> {
        let mut last = None;
        for (i, ep) in endpoints.iter().enumerate() {
            let url = format!("{}/{path}", ep.base);
            let more = i + 1 < endpoints.len();
            match self.send_url(reference, &ep.http, &url, scope, req).await {
                Ok(a) if more && ep.mirror && !a.resp.status().is_success() => {
                    last = Some(check_status(reference, &a.url, a.resp).await.err());
                }
                Err(RegistryError::Http { source, .. }) if more && transient(&source) => {
                    last = Some(Some(RegistryError::Http {
                        reference: reference.to_string(),
                        url,
                        source,
                    }));
                }
                other => return other,
            }
        }
        Err(last.flatten().unwrap_or_else(|| RegistryError::Status {
            reference: reference.to_string(),
            url: path.to_string(),
            status: 0,
            body: "no endpoint to ask".into(),
        }))
    }

    /// One request with authentication: a known scheme is used up front; a 401 teaches the
    /// host's scheme, a token is fetched (or basic credentials added) and the request is sent
    /// once more.
    pub(crate) async fn send_url(
        &self,
        reference: &Reference,
        http: &reqwest::Client,
        url: &str,
        scope: &str,
        req: &Req<'_>,
    ) -> Result<Answer, RegistryError> {
        let host = host_of(url);
        let mut fresh = false;
        loop {
            let auth = self.auth_header(reference, http, &host, scope).await?;
            let resp = self
                .send_retrying(reference, http, url, req, auth.as_deref())
                .await?;
            if resp.status() != StatusCode::UNAUTHORIZED {
                return Ok(Answer {
                    resp,
                    url: url.to_string(),
                });
            }
            let answer: Vec<String> = resp
                .headers()
                .get_all(WWW_AUTHENTICATE)
                .iter()
                .filter_map(|v| v.to_str().ok().map(str::to_string))
                .collect();
            let creds = self.creds.get(&host);
            let unauthorized = |why: &str| RegistryError::Unauthorized {
                reference: reference.to_string(),
                url: url.to_string(),
                reason: format!("{why} (WWW-Authenticate: {})", answer.join("; ")),
            };
            if fresh {
                return Err(unauthorized(if creds.is_some() {
                    "the credentials for this registry were refused"
                } else {
                    "anonymous access refused"
                }));
            }
            let challenges: Vec<Challenge> =
                answer.iter().flat_map(|h| parse_challenges(h)).collect();
            let chosen = challenges
                .iter()
                .find(|c| c.scheme == "bearer")
                .or_else(|| challenges.iter().find(|c| c.scheme == "basic"));
            let Some(chosen) = chosen else {
                return Err(unauthorized("no supported authentication scheme"));
            };
            if chosen.scheme == "basic" && creds.is_none() {
                let hint = self
                    .creds
                    .warning()
                    .map(|w| format!(": {w}"))
                    .unwrap_or_default();
                return Err(unauthorized(&format!(
                    "credentials required, and none were found for {host} in the Docker config \
                     ($DOCKER_CONFIG/config.json){hint}"
                )));
            }
            // The scheme, realm and service are the host's; the scope was this request's.
            let mut remembered = chosen.clone();
            remembered.params.remove("scope");
            self.host_auth
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(host.clone(), remembered);
            if chosen.scheme == "bearer" {
                let lock = self.tokens.fetch_lock(&host, scope);
                let _fetching = lock.lock().await;
                // Another request may have replaced the refused token while this one waited.
                let replaced = self
                    .tokens
                    .get(&host, scope)
                    .is_some_and(|t| auth.as_deref() != Some(format!("Bearer {t}").as_str()));
                if !replaced {
                    let t = self
                        .fetch_token(reference, http, &chosen.params, scope, creds.as_ref())
                        .await?;
                    self.tokens.put(&host, scope, t.0, t.1);
                }
            }
            fresh = true;
        }
    }

    /// The Authorization value for `host`, from what it asked for before: basic credentials,
    /// or a bearer token for `scope` (cached, else fetched now).
    async fn auth_header(
        &self,
        reference: &Reference,
        http: &reqwest::Client,
        host: &str,
        scope: &str,
    ) -> Result<Option<String>, RegistryError> {
        let known = self
            .host_auth
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(host)
            .cloned();
        let Some(challenge) = known else {
            return Ok(None);
        };
        if challenge.scheme == "basic" {
            return Ok(self.creds.get(host).map(|c| basic(&c)));
        }
        if let Some(t) = self.tokens.get(host, scope) {
            return Ok(Some(format!("Bearer {t}")));
        }
        let lock = self.tokens.fetch_lock(host, scope);
        let _fetching = lock.lock().await;
        if let Some(t) = self.tokens.get(host, scope) {
            return Ok(Some(format!("Bearer {t}")));
        }
        let creds = self.creds.get(host);
        let t = self
            .fetch_token(reference, http, &challenge.params, scope, creds.as_ref())
            .await?;
        self.tokens.put(host, scope, t.0.clone(), t.1);
        Ok(Some(format!("Bearer {}", t.0)))
    }

    /// A token from the challenge's realm. With a secret: containerd's OAuth2 POST
    /// (refresh_token for an identity token, password otherwise), falling back to GET with
    /// basic auth where the server has no POST endpoint; without: an anonymous GET.
    async fn fetch_token(
        &self,
        reference: &Reference,
        http: &reqwest::Client,
        params: &BTreeMap<String, String>,
        scope: &str,
        creds: Option<&Credentials>,
    ) -> Result<(String, Option<u64>), RegistryError> {
        let realm = params.get("realm").cloned().unwrap_or_default();
        let fail = |reason: String| RegistryError::Token {
            reference: reference.to_string(),
            realm: realm.clone(),
            reason,
        };
        let url = reqwest::Url::parse(&realm).map_err(|e| fail(format!("bad realm: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(fail("realm is not an http(s) URL".into()));
        }
        let mut scopes: Vec<&str> = scope.split(' ').filter(|s| !s.is_empty()).collect();
        // Ask for what the registry named too, if it differs from ours.
        if let Some(asked) = params.get("scope") {
            for s in asked.split(' ').filter(|s| !s.is_empty()) {
                if !scopes.contains(&s) {
                    scopes.push(s);
                }
            }
        }
        let service = params.get("service").cloned().unwrap_or_default();
        if let Some(c) = creds.filter(|c| !c.secret.is_empty()) {
            let mut form = vec![
                ("scope", scopes.join(" ")),
                ("service", service.clone()),
                ("client_id", "kiln".to_string()),
            ];
            if c.username.is_empty() {
                form.push(("grant_type", "refresh_token".into()));
                form.push(("refresh_token", c.secret.clone()));
            } else {
                form.push(("grant_type", "password".into()));
                form.push(("username", c.username.clone()));
                form.push(("password", c.secret.clone()));
            }
            let body = form_encode(&form);
            let mut req = Req::new(Method::POST);
            req.content_type = Some("application/x-www-form-urlencoded; charset=utf-8");
            req.body = Some(body.into());
            let resp = self
                .send_retrying(reference, http, url.as_str(), &req, None)
                .await?;
            let status = resp.status().as_u16();
            let fallback =
                matches!(status, 400 | 401 | 404) || (status == 405 && !c.username.is_empty());
            if !fallback {
                return token_from(reference, url.as_str(), resp, &fail).await;
            }
            if c.username.is_empty() {
                return Err(fail(format!(
                    "the token endpoint refused the identity token ({status})"
                )));
            }
        }
        let mut get_url = url.clone();
        {
            let mut q = get_url.query_pairs_mut();
            if !service.is_empty() {
                q.append_pair("service", &service);
            }
            for s in &scopes {
                q.append_pair("scope", s);
            }
        }
        let auth = creds.filter(|c| !c.username.is_empty()).map(basic);
        let resp = self
            .send_retrying(
                reference,
                http,
                get_url.as_str(),
                &Req::new(Method::GET),
                auth.as_deref(),
            )
            .await?;
        token_from(reference, get_url.as_str(), resp, &fail).await
    }

    pub(crate) async fn send_retrying(
        &self,
        reference: &Reference,
        http: &reqwest::Client,
        url: &str,
        req: &Req<'_>,
        auth: Option<&str>,
    ) -> Result<reqwest::Response, RegistryError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut b = http.request(req.method.clone(), url);
            if let Some(accept) = req.accept {
                b = b.header(ACCEPT, accept);
            }
            if let Some(ct) = req.content_type {
                b = b.header(CONTENT_TYPE, ct);
            }
            for (k, v) in &req.headers {
                b = b.header(*k, v);
            }
            if let Some(auth) = auth {
                b = b.header(AUTHORIZATION, auth);
            }
            if let Some(body) = &req.body {
                b = b.body(body.clone());
            }
            let last = attempt >= self.attempts || !req.retry;
            match b.send().await {
                Ok(resp) if !last && retryable(resp.status()) => {}
                Ok(resp) => return Ok(resp),
                Err(e) if !last && transient(&e) && !e.is_redirect() => {}
                Err(source) => {
                    return Err(RegistryError::Http {
                        reference: reference.to_string(),
                        url: url.to_string(),
                        source,
                    });
                }
            }
            tokio::time::sleep(self.backoff * 2u32.saturating_pow(attempt - 1)).await;
        }
    }
}

fn insecure(c: Option<&hosts::HostConfig>) -> bool {
    c.and_then(|c| c.insecure).unwrap_or(false)
}

fn basic(c: &Credentials) -> String {
    let raw = format!("{}:{}", c.username, c.secret);
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

/// `host[:port]` of a URL, the key for credentials and tokens.
pub(crate) fn host_of(url: &str) -> String {
    reqwest::Url::parse(url)
        .ok()
        .and_then(|u| {
            let host = u.host_str()?.to_string();
            Some(match u.port() {
                Some(p) => format!("{host}:{p}"),
                None => host,
            })
        })
        .unwrap_or_default()
}

async fn token_from(
    reference: &Reference,
    url: &str,
    resp: reqwest::Response,
    fail: &(dyn Fn(String) -> RegistryError + Sync),
) -> Result<(String, Option<u64>), RegistryError> {
    let resp = check_status(reference, url, resp).await?;
    let body = read_capped(reference, url, resp, MAX_TOKEN_RESPONSE, "token response").await?;
    let t: TokenResponse =
        serde_json::from_slice(&body).map_err(|e| fail(format!("bad token response: {e}")))?;
    match t.token.or(t.access_token).filter(|t| !t.is_empty()) {
        Some(token) => Ok((token, t.expires_in)),
        None => Err(fail("the answer has no token".into())),
    }
}

/// application/x-www-form-urlencoded.
fn form_encode(pairs: &[(&str, String)]) -> String {
    let mut u = reqwest::Url::parse("http://x/").expect("static URL");
    {
        let mut q = u.query_pairs_mut();
        for (k, v) in pairs {
            q.append_pair(k, v);
        }
    }
    u.query().unwrap_or_default().to_string()
}
