//! Vault's HTTP conventions: the request as the host hands it over, its
//! translation into a logical request (operation, path, data), and the
//! rendering of replies and errors into Vault's envelopes.

use serde_json::{Map, Value, json};

use crate::effects::Effects;
use crate::error::ApiError;
use crate::framework::parse_bool;
use crate::sync::worker::inline::InlineRun;

/// The authenticated caller (WIT `types.caller`).
#[derive(Clone, PartialEq, Eq)]
pub struct Caller {
    pub token: String,
    pub accessor: String,
    pub display_name: String,
    pub policies: Vec<String>,
    pub path: String,
    pub creation_time: u64,
}

impl std::fmt::Debug for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Caller")
            .field("token", &"*****")
            .field("accessor", &self.accessor)
            .field("display_name", &self.display_name)
            .field("policies", &self.policies)
            .finish()
    }
}

/// One request below `/v1/` (WIT `types.request`).
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub caller: Option<Caller>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// WIT `types.response`.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// What handling a request produced (WIT `types.outcome`): the response, and
/// what the committed request caused that the host must act on.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub response: Response,
    pub effects: Effects,
}

impl Outcome {
    /// A response with no effects (a request that failed).
    pub fn only(response: Response) -> Self {
        Outcome {
            response,
            effects: Effects::default(),
        }
    }
}

/// Vault's logical operations, which are also the ACL capabilities a request
/// needs. POST and PUT are synonyms: the HTTP layer makes them `Update`, and
/// the router turns that into `Create` on a path whose existence check finds
/// no target. `HEAD` is Vault's header operation: only `sys/health` serves
/// it, every other path answers 405, and no policy capability grants it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Read,
    List,
    Create,
    Update,
    Patch,
    Delete,
    Header,
}

impl Operation {
    /// The capability name, as policies and Vault's OpenAPI write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Read => "read",
            Operation::List => "list",
            Operation::Create => "create",
            Operation::Update => "update",
            Operation::Patch => "patch",
            Operation::Delete => "delete",
            Operation::Header => "header",
        }
    }

    /// A write (POST or PUT), before or after the existence check.
    pub fn is_write(self) -> bool {
        matches!(self, Operation::Create | Operation::Update)
    }
}

/// A request after Vault's HTTP layer: operation, decoded path and data.
#[derive(Debug)]
pub struct LogicalRequest {
    pub operation: Operation,
    /// Decoded path without the leading slash; LIST paths end with `/`.
    pub path: String,
    /// The JSON or form body for writes; query parameters for reads, lists and deletes.
    pub data: Map<String, Value>,
    pub caller: Option<Caller>,
    pub request_id: String,
}

impl LogicalRequest {
    /// A request made by the engine itself (tests, and the host's dev-mode setup).
    pub fn new(operation: Operation, path: &str, data: Value) -> Self {
        LogicalRequest {
            operation,
            path: path.to_string(),
            data: match data {
                Value::Object(m) => m,
                _ => Map::new(),
            },
            caller: None,
            request_id: new_uuid(),
        }
    }
}

