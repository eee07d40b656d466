//! A stand-in Kubernetes API server for the CloudNativePG plugin tests: plain HTTP/1.1 on
//! `127.0.0.1`, objects kept as JSON at their real API paths, every request recorded.
//!
//! No Kubernetes can run here, so this answers the requests the plugin makes the way a
//! real API server does: GET (item and collection), POST (create), PUT, PATCH with
//! `application/merge-patch+json` (RFC 7386), DELETE, and the `/status` subresource for
//! the kinds that have one (status changes only through it, as with a real CRD).
//! `resourceVersion` is checked on PUT and on a merge patch that carries one (409 Conflict
//! when stale). Collections list by namespace or across all namespaces, filtered by a
//! `labelSelector` of `key` / `key=value` terms. Faults on demand: 403 for a chosen
//! Secret or for a whole resource in a namespace, 409 once for the next update of a
//! chosen object.
//!
//! ```no_run
//! use barrelman_testkit::kubeapi::KubeApi;
//! let api = KubeApi::start();
//! api.insert(serde_json::json!({"apiVersion": "v1", "kind": "Secret",
//!     "metadata": {"name": "creds", "namespace": "db"}, "data": {"k": "dg=="}}));
//! api.forbid_secret("db", "creds");
//! // point a client at api.url() ... then inspect api.requests()
//! ```

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::{json, Map, Value};

/// Plurals of the kinds the plugin touches (others: lower-case kind + "s").
const PLURALS: &[(&str, &str)] = &[
    ("Cluster", "clusters"),
    ("ObjectStore", "objectstores"),
    ("Secret", "secrets"),
    ("Backup", "backups"),
    ("Event", "events"),
    ("ScheduledBackup", "scheduledbackups"),
];

/// Plurals served with a `/status` subresource.
const WITH_STATUS: &[&str] = &["clusters", "objectstores", "backups", "scheduledbackups"];

/// How long a connection may sit idle before the server drops it.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Where an object lives: `apiVersion` ("v1" or "group/version"), namespace, plural, name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    /// "v1" for the core group, else "group/version".
    pub api_version: String,
    /// Namespace.
    pub namespace: String,
    /// Resource plural, e.g. "objectstores".
    pub plural: String,
    /// `metadata.name`.
    pub name: String,
}

/// One request as received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recorded {
    /// HTTP method.
    pub method: String,
    /// Path without the query.
    pub path: String,
    /// Query string (after `?`), empty if none.
    pub query: String,
    /// `Content-Type` header, empty if none.
    pub content_type: String,
    /// Body as text.
    pub body: String,
    /// Status code answered.
    pub status: u16,
}

#[derive(Default)]
struct State {
    objects: BTreeMap<ObjectKey, Value>,
    forbidden_secrets: HashSet<(String, String)>,
    /// (namespace, plural) every request on which is refused.
    forbidden_resources: HashSet<(String, String)>,
    conflict_once: HashSet<ObjectKey>,
    requests: Vec<Recorded>,
    resource_version: u64,
}

/// The running stand-in; stops when dropped.
pub struct KubeApi {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    stopping: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

fn plural_of(kind: &str) -> String {
    PLURALS
        .iter()
        .find(|(k, _)| *k == kind)
        .map(|(_, p)| (*p).to_string())
        .unwrap_or_else(|| format!("{}s", kind.to_lowercase()))
}

fn kind_of(plural: &str) -> String {
    PLURALS
        .iter()
        .find(|(_, p)| *p == plural)
        .map(|(k, _)| (*k).to_string())
        .unwrap_or_else(|| plural.trim_end_matches('s').to_string())
}

/// The resource as the API names it in messages: `secrets`, `objectstores.barmancloud.cnpg.io`.
fn qualified(api_version: &str, plural: &str) -> String {
    match api_version.split_once('/') {
        Some((group, _)) => format!("{plural}.{group}"),
        None => plural.to_string(),
    }
}

fn status_error(
    code: u16,
    reason: &str,
    message: String,
    name: &str,
    plural: &str,
) -> (u16, Value) {
    (
        code,
        json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Failure", "message": message, "reason": reason,
            "details": {"name": name, "kind": plural}, "code": code,
        }),
    )
}

