//! Label and field selectors: parsing the query-string syntax and matching
//! objects. Pure functions, no I/O.
//!
//! Label syntax is upstream's `labels.Parse`: `a=b`, `a==b`, `a!=b`,
//! `a in (x,y)`, `a notin (x)`, `a`, `!a`, `a>1`, `a<1`, comma = AND.
//! Field selectors support `=`, `==`, `!=` over the per-kind fields returned
//! by `field_value`; an unsupported field is an error, like upstream.

use serde_json::Value;

#[derive(Clone, Debug, PartialEq)]
pub enum Requirement {
    Eq(String, String),
    NotEq(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
    Gt(String, i64),
    Lt(String, i64),
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct LabelSelector {
    pub requirements: Vec<Requirement>,
}

struct Lexer<'a> {
    s: &'a [u8],
    pos: usize,
}

#[derive(Debug, PartialEq, Clone)]
enum Tok {
    Ident(String),
    Comma,
    Open,
    Close,
    Eq,
    DoubleEq,
    NotEq,
    Not,
    Gt,
    Lt,
    In,
    NotIn,
    End,
}

fn is_ident_char(c: u8) -> bool {
    !matches!(
        c,
        b' ' | b'\t' | b',' | b'(' | b')' | b'=' | b'!' | b'<' | b'>'
    )
}

impl Lexer<'_> {
    fn next(&mut self) -> Tok {
        while self.pos < self.s.len() && matches!(self.s[self.pos], b' ' | b'\t') {
            self.pos += 1;
        }
        if self.pos >= self.s.len() {
            return Tok::End;
        }
        let c = self.s[self.pos];
        let two = |l: &Self, n: u8| l.s.get(l.pos + 1) == Some(&n);
        match c {
            b',' => {
                self.pos += 1;
                Tok::Comma
            }
            b'(' => {
                self.pos += 1;
                Tok::Open
            }
            b')' => {
                self.pos += 1;
                Tok::Close
            }
            b'=' if two(self, b'=') => {
                self.pos += 2;
                Tok::DoubleEq
            }
            b'=' => {
                self.pos += 1;
                Tok::Eq
            }
            b'!' if two(self, b'=') => {
                self.pos += 2;
                Tok::NotEq
            }
            b'!' => {
                self.pos += 1;
                Tok::Not
            }
            b'>' => {
                self.pos += 1;
                Tok::Gt
            }
            b'<' => {
                self.pos += 1;
                Tok::Lt
            }
            _ => {
                let start = self.pos;
                while self.pos < self.s.len() && is_ident_char(self.s[self.pos]) {
                    self.pos += 1;
                }
                let word = String::from_utf8_lossy(&self.s[start..self.pos]).into_owned();
                match word.as_str() {
                    "in" => Tok::In,
                    "notin" => Tok::NotIn,
                    _ => Tok::Ident(word),
                }
            }
        }
    }

    fn peek(&mut self) -> Tok {
        let save = self.pos;
        let t = self.next();
        self.pos = save;
        t
    }
}

fn valid_key(k: &str) -> Result<(), String> {
    let (prefix, name) = match k.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, k),
    };
    if let Some(p) = prefix
        && (p.is_empty() || p.len() > 253)
    {
        return Err(format!(
            "invalid label key \"{k}\": prefix part must be non-empty"
        ));
    }
    if name.is_empty() || name.len() > 63 {
        return Err(format!(
            "invalid label key \"{k}\": name part must be non-empty and no more than 63 characters"
        ));
    }
    let ok = name
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name.as_bytes()[name.len() - 1].is_ascii_alphanumeric();
    if !ok {
        return Err(format!(
            "invalid label key \"{k}\": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
        ));
    }
    Ok(())
}

fn valid_value(v: &str) -> Result<(), String> {
    if v.is_empty() {
        return Ok(());
    }
    let ok = v.len() <= 63
        && v.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        && v.as_bytes()[0].is_ascii_alphanumeric()
        && v.as_bytes()[v.len() - 1].is_ascii_alphanumeric();
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid label value: \"{v}\": at key: must be no more than 63 characters; a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"
        ))
    }
}