/// Translates the HTTP request the way Vault's `http/logical.go` does:
///
/// - the query string is the data of reads, lists, deletes and `HEAD`s; a
///   parameter given once is a string, one given more often a list of strings
///   (which a field expecting one value refuses);
/// - `GET ?list=true` (any Go `ParseBool` truth) is a LIST and drops the
///   parameter; `?list=false` leaves it in the data, where the endpoint warns
///   of it as an unrecognized parameter;
/// - `OPTIONS` is an operation no endpoint serves (405), as are unknown methods;
/// - a write (POST, PUT, PATCH) to a path ending in `/` is refused before any
///   routing: Vault cannot tell a key named `foo/` from a forgotten key.
pub fn to_logical(req: Request) -> Result<LogicalRequest, ApiError> {
    if wrapping_requested(req.header(WRAP_TTL_HEADER), req.header(WRAP_FORMAT_HEADER)) {
        return Err(ApiError::bad_request(WRAPPING_NOT_SUPPORTED));
    }
    let mut query = parse_query(&req.query);
    let operation = request_operation(&req.method, &req.query)?;
    if operation == Operation::List && req.method.eq_ignore_ascii_case("GET") {
        query.remove("list");
    }
    let path = request_path(&req.path, operation)?;
    let data = match operation {
        Operation::Read | Operation::List | Operation::Delete | Operation::Header => query,
        Operation::Create | Operation::Update | Operation::Patch => {
            let content_type = req
                .header("content-type")
                .unwrap_or_default()
                .to_ascii_lowercase();
            if operation == Operation::Patch && !is_merge_patch(&content_type) {
                let shown = req.header("content-type").unwrap_or_default().to_string();
                return Err(ApiError::UnsupportedMediaType(shown));
            }
            let data = parse_body(&content_type, &req.body)?;
            if path.ends_with('/') {
                return Err(ApiError::bad_request(
                    "cannot write to a path ending in '/'",
                ));
            }
            data
        }
    };
    Ok(LogicalRequest {
        operation,
        path,
        data,
        caller: req.caller,
        request_id: new_uuid(),
    })
}

/// The header by which a client asks for a response-wrapped answer.
pub const WRAP_TTL_HEADER: &str = "x-vault-wrap-ttl";
/// The header choosing the format of a wrapped answer.
pub const WRAP_FORMAT_HEADER: &str = "x-vault-wrap-format";
/// The answer (400) to a request that asks for response wrapping.
pub const WRAPPING_NOT_SUPPORTED: &str = "response wrapping is not supported";

/// Whether a request asks for response wrapping (a non-empty
/// `X-Vault-Wrap-TTL` or `X-Vault-Wrap-Format`), which kvsync does not
/// serve: such a request is refused before any handler runs, so a secret
/// is never answered in the clear to a client expecting a wrapping token.
pub fn wrapping_requested(ttl: Option<&str>, format: Option<&str>) -> bool {
    [ttl, format]
        .into_iter()
        .flatten()
        .any(|v| !v.trim().is_empty())
}

/// The logical operation of an HTTP request: GET reads, or lists with
/// `?list=true` (the first `list` value, any Go `ParseBool` truth); HEAD is
/// Vault's header operation; LIST lists; POST and PUT update (the router
/// turns that into `Create` on a path whose existence check finds no
/// target); PATCH patches; DELETE deletes. Any other method is a 405, an
/// unreadable `list` value a 400. The host's early check reads requests the
/// same way.
pub fn request_operation(method: &str, query: &str) -> Result<Operation, ApiError> {
    let operation = match method.to_ascii_uppercase().as_str() {
        "GET" => Operation::Read,
        "HEAD" => Operation::Header,
        "LIST" => Operation::List,
        "POST" | "PUT" => Operation::Update,
        "PATCH" => Operation::Patch,
        "DELETE" => Operation::Delete,
        _ => return Err(ApiError::UnsupportedOperation),
    };
    if operation != Operation::Read {
        return Ok(operation);
    }
    let list = form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == "list");
    match list {
        None => Ok(Operation::Read),
        Some((_, list)) => match parse_bool(&list) {
            Some(true) => Ok(Operation::List),
            Some(false) => Ok(Operation::Read),
            None => Err(ApiError::bad_request(format!(
                "invalid value {list:?} for the list parameter: use true or false"
            ))),
        },
    }
}

/// The logical path of a request: percent-decoded, without a leading `/`,
/// and ending in `/` for a LIST. A path that is not UTF-8 or holds control
/// characters is a 400.
pub fn request_path(raw: &str, operation: Operation) -> Result<String, ApiError> {
    let mut path = percent_encoding::percent_decode_str(raw.trim_start_matches('/'))
        .decode_utf8()
        .map_err(|_| ApiError::bad_request("the request path is not valid UTF-8"))?
        .into_owned();
    if path.chars().any(|c| c.is_control()) {
        return Err(ApiError::bad_request(
            "the request path contains control characters",
        ));
    }
    if operation == Operation::List && !path.ends_with('/') {
        path.push('/');
    }
    Ok(path)
}