/// RFC 7386 JSON merge patch.
fn merge_patch(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = Value::Object(Map::new());
            }
            let t = target.as_object_mut().expect("object");
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        other => *target = other.clone(),
    }
}

/// A parsed API path: the key (name empty for a collection) and the subresource.
fn parse_path(path: &str) -> Option<(ObjectKey, Option<String>)> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (api_version, rest) = match parts.as_slice() {
        ["api", v, rest @ ..] => ((*v).to_string(), rest),
        ["apis", g, v, rest @ ..] => (format!("{g}/{v}"), rest),
        _ => return None,
    };
    match rest {
        // A collection across all namespaces (list only): namespace and name empty.
        [plural] => Some((
            ObjectKey {
                api_version,
                namespace: String::new(),
                plural: (*plural).to_string(),
                name: String::new(),
            },
            None,
        )),
        ["namespaces", ns, plural, tail @ ..] if tail.len() <= 2 => Some((
            ObjectKey {
                api_version,
                namespace: (*ns).to_string(),
                plural: (*plural).to_string(),
                name: tail.first().map(|s| (*s).to_string()).unwrap_or_default(),
            },
            tail.get(1).map(|s| (*s).to_string()),
        )),
        _ => None,
    }
}

impl State {
    fn next_version(&mut self) -> String {
        self.resource_version += 1;
        self.resource_version.to_string()
    }

    fn stamp(&mut self, obj: &mut Value, key: &ObjectKey) {
        let rv = self.next_version();
        let meta = obj
            .as_object_mut()
            .expect("object")
            .entry("metadata")
            .or_insert_with(|| json!({}));
        meta["resourceVersion"] = json!(rv);
        meta["name"] = json!(key.name);
        meta["namespace"] = json!(key.namespace);
        if meta.get("uid").is_none() {
            meta["uid"] = json!(format!("uid-{}-{}", key.plural, key.name));
        }
        if meta.get("creationTimestamp").is_none() {
            meta["creationTimestamp"] = json!("2026-01-01T00:00:00Z");
        }
    }

    fn handle(
        &mut self,
        method: &str,
        path: &str,
        query: &str,
        content_type: &str,
        body: &str,
    ) -> (u16, Value) {
        let Some((mut key, sub)) = parse_path(path) else {
            return status_error(
                404,
                "NotFound",
                format!("the server could not find {path}"),
                "",
                "",
            );
        };
        let res = qualified(&key.api_version, &key.plural);
        if self
            .forbidden_resources
            .contains(&(key.namespace.clone(), key.plural.clone()))
        {
            return status_error(
                403,
                "Forbidden",
                format!(
                    "{res} {:?} is forbidden: User \"system:serviceaccount:cnpg-system:plugin\" \
                     cannot {} resource {:?} in API group {:?} in the namespace {:?}",
                    key.name,
                    method.to_lowercase(),
                    key.plural,
                    key.api_version
                        .split_once('/')
                        .map(|(g, _)| g)
                        .unwrap_or(""),
                    key.namespace
                ),
                &key.name,
                &key.plural,
            );
        }
        if key.plural == "secrets"
            && self
                .forbidden_secrets
                .contains(&(key.namespace.clone(), key.name.clone()))
        {
            let verb = match method {
                "GET" => "get",
                "PUT" => "update",
                "PATCH" => "patch",
                "DELETE" => "delete",
                _ => "create",
            };
            return status_error(
                403,
                "Forbidden",
                format!(
                    "secrets {:?} is forbidden: User \"system:serviceaccount:{ns}:plugin\" cannot \
                     {verb} resource \"secrets\" in API group \"\" in the namespace {ns:?}",
                    key.name,
                    ns = key.namespace
                ),
                &key.name,
                &key.plural,
            );
        }
        let status_sub = match sub.as_deref() {
            None => false,
            Some("status") if WITH_STATUS.contains(&key.plural.as_str()) => true,
            Some(other) => {
                return status_error(
                    404,
                    "NotFound",
                    format!("no subresource {other} on {res}"),
                    &key.name,
                    &key.plural,
                )
            }
        };
        // What a real API server answers an update carrying a stale resourceVersion.
        let conflict = |key: &ObjectKey| {
            status_error(
                409,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on {res} {:?}: the object has been modified; \
                     please apply your changes to the latest version and try again",
                    key.name
                ),
                &key.name,
                &key.plural,
            )
        };
        let not_found = |key: &ObjectKey| {
            status_error(
                404,
                "NotFound",
                format!("{res} {:?} not found", key.name),
                &key.name,
                &key.plural,
            )
        };
        let parsed: Option<Value> = if body.is_empty() {
            None
        } else {
            serde_json::from_str(body).ok()
        };
        if !body.is_empty() && parsed.is_none() {
            return status_error(
                400,
                "BadRequest",
                "the body is not JSON".into(),
                &key.name,
                &key.plural,
            );
        }