impl LabelSelector {
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut lx = Lexer {
            s: s.as_bytes(),
            pos: 0,
        };
        let mut reqs = Vec::new();
        if lx.peek() == Tok::End {
            return Ok(LabelSelector::default());
        }
        loop {
            let req = match lx.next() {
                Tok::Not => match lx.next() {
                    Tok::Ident(k) => {
                        valid_key(&k)?;
                        Requirement::NotExists(k)
                    }
                    t => {
                        return Err(format!(
                            "unable to parse requirement: found '{t:?}', expected: identifier after '!'"
                        ));
                    }
                },
                Tok::Ident(k) => {
                    valid_key(&k)?;
                    match lx.peek() {
                        Tok::Comma | Tok::End => Requirement::Exists(k),
                        Tok::Eq | Tok::DoubleEq => {
                            lx.next();
                            let v = value_tok(&mut lx)?;
                            Requirement::Eq(k, v)
                        }
                        Tok::NotEq => {
                            lx.next();
                            let v = value_tok(&mut lx)?;
                            Requirement::NotEq(k, v)
                        }
                        Tok::Gt | Tok::Lt => {
                            let gt = lx.next() == Tok::Gt;
                            let v = value_tok(&mut lx)?;
                            let n: i64 = v.parse().map_err(|_| {
                                "unable to parse requirement: for 'Gt', 'Lt' operators, the value must be an integer".to_string()
                            })?;
                            if gt {
                                Requirement::Gt(k, n)
                            } else {
                                Requirement::Lt(k, n)
                            }
                        }
                        Tok::In | Tok::NotIn => {
                            let is_in = lx.next() == Tok::In;
                            let vals = set_tok(&mut lx)?;
                            if is_in {
                                Requirement::In(k, vals)
                            } else {
                                Requirement::NotIn(k, vals)
                            }
                        }
                        t => {
                            return Err(format!(
                                "found '{}', expected: '=', '!=', '==', 'in', notin'",
                                tok_text(&t)
                            ));
                        }
                    }
                }
                t => {
                    return Err(format!(
                        "found '{}', expected: !, identifier, or 'end of string'",
                        tok_text(&t)
                    ));
                }
            };
            reqs.push(req);
            match lx.next() {
                Tok::End => break,
                Tok::Comma => continue,
                t => {
                    return Err(format!(
                        "found '{}', expected: ',' or 'end of string'",
                        tok_text(&t)
                    ));
                }
            }
        }
        Ok(LabelSelector { requirements: reqs })
    }

    /// Build from a `metav1.LabelSelector` JSON object (matchLabels + matchExpressions).
    pub fn from_json(v: &Value) -> Result<Self, String> {
        let mut reqs = Vec::new();
        if let Some(m) = v.get("matchLabels").and_then(Value::as_object) {
            for (k, val) in m {
                reqs.push(Requirement::Eq(
                    k.clone(),
                    val.as_str().unwrap_or_default().to_string(),
                ));
            }
        }
        if let Some(exprs) = v.get("matchExpressions").and_then(Value::as_array) {
            for e in exprs {
                let key = e
                    .get("key")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                let values: Vec<String> = e
                    .get("values")
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(|x| x.as_str().map(String::from))
                            .collect()
                    })
                    .unwrap_or_default();
                let op = e
                    .get("operator")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                reqs.push(match op {
                    "In" => Requirement::In(key, values),
                    "NotIn" => Requirement::NotIn(key, values),
                    "Exists" => Requirement::Exists(key),
                    "DoesNotExist" => Requirement::NotExists(key),
                    other => {
                        return Err(format!("{other:?} is not a valid label selector operator"));
                    }
                });
            }
        }
        Ok(LabelSelector { requirements: reqs })
    }

    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    pub fn matches_labels(&self, labels: Option<&serde_json::Map<String, Value>>) -> bool {
        let get = |k: &str| labels.and_then(|m| m.get(k)).and_then(Value::as_str);
        self.requirements.iter().all(|r| match r {
            Requirement::Eq(k, v) => get(k) == Some(v.as_str()),
            Requirement::NotEq(k, v) => get(k) != Some(v.as_str()),
            Requirement::In(k, vs) => get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
            Requirement::NotIn(k, vs) => get(k).is_none_or(|x| !vs.iter().any(|v| v == x)),
            Requirement::Exists(k) => get(k).is_some(),
            Requirement::NotExists(k) => get(k).is_none(),
            Requirement::Gt(k, n) => get(k)
                .and_then(|x| x.parse::<i64>().ok())
                .is_some_and(|x| x > *n),
            Requirement::Lt(k, n) => get(k)
                .and_then(|x| x.parse::<i64>().ok())
                .is_some_and(|x| x < *n),
        })
    }

    pub fn matches(&self, obj: &Value) -> bool {
        self.matches_labels(obj.pointer("/metadata/labels").and_then(Value::as_object))
    }
}