/// Whether a (lower-case) content type is the one PATCH requires.
pub fn is_merge_patch(content_type: &str) -> bool {
    content_type.starts_with("application/merge-patch+json")
}

/// Vault's `parseQuery`: a parameter given once is a string, one given more
/// often the list of its values, in order.
fn parse_query(query: &str) -> Map<String, Value> {
    let mut data: Map<String, Value> = Map::new();
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        let v = Value::String(v.into_owned());
        match data.get_mut(k.as_ref()) {
            Some(Value::Array(values)) => values.push(v),
            Some(first) => *first = Value::Array(vec![first.take(), v]),
            None => {
                data.insert(k.into_owned(), v);
            }
        }
    }
    data
}

fn parse_body(content_type: &str, body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    // Vault's `isForm`: a form content type whose body does not start like JSON
    // (curl's `-d` sends JSON labelled as a form).
    let looks_like_json = body
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| *b == b'{' || *b == b'[');
    if content_type.starts_with("application/x-www-form-urlencoded") && !looks_like_json {
        let mut data = Map::new();
        for (k, v) in form_urlencoded::parse(body) {
            data.insert(k.into_owned(), Value::String(v.into_owned()));
        }
        return Ok(data);
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(Value::Null) => Ok(Map::new()),
        Ok(_) => Err(ApiError::bad_request(
            "error parsing JSON: the request body must be a JSON object",
        )),
        Err(e) => Err(ApiError::bad_request(format!("error parsing JSON: {e}"))),
    }
}

/// What a handler answers.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub status: u16,
    /// `None` and no warnings: 204 No Content.
    pub data: Option<Value>,
    pub warnings: Vec<String>,
    /// Legacy `sys/` routes also copy `data`'s keys to the top level of the body.
    pub data_at_top_level: bool,
    /// A body that is not wrapped in the envelope (`sys/health`); `data`
    /// `None`: no body at all.
    pub raw: bool,
    /// The envelope's `auth` block (a token created or renewed).
    pub auth: Option<Value>,
    /// `data` already rendered as JSON text, for answers too large to build
    /// as a value tree within an instance's memory (see [`Reply::rendered`]).
    pub rendered: Option<String>,
    /// Provider calls the request claimed in its transaction, to run once it
    /// has committed (write-ahead: [`crate::sync::worker::inline`]); the
    /// router runs them and answers with what they left.
    pub inline: Option<InlineRun>,
}

impl Reply {
    /// A reply whose `data` is `json`, an object already rendered as JSON
    /// text: a value tree costs several times its text in memory, so a
    /// handler that answers with every key of a large set writes the text
    /// itself.
    pub fn rendered(json: String) -> Self {
        Reply {
            rendered: Some(json),
            ..Reply::data(Value::Null)
        }
    }

    pub fn data(data: Value) -> Self {
        Reply {
            status: 200,
            data: Some(data),
            warnings: Vec::new(),
            data_at_top_level: false,
            raw: false,
            auth: None,
            rendered: None,
            inline: None,
        }
    }

    /// A listing: `data.keys`, or 404 with no errors when there are none (Vault's empty
    /// list response).
    pub fn keys(keys: Vec<String>) -> Result<Self, ApiError> {
        if keys.is_empty() {
            return Err(ApiError::NotFound);
        }
        Ok(Reply::data(json!({ "keys": keys })))
    }

    pub fn no_content() -> Self {
        Reply {
            status: 204,
            data: None,
            warnings: Vec::new(),
            data_at_top_level: false,
            raw: false,
            auth: None,
            rendered: None,
            inline: None,
        }
    }

    /// A 200 whose envelope carries an `auth` block and `data: null`.
    pub fn auth(auth: Value) -> Self {
        Reply {
            status: 200,
            auth: Some(auth),
            ..Reply::no_content()
        }
    }

    /// A body sent as is, outside the envelope.
    pub fn raw(status: u16, body: Value) -> Self {
        Reply {
            status,
            data: Some(body),
            warnings: Vec::new(),
            data_at_top_level: false,
            raw: true,
            auth: None,
            rendered: None,
            inline: None,
        }
    }