        // A collection: list or create.
        if key.name.is_empty() {
            return match method {
                "GET" => {
                    let selector = label_selector(query);
                    let items: Vec<Value> = self
                        .objects
                        .iter()
                        .filter(|(k, v)| {
                            k.api_version == key.api_version
                                && (key.namespace.is_empty() || k.namespace == key.namespace)
                                && k.plural == key.plural
                                && selector.iter().all(|(l, want)| {
                                    match (v["metadata"]["labels"][l].as_str(), want) {
                                        (Some(have), Some(want)) => have == want,
                                        (Some(_), None) => true,
                                        (None, _) => false,
                                    }
                                })
                        })
                        .map(|(_, v)| v.clone())
                        .collect();
                    let rv = self.resource_version.to_string();
                    (
                        200,
                        json!({"apiVersion": key.api_version, "kind": format!("{}List", kind_of(&key.plural)),
                                 "metadata": {"resourceVersion": rv}, "items": items}),
                    )
                }
                "POST" if !key.namespace.is_empty() => {
                    let Some(mut obj) = parsed else {
                        return status_error(400, "BadRequest", "no body".into(), "", &key.plural);
                    };
                    let meta = &obj["metadata"];
                    key.name = match (meta["name"].as_str(), meta["generateName"].as_str()) {
                        (Some(n), _) if !n.is_empty() => n.to_string(),
                        (_, Some(g)) => format!("{g}{:05}", self.resource_version + 1),
                        _ => {
                            return status_error(
                                400,
                                "BadRequest",
                                "metadata.name is required".into(),
                                "",
                                &key.plural,
                            )
                        }
                    };
                    if self.objects.contains_key(&key) {
                        return status_error(
                            409,
                            "AlreadyExists",
                            format!("{res} {:?} already exists", key.name),
                            &key.name,
                            &key.plural,
                        );
                    }
                    self.stamp(&mut obj, &key);
                    self.objects.insert(key, obj.clone());
                    (201, obj)
                }
                _ => status_error(
                    405,
                    "MethodNotAllowed",
                    format!("{method} is not allowed on a collection"),
                    "",
                    &key.plural,
                ),
            };
        }