fn tok_text(t: &Tok) -> String {
    match t {
        Tok::Ident(s) => s.clone(),
        Tok::Comma => ",".into(),
        Tok::Open => "(".into(),
        Tok::Close => ")".into(),
        Tok::Eq => "=".into(),
        Tok::DoubleEq => "==".into(),
        Tok::NotEq => "!=".into(),
        Tok::Not => "!".into(),
        Tok::Gt => ">".into(),
        Tok::Lt => "<".into(),
        Tok::In => "in".into(),
        Tok::NotIn => "notin".into(),
        Tok::End => "".into(),
    }
}

fn value_tok(lx: &mut Lexer) -> Result<String, String> {
    match lx.peek() {
        Tok::Ident(v) => {
            lx.next();
            valid_value(&v)?;
            Ok(v)
        }
        Tok::Comma | Tok::End => Ok(String::new()),
        t => Err(format!("found '{}', expected: identifier", tok_text(&t))),
    }
}

fn set_tok(lx: &mut Lexer) -> Result<Vec<String>, String> {
    if lx.next() != Tok::Open {
        return Err("found '', expected: '('".into());
    }
    let mut vals = Vec::new();
    loop {
        match lx.next() {
            Tok::Ident(v) => {
                valid_value(&v)?;
                vals.push(v);
            }
            Tok::Close if vals.is_empty() => return Ok(vals),
            t => {
                return Err(format!(
                    "found '{}', expected: ',', ')' or identifier",
                    tok_text(&t)
                ));
            }
        }
        match lx.next() {
            Tok::Comma => continue,
            Tok::Close => return Ok(vals),
            t => return Err(format!("found '{}', expected: ',' or ')'", tok_text(&t))),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct FieldRequirement {
    pub field: String,
    pub value: String,
    pub negate: bool,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct FieldSelector {
    pub requirements: Vec<FieldRequirement>,
}

impl FieldSelector {
    /// Parse and check every field is supported for this kind.
    pub fn parse(s: &str, group: &str, kind: &str) -> Result<Self, String> {
        let mut reqs = Vec::new();
        for part in split_unescaped_commas(s) {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            let (field, value, negate) = if let Some((f, v)) = part.split_once("!=") {
                (f, v, true)
            } else if let Some((f, v)) = part.split_once("==") {
                (f, v, false)
            } else if let Some((f, v)) = part.split_once('=') {
                (f, v, false)
            } else {
                return Err(format!(
                    "invalid selector: '{part}'; can't understand '{part}'"
                ));
            };
            let field = field.trim().to_string();
            if !supported_field(group, kind, &field) {
                return Err(format!("field label not supported: {field}"));
            }
            reqs.push(FieldRequirement {
                field,
                value: unescape(value.trim()),
                negate,
            });
        }
        Ok(FieldSelector { requirements: reqs })
    }

    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    pub fn matches(&self, obj: &Value) -> bool {
        self.requirements.iter().all(|r| {
            let actual = field_value(obj, &r.field);
            (actual == r.value) != r.negate
        })
    }

    /// `metadata.name=x` only: lets get-by-watch narrow to one key.
    pub fn exact_name(&self) -> Option<&str> {
        self.requirements
            .iter()
            .find(|r| r.field == "metadata.name" && !r.negate)
            .map(|r| r.value.as_str())
    }
}

fn split_unescaped_commas(s: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut escaped = false;
    for c in s.chars() {
        if escaped {
            if let Some(last) = out.last_mut() {
                last.push('\\');
                last.push(c);
            }
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == ',' {
            out.push(String::new());
        } else if let Some(last) = out.last_mut() {
            last.push(c);
        }
    }
    out
}

fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut escaped = false;
    for c in s.chars() {
        if escaped {
            out.push(c);
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else {
            out.push(c);
        }
    }
    out
}

/// Per-kind selectable fields (beyond metadata.name / metadata.namespace).
fn kind_fields(group: &str, kind: &str) -> &'static [&'static str] {
    match (group, kind) {
        ("", "Pod") => &[
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        ],
        ("", "Event") | ("events.k8s.io", "Event") => &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
            "regarding.kind",
            "regarding.name",
            "regarding.namespace",
            "regarding.uid",
        ],
        ("", "Secret") => &["type"],
        ("", "Node") => &["spec.unschedulable"],
        ("", "Namespace") => &["status.phase"],
        ("", "ReplicationController") | ("apps", "ReplicaSet") => &["status.replicas"],
        ("batch", "Job") => &["status.successful"],
        ("", "Service") => &["spec.clusterIP", "spec.type"],
        ("", "PersistentVolume") => &["name"],
        ("certificates.k8s.io", "CertificateSigningRequest") => &["spec.signerName"],
        _ => &[],
    }
}

pub fn supported_field(group: &str, kind: &str, field: &str) -> bool {
    field == "metadata.name"
        || field == "metadata.namespace"
        || kind_fields(group, kind).contains(&field)
}

/// The string value of a selectable field (empty when absent), like upstream's
/// per-kind `GetAttrs` functions.
pub fn field_value(obj: &Value, field: &str) -> String {
    if field == "source" {
        return obj
            .pointer("/source/component")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
    }
    if field == "name" {
        return field_value(obj, "metadata.name");
    }
    let pointer = format!("/{}", field.replace('.', "/"));
    match obj.pointer(&pointer) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Bool(b)) => b.to_string(),
        Some(Value::Number(n)) => n.to_string(),
        None | Some(Value::Null) => match field {
            "spec.unschedulable" | "spec.hostNetwork" => "false".into(),
            "status.replicas" | "status.successful" => "0".into(),
            _ => String::new(),
        },
        Some(other) => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(labels: Value) -> Value {
        json!({"metadata": {"labels": labels}})
    }

    #[test]
    fn label_selector_cases() {
        let o = obj(json!({"app": "web", "tier": "fe", "n": "5"}));
        let cases = [
            ("app=web", true),
            ("app==web", true),
            ("app!=web", false),
            ("app in (web,db)", true),
            ("app notin (web)", false),
            ("tier", true),
            ("!tier", false),
            ("!missing", true),
            ("app=web,tier=be", false),
            ("n>4", true),
            ("n<4", false),
            ("missing notin (x)", true),
            ("", true),
            ("app in ()", false),
        ];
        for (sel, want) in cases {
            let s = LabelSelector::parse(sel).unwrap_or_else(|e| panic!("{sel}: {e}"));
            assert_eq!(s.matches(&o), want, "{sel}");
        }
    }

    #[test]
    fn label_selector_errors() {
        for bad in [
            "app=",
            "=x",
            "app in web",
            "a b",
            "app=we b",
            "x,",
            "-a=b",
            "a=-b",
            "n>x",
        ] {
            if bad == "app=" {
                assert!(LabelSelector::parse(bad).is_ok());
                continue;
            }
            assert!(LabelSelector::parse(bad).is_err(), "{bad} should fail");
        }
    }

    #[test]
    fn field_selectors() {
        let pod = json!({"metadata": {"name": "p", "namespace": "d"}, "spec": {"nodeName": "n1"}, "status": {"phase": "Running"}});
        let f = FieldSelector::parse("spec.nodeName=n1,status.phase!=Failed", "", "Pod").unwrap();
        assert!(f.matches(&pod));
        let f = FieldSelector::parse("metadata.name==q", "", "Pod").unwrap();
        assert!(!f.matches(&pod));
        assert_eq!(
            FieldSelector::parse("spec.foo=x", "", "Pod").unwrap_err(),
            "field label not supported: spec.foo"
        );
        let ev = json!({"involvedObject": {"name": "p", "kind": "Pod"}});
        assert!(
            FieldSelector::parse("involvedObject.name=p,involvedObject.kind=Pod", "", "Event")
                .unwrap()
                .matches(&ev)
        );
    }

    #[test]
    fn from_json_selector() {
        let s = LabelSelector::from_json(&json!({"matchLabels": {"a": "b"}, "matchExpressions": [{"key": "c", "operator": "Exists"}]})).unwrap();
        assert!(s.matches(&obj(json!({"a": "b", "c": ""}))));
        assert!(!s.matches(&obj(json!({"a": "b"}))));
    }
}