    /// A status with an empty body (Vault's `RespondWithStatusCode` without a
    /// response: the KV engine's 404 for a PATCH of a secret that does not exist).
    pub fn empty(status: u16) -> Self {
        Reply {
            status,
            data: None,
            warnings: Vec::new(),
            data_at_top_level: false,
            raw: true,
            auth: None,
            rendered: None,
            inline: None,
        }
    }

    /// This reply, answered once the provider calls `run` claimed have run
    /// after the commit (see [`Reply::inline`]).
    pub fn after_commit(mut self, run: InlineRun) -> Self {
        self.inline = Some(run);
        self
    }

    pub fn with_status(mut self, status: u16) -> Self {
        self.status = status;
        self
    }

    pub fn with_warnings(self, warnings: impl IntoIterator<Item = String>) -> Self {
        warnings
            .into_iter()
            .fold(self, |reply, w| reply.with_warning(Some(w)))
    }

    pub fn with_warning(mut self, warning: Option<String>) -> Self {
        if let Some(w) = warning {
            self.warnings.push(w);
            if self.status == 204 {
                self.status = 200;
            }
        }
        self
    }

    pub fn with_data_at_top_level(mut self) -> Self {
        self.data_at_top_level = true;
        self
    }
}

const JSON: (&str, &str) = ("content-type", "application/json");

fn headers() -> Vec<(String, String)> {
    vec![
        (JSON.0.to_string(), JSON.1.to_string()),
        ("cache-control".to_string(), "no-store".to_string()),
    ]
}

/// Renders a reply in Vault's success envelope.
pub fn render(reply: Reply, request_id: &str, mount_type: &str) -> Response {
    if reply.raw {
        return Response {
            status: reply.status,
            headers: headers(),
            body: reply
                .data
                .and_then(|body| serde_json::to_vec(&body).ok())
                .unwrap_or_default(),
        };
    }
    if reply.status == 204
        && reply.data.is_none()
        && reply.warnings.is_empty()
        && reply.auth.is_none()
    {
        return Response {
            status: 204,
            headers: headers(),
            body: Vec::new(),
        };
    }
    let status = if reply.status == 204 {
        200
    } else {
        reply.status
    };
    let warnings = if reply.warnings.is_empty() {
        Value::Null
    } else {
        json!(reply.warnings)
    };
    let top_level = match (&reply.data, reply.data_at_top_level) {
        (Some(Value::Object(data)), true) => data.clone(),
        _ => Map::new(),
    };
    let data = match reply.rendered.map(serde_json::value::RawValue::from_string) {
        Some(Ok(raw)) => Data::Rendered(raw),
        Some(Err(e)) => {
            return render_error(&ApiError::Internal(format!(
                "cannot render the answer: {e}"
            )));
        }
        None => Data::Value(reply.data.unwrap_or(Value::Null)),
    };
    let envelope = Envelope {
        top_level,
        request_id,
        lease_id: "",
        renewable: false,
        lease_duration: 0,
        data,
        wrap_info: Value::Null,
        warnings,
        auth: reply.auth.unwrap_or(Value::Null),
        mount_type,
    };
    Response {
        status,
        headers: headers(),
        body: serde_json::to_vec(&envelope).unwrap_or_default(),
    }
}

/// Vault's success envelope, fields in Vault's order.
#[derive(serde::Serialize)]
struct Envelope<'a> {
    #[serde(flatten)]
    top_level: Map<String, Value>,
    request_id: &'a str,
    lease_id: &'a str,
    renewable: bool,
    lease_duration: u64,
    data: Data,
    wrap_info: Value,
    warnings: Value,
    auth: Value,
    mount_type: &'a str,
}

/// The envelope's `data`: a value, or JSON text rendered by the handler.
#[derive(serde::Serialize)]
#[serde(untagged)]
enum Data {
    Value(Value),
    Rendered(Box<serde_json::value::RawValue>),
}