        let Some(current) = self.objects.get(&key).cloned() else {
            return not_found(&key);
        };
        if matches!(method, "PUT" | "PATCH") && self.conflict_once.remove(&key) {
            return conflict(&key);
        }
        let has_status = WITH_STATUS.contains(&key.plural.as_str());
        let updated = match method {
            "GET" => return (200, current),
            "DELETE" => {
                self.objects.remove(&key);
                return (200, current);
            }
            "PUT" => {
                let Some(new) = parsed else {
                    return status_error(
                        400,
                        "BadRequest",
                        "no body".into(),
                        &key.name,
                        &key.plural,
                    );
                };
                let sent_rv = new["metadata"]["resourceVersion"]
                    .as_str()
                    .unwrap_or_default();
                if !sent_rv.is_empty()
                    && sent_rv
                        != current["metadata"]["resourceVersion"]
                            .as_str()
                            .unwrap_or_default()
                {
                    return conflict(&key);
                }
                with_status_rule(&current, new, has_status, status_sub)
            }
            "PATCH" => {
                if !content_type.starts_with("application/merge-patch+json") {
                    return status_error(
                        415,
                        "UnsupportedMediaType",
                        format!("the stand-in only takes merge patches, not {content_type:?}"),
                        &key.name,
                        &key.plural,
                    );
                }
                let Some(patch) = parsed else {
                    return status_error(
                        400,
                        "BadRequest",
                        "no body".into(),
                        &key.name,
                        &key.plural,
                    );
                };
                // A merge patch carrying a resourceVersion is an optimistic lock.
                if let Some(sent_rv) = patch["metadata"]["resourceVersion"].as_str() {
                    if sent_rv
                        != current["metadata"]["resourceVersion"]
                            .as_str()
                            .unwrap_or_default()
                    {
                        return conflict(&key);
                    }
                }
                let mut new = current.clone();
                merge_patch(&mut new, &patch);
                with_status_rule(&current, new, has_status, status_sub)
            }
            _ => {
                return status_error(
                    405,
                    "MethodNotAllowed",
                    format!("{method} is not allowed"),
                    &key.name,
                    &key.plural,
                )
            }
        };
        let mut updated = updated;
        self.stamp(&mut updated, &key);
        self.objects.insert(key, updated.clone());
        (200, updated)
    }
}