/// Renders an error in Vault's `{"errors":[...]}` envelope.
pub fn render_error(err: &ApiError) -> Response {
    Response {
        status: err.status(),
        headers: headers(),
        body: serde_json::to_vec(&json!({ "errors": err.messages() })).unwrap_or_default(),
    }
}

/// A random (v4) UUID.
pub fn new_uuid() -> String {
    let mut b = random_bytes::<16>();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// Bytes from the platform's CSPRNG (`wasi:random` inside the component).
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut buf = [0u8; N];
    if getrandom::fill(&mut buf).is_err() {
        // No entropy source is a broken platform; fall back to the clock so ids
        // stay unique rather than failing every request.
        let t = crate::time::now().to_le_bytes();
        for ((i, b), x) in buf.iter_mut().enumerate().zip(t.iter().cycle()) {
            *b = x ^ (i as u8);
        }
    }
    buf
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: &str, path: &str, query: &str, ct: &str, body: &str) -> Request {
        Request {
            method: method.into(),
            path: path.into(),
            query: query.into(),
            headers: vec![("content-type".into(), ct.into())],
            body: body.as_bytes().to_vec(),
            caller: None,
        }
    }

    #[test]
    fn response_wrapping_is_refused_before_routing() {
        for (name, value) in [("X-Vault-Wrap-TTL", "60s"), ("x-vault-wrap-format", "jwt")] {
            let mut r = req("GET", "secret/data/a", "", JSON.1, "");
            r.headers.push((name.into(), value.into()));
            let err = to_logical(r).unwrap_err();
            assert_eq!(err.status(), 400);
            assert_eq!(
                render_error(&err).body,
                br#"{"errors":["response wrapping is not supported"]}"#
            );
        }
        let mut r = req("GET", "secret/data/a", "", JSON.1, "");
        r.headers.push(("x-vault-wrap-ttl".into(), " ".into()));
        assert!(to_logical(r).is_ok());
    }

    #[test]
    fn deep_json_and_control_characters_in_names_are_400s() {
        for deep in ["[".repeat(10_000), r#"{"a":"#.repeat(10_000)] {
            let err = to_logical(req("POST", "sys/mounts/kv", "", JSON.1, &deep)).unwrap_err();
            assert_eq!(err.status(), 400);
        }
        let s = crate::sync::destinations::testing::Server::new();
        let mount = json!({"type": "kv", "options": {"version": "2"}});
        assert_eq!(s.post("sys/mounts/secret", mount).0, 204);
        s.write("sys/sync/destinations/in-mem/d", json!({}));
        s.write("secret/data/app", json!({"data": {"a": "1"}}));
        for name in ["app\u{1}", "app\n", "a\u{7f}pp"] {
            let body = json!({"mount": "secret", "secret_name": name});
            let (status, body) = s.post("sys/sync/destinations/in-mem/d/associations/set", body);
            assert_eq!(status, 400, "{name:?}: {body}");
        }
    }

    #[test]
    fn translates_methods() {
        let l = to_logical(req("GET", "secret/metadata", "list=true", "", "")).unwrap();
        assert_eq!(l.operation, Operation::List);
        assert_eq!(l.path, "secret/metadata/");
        assert!(to_logical(req("GET", "x", "list=maybe", "", "")).is_err());
        assert_eq!(
            to_logical(req("FOO", "x", "", "", "")).unwrap_err(),
            ApiError::UnsupportedOperation
        );
        let e = to_logical(req("PATCH", "x", "", "application/json", "{}")).unwrap_err();
        assert_eq!(e.status(), 415);
        let d = to_logical(req("DELETE", "x", "purge=true", "", "{\"a\":1}")).unwrap();
        assert_eq!(d.data.get("purge"), Some(&json!("true")));
        assert!(d.data.get("a").is_none());
        let f = to_logical(req(
            "POST",
            "x",
            "",
            "application/x-www-form-urlencoded",
            "type=kv-v2",
        ))
        .unwrap();
        assert_eq!(f.data.get("type"), Some(&json!("kv-v2")));
        assert_eq!(
            to_logical(req("POST", "x", "", "", "[1]"))
                .unwrap_err()
                .status(),
            400
        );
        assert_eq!(
            to_logical(req("POST", "x", "", "", "{bad"))
                .unwrap_err()
                .status(),
            400
        );
        let p = to_logical(req("GET", "secret/data/a%20b", "", "", "")).unwrap();
        assert_eq!(p.path, "secret/data/a b");
    }

    #[test]
    fn query_parameters_as_vault_reads_them() {
        // A repeated parameter is a list of its values.
        let l = to_logical(req("GET", "x", "version=1&version=2&a=b", "", "")).unwrap();
        assert_eq!(l.data.get("version"), Some(&json!(["1", "2"])));
        assert_eq!(l.data.get("a"), Some(&json!("b")));
        let l = to_logical(req("DELETE", "x", "v=1&v=2&v=3", "", "")).unwrap();
        assert_eq!(l.data.get("v"), Some(&json!(["1", "2", "3"])));
        // list=true is a LIST and drops the parameter (its first value decides);
        // list=false stays in the data, where the endpoint warns of it.
        let l = to_logical(req("GET", "x", "list=true&list=false&k=v", "", "")).unwrap();
        assert_eq!(l.operation, Operation::List);
        assert!(l.data.get("list").is_none());
        assert_eq!(l.data.get("k"), Some(&json!("v")));
        let l = to_logical(req("GET", "x", "list=false", "", "")).unwrap();
        assert_eq!(l.operation, Operation::Read);
        assert_eq!(l.data.get("list"), Some(&json!("false")));
        assert!(to_logical(req("GET", "x", "list=no&list=true", "", "")).is_err());
    }

    #[test]
    fn head_options_and_writes_to_folders() {
        let l = to_logical(req("HEAD", "sys/health", "activecode=201", "", "")).unwrap();
        assert_eq!(l.operation, Operation::Header);
        assert_eq!(l.data.get("activecode"), Some(&json!("201")));
        assert_eq!(
            to_logical(req("OPTIONS", "secret/data/a", "", "", "")).unwrap_err(),
            ApiError::UnsupportedOperation
        );
        let refused = ApiError::bad_request("cannot write to a path ending in '/'");
        for method in ["POST", "PUT"] {
            let e = to_logical(req(method, "secret/data/a/", "", "", "{}")).unwrap_err();
            assert_eq!(e, refused);
        }
        let e = to_logical(req("PATCH", "a/", "", "application/merge-patch+json", "{}"));
        assert_eq!(e.unwrap_err(), refused);
        // The content type is checked first, as Vault's HTTP layer does.
        let e = to_logical(req("PATCH", "a/", "", "application/json", "{}"));
        assert_eq!(e.unwrap_err().status(), 415);
        // Reads, lists and deletes of a folder are fine.
        for method in ["GET", "LIST", "DELETE"] {
            assert!(to_logical(req(method, "secret/metadata/a/", "", "", "")).is_ok());
        }
    }

    #[test]
    fn renders_envelopes() {
        let r = render(Reply::data(json!({"a":1})), "id", "kv");
        let v: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v.as_object().unwrap().len(), 9);
        let text = String::from_utf8(r.body.clone()).unwrap();
        assert!(text.starts_with(r#"{"request_id":"id","lease_id":"","renewable":false,"lease_duration":0,"data":{"a":1}"#));
        assert!(
            text.ends_with(r#""wrap_info":null,"warnings":null,"auth":null,"mount_type":"kv"}"#)
        );
        assert_eq!(render(Reply::no_content(), "id", "kv").status, 204);
        let w = render(
            Reply::no_content().with_warning(Some("w".into())),
            "id",
            "kv",
        );
        assert_eq!(w.status, 200);
        let e = render_error(&ApiError::NotFound);
        assert_eq!(e.body, br#"{"errors":[]}"#);
        let empty = render(Reply::empty(404), "id", "kv");
        assert_eq!((empty.status, empty.body.len()), (404, 0));
        assert!(empty.headers.contains(&(JSON.0.into(), JSON.1.into())));
        assert!(new_uuid().len() == 36);
    }
}