/// `labelSelector` terms of a query: (label, Some(value)) for `l=v`, (label, None) for `l`.
fn label_selector(query: &str) -> Vec<(String, Option<String>)> {
    let decode = |s: &str| {
        let mut out = Vec::new();
        let b = s.as_bytes();
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b'%' if i + 2 < b.len() => {
                    let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("");
                    out.push(u8::from_str_radix(hex, 16).unwrap_or(b'?'));
                    i += 3;
                }
                b'+' => {
                    out.push(b' ');
                    i += 1;
                }
                c => {
                    out.push(c);
                    i += 1;
                }
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    };
    query
        .split('&')
        .filter_map(|kv| kv.strip_prefix("labelSelector="))
        .flat_map(|v| {
            decode(v)
                .split(',')
                .filter(|t| !t.is_empty())
                .map(|t| match t.split_once('=') {
                    Some((l, v)) => (
                        l.trim_end_matches('=').to_string(),
                        Some(v.trim_start_matches('=').to_string()),
                    ),
                    None => (t.to_string(), None),
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

/// With a status subresource, the main resource cannot change `status` and `/status`
/// can change nothing else, as on a real API server.
fn with_status_rule(current: &Value, mut new: Value, has_status: bool, status_sub: bool) -> Value {
    if !has_status {
        return new;
    }
    if status_sub {
        let mut out = current.clone();
        out["status"] = new.get("status").cloned().unwrap_or(Value::Null);
        out
    } else {
        match current.get("status") {
            Some(s) => new["status"] = s.clone(),
            None => {
                if let Some(o) = new.as_object_mut() {
                    o.remove("status");
                }
            }
        }
        new
    }
}

fn reason(code: u16) -> &'static str {
    match code {
        200 => "OK",
        201 => "Created",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        415 => "Unsupported Media Type",
        _ => "Unknown",
    }
}

/// One parsed HTTP request: method, target, lower-cased headers, body.
struct RawRequest {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

/// Reads one request; None at a clean end of the connection.
fn read_request(r: &mut BufReader<TcpStream>) -> Option<RawRequest> {
    let mut line = String::new();
    if r.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut it = line.split_whitespace();
    let (method, target) = (it.next()?.to_string(), it.next()?.to_string());
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        r.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
    }
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let mut body = Vec::new();
    if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        loop {
            let mut size = String::new();
            r.read_line(&mut size).ok()?;
            let n = usize::from_str_radix(size.trim().split(';').next()?, 16).ok()?;
            let mut chunk = vec![0; n + 2];
            r.read_exact(&mut chunk).ok()?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
    } else if let Some(n) = header("content-length").and_then(|v| v.parse::<usize>().ok()) {
        body.resize(n, 0);
        r.read_exact(&mut body).ok()?;
    }
    Some(RawRequest {
        method,
        target,
        headers,
        body,
    })
}

fn serve_connection(stream: TcpStream, state: Arc<Mutex<State>>) {
    let _ = stream.set_read_timeout(Some(IDLE_TIMEOUT));
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    while let Some(RawRequest {
        method,
        target,
        headers,
        body,
    }) = read_request(&mut reader)
    {
        let (path, query) = target.split_once('?').unwrap_or((&target, ""));
        let content_type = headers
            .iter()
            .find(|(k, _)| k == "content-type")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        let body = String::from_utf8_lossy(&body).into_owned();
        let (code, answer) = {
            let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
            let (code, answer) = st.handle(&method, path, query, &content_type, &body);
            st.requests.push(Recorded {
                method: method.clone(),
                path: path.to_string(),
                query: query.to_string(),
                content_type,
                body,
                status: code,
            });
            (code, answer)
        };
        let payload = answer.to_string();
        let close = headers
            .iter()
            .any(|(k, v)| k == "connection" && v.eq_ignore_ascii_case("close"));
        let head = format!(
            "HTTP/1.1 {code} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{}\r\n",
            reason(code),
            payload.len(),
            if close { "Connection: close\r\n" } else { "" }
        );
        if writer
            .write_all(head.as_bytes())
            .and_then(|_| writer.write_all(payload.as_bytes()))
            .is_err()
            || close
        {
            return;
        }
    }
}

impl KubeApi {
    /// Starts the server on a free `127.0.0.1` port.
    pub fn start() -> KubeApi {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the stand-in Kubernetes API");
        let addr = listener.local_addr().expect("local address");
        let state = Arc::new(Mutex::new(State::default()));
        let stopping = Arc::new(AtomicBool::new(false));
        let (st, stop) = (state.clone(), stopping.clone());
        let acceptor = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(conn) = conn {
                    let st = st.clone();
                    std::thread::spawn(move || serve_connection(conn, st));
                }
            }
        });
        KubeApi {
            addr,
            state,
            stopping,
            acceptor: Some(acceptor),
        }
    }

    /// Base URL, e.g. `http://127.0.0.1:41234`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stores `obj` at the path its `apiVersion`, `kind`, namespace and name give,
    /// replacing any object there; returns its key.
    pub fn insert(&self, mut obj: Value) -> ObjectKey {
        let key = ObjectKey {
            api_version: obj["apiVersion"].as_str().expect("apiVersion").to_string(),
            namespace: obj["metadata"]["namespace"]
                .as_str()
                .expect("metadata.namespace")
                .to_string(),
            plural: plural_of(obj["kind"].as_str().expect("kind")),
            name: obj["metadata"]["name"]
                .as_str()
                .expect("metadata.name")
                .to_string(),
        };
        let mut st = self.state();
        st.stamp(&mut obj, &key);
        st.objects.insert(key.clone(), obj);
        key
    }

    /// The object stored at `key`, if any.
    pub fn get(&self, key: &ObjectKey) -> Option<Value> {
        self.state().objects.get(key).cloned()
    }

    /// Every stored object of one plural in one namespace.
    pub fn list(&self, namespace: &str, plural: &str) -> Vec<Value> {
        self.state()
            .objects
            .iter()
            .filter(|(k, _)| k.namespace == namespace && k.plural == plural)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Answers 403 Forbidden to every request for this Secret from now on.
    pub fn forbid_secret(&self, namespace: &str, name: &str) {
        self.state()
            .forbidden_secrets
            .insert((namespace.to_string(), name.to_string()));
    }

    /// Answers 403 Forbidden to every request on `plural` in `namespace` from now on.
    pub fn forbid(&self, namespace: &str, plural: &str) {
        self.state()
            .forbidden_resources
            .insert((namespace.to_string(), plural.to_string()));
    }

    /// Lifts [`KubeApi::forbid_secret`].
    pub fn allow_secret(&self, namespace: &str, name: &str) {
        self.state()
            .forbidden_secrets
            .remove(&(namespace.to_string(), name.to_string()));
    }

    /// Answers 409 Conflict to the next PUT or PATCH of `key` (or its `/status`), once.
    pub fn conflict_once(&self, key: &ObjectKey) {
        self.state().conflict_once.insert(key.clone());
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.state().requests.clone()
    }

    /// Forgets the recorded requests.
    pub fn clear_requests(&self) {
        self.state().requests.clear();
    }
}

impl Drop for KubeApi {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        // Wake the blocking accept so the thread sees the flag.
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.acceptor.take() {
            let _ = t.join();
        }
    }
}

/// `bytes` in standard base64 with padding: how a Secret's `data` values are written
/// in the objects this API serves (and a real API server stores).
pub fn base64(bytes: &[u8]) -> String {
    const T: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_patch_follows_rfc_7386() {
        let mut t = json!({"a": "b", "c": {"d": "e", "f": "g"}});
        merge_patch(&mut t, &json!({"a": "z", "c": {"f": null}}));
        assert_eq!(t, json!({"a": "z", "c": {"d": "e"}}));
        let mut t = json!({"a": [1, 2]});
        merge_patch(&mut t, &json!({"a": [3]}));
        assert_eq!(t, json!({"a": [3]}));
    }

    #[test]
    fn paths_parse_as_the_api_lays_them_out() {
        let (k, sub) =
            parse_path("/apis/barmancloud.cnpg.io/v1/namespaces/db/objectstores/s/status").unwrap();
        assert_eq!(
            (k.api_version.as_str(), k.plural.as_str(), k.name.as_str()),
            ("barmancloud.cnpg.io/v1", "objectstores", "s")
        );
        assert_eq!(sub.as_deref(), Some("status"));
        let (k, sub) = parse_path("/api/v1/namespaces/db/secrets").unwrap();
        assert_eq!(
            (k.api_version.as_str(), k.name.as_str(), sub),
            ("v1", "", None)
        );
        assert!(parse_path("/apis/x").is_none());
        let (k, _) = parse_path("/apis/rbac.authorization.k8s.io/v1/roles").unwrap();
        assert_eq!((k.namespace.as_str(), k.plural.as_str()), ("", "roles"));
    }

    #[test]
    fn a_merge_patch_with_a_stale_resource_version_conflicts() {
        let mut st = State::default();
        let path = "/apis/rbac.authorization.k8s.io/v1/namespaces/db/roles";
        let body = json!({"metadata": {"name": "r", "labels": {"a": "1"}}}).to_string();
        assert_eq!(
            st.handle("POST", path, "", "application/json", &body).0,
            201
        );
        let item = format!("{path}/r");
        let rv = st.handle("GET", &item, "", "", "").1["metadata"]["resourceVersion"].clone();
        let patch = |rv: &Value| {
            json!({"metadata": {"resourceVersion": rv, "labels": {"a": "2"}}}).to_string()
        };
        let mp = "application/merge-patch+json";
        assert_eq!(st.handle("PATCH", &item, "", mp, &patch(&rv)).0, 200);
        // The same (now stale) version again: 409, and nothing changes.
        assert_eq!(st.handle("PATCH", &item, "", mp, &patch(&rv)).0, 409);
        let all = st.handle(
            "GET",
            "/apis/rbac.authorization.k8s.io/v1/roles",
            "labelSelector=a%3D2",
            "",
            "",
        );
        assert_eq!(all.1["items"].as_array().unwrap().len(), 1);
        let none = st.handle(
            "GET",
            "/apis/rbac.authorization.k8s.io/v1/roles",
            "labelSelector=a%3D1",
            "",
            "",
        );
        assert_eq!(none.1["items"].as_array().unwrap().len(), 0);
    }

    #[test]
    fn label_selectors_decode() {
        assert_eq!(
            label_selector("labelSelector=barmancloud.cnpg.io%2Fcluster%2Capp%3Dx&limit=5"),
            vec![
                ("barmancloud.cnpg.io/cluster".to_string(), None),
                ("app".to_string(), Some("x".to_string()))
            ]
        );
    }
}
