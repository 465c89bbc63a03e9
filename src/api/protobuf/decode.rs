//! Schema-driven conversion of one protobuf message into the JSON value the
//! upstream Go types would marshal to. Owns the emission rules (pointer,
//! `omitempty`, inline, Go struct order, sorted map keys) and the special
//! JSON forms (Time, MicroTime, Duration, Quantity, IntOrString, raw JSON,
//! JSON-schema unions). Must not panic or allocate in proportion to lengths
//! claimed by the input: every length is checked against the buffer, nesting
//! is capped at `MAX_DEPTH` and the number of produced values at a budget
//! proportional to the body size.

use std::collections::BTreeMap;

use base64::Engine;
use serde_json::{Map, Number, Value};

use super::ProtobufError;
use super::model::{Field, I, Kind, Message, O, P, R, Special};
use super::schema::{KINDS, MESSAGES};
use super::wire::{self, FIXED64, LEN, Reader, VARINT};

/// Deepest message nesting accepted (real objects stay below 20).
pub(super) const MAX_DEPTH: usize = 100;

/// `time.Time{}.Unix()`: the zero Go time, which metav1 times marshal as `null`.
const GO_ZERO_UNIX: i64 = -62_135_596_800;

/// Magic prefix of every Kubernetes protobuf body.
pub(super) const MAGIC: &[u8] = b"k8s\x00";

pub(super) fn message_by_index(idx: u16) -> Result<&'static Message, ProtobufError> {
    MESSAGES
        .get(usize::from(idx))
        .ok_or(ProtobufError::Schema(idx))
}

/// The message table index for a top-level (apiVersion, kind).
pub(super) fn kind_index(api_version: &str, kind: &str) -> Option<u16> {
    KINDS
        .iter()
        .find(|(av, k, _)| *k == kind && (*av == api_version || *av == "*"))
        .map(|(_, _, idx)| *idx)
}

/// What was read for one field before it is turned into JSON.
enum Slot<'a> {
    Absent,
    /// Last occurrence wins, as in Go.
    Scalar(Value),
    /// Repeated scalars.
    List(Vec<Value>),
    /// Every occurrence of a message or map field: merged for a singular
    /// message, one element each for a repeated one, one entry each for a map.
    Chunks(Vec<&'a [u8]>),
}

pub(super) struct Decoder {
    /// Values still allowed to be produced.
    budget: usize,
}

impl Decoder {
    pub fn new(body_len: usize) -> Self {
        Decoder {
            budget: body_len.saturating_mul(16).saturating_add(4096),
        }
    }

    #[cfg(test)]
    pub fn with_budget(budget: usize) -> Self {
        Decoder { budget }
    }

    fn spend(&mut self) -> Result<(), ProtobufError> {
        self.budget = self.budget.checked_sub(1).ok_or(ProtobufError::TooLarge)?;
        Ok(())
    }

    /// Decodes a `k8s\0` + runtime.Unknown envelope into a JSON object with
    /// `kind` and `apiVersion` first, as Go's TypeMeta puts them.
    pub fn envelope(
        &mut self,
        body: &[u8],
        expected: Option<(&str, &str)>,
        depth: usize,
    ) -> Result<Value, ProtobufError> {
        let rest = body.strip_prefix(MAGIC).ok_or(ProtobufError::BadMagic)?;
        let mut type_meta: Vec<&[u8]> = Vec::new();
        let mut raw: &[u8] = &[];
        let mut encoding = String::new();
        wire::for_each_field(&[rest], |tag, wire_type, r| match tag {
            1..=4 => {
                expect_wire("runtime.Unknown", tag, wire_type, LEN)?;
                let b = r.bytes()?;
                match tag {
                    1 => type_meta.push(b),
                    2 => raw = b,
                    3 => encoding = String::from_utf8_lossy(b).into_owned(),
                    _ => {}
                }
                Ok(())
            }
            _ => r.skip(wire_type),
        })?;
        if !encoding.is_empty() {
            return Err(ProtobufError::UnsupportedEncoding(encoding));
        }
        let mut api_version = String::new();
        let mut kind = String::new();
        wire::for_each_field(&type_meta, |tag, wire_type, r| match tag {
            1 | 2 => {
                expect_wire("runtime.TypeMeta", tag, wire_type, LEN)?;
                let s = String::from_utf8_lossy(r.bytes()?).into_owned();
                if tag == 1 {
                    api_version = s;
                } else {
                    kind = s;
                }
                Ok(())
            }
            _ => r.skip(wire_type),
        })?;
        if let Some((expected_api_version, expected_kind)) = expected {
            if api_version.is_empty() {
                api_version = expected_api_version.to_string();
            }
            if kind.is_empty() {
                kind = expected_kind.to_string();
            }
        }
        if kind.is_empty() || api_version.is_empty() {
            return Err(ProtobufError::MissingTypeMeta);
        }
        let idx = kind_index(&api_version, &kind).ok_or_else(|| ProtobufError::UnknownKind {
            api_version: api_version.clone(),
            kind: kind.clone(),
        })?;
        let object = self.message(idx, &[raw], depth + 1)?;
        let mut out = Map::new();
        out.insert("kind".to_string(), Value::String(kind));
        out.insert("apiVersion".to_string(), Value::String(api_version));
        if let Value::Object(fields) = object {
            for (k, v) in fields {
                out.insert(k, v);
            }
        }
        Ok(Value::Object(out))
    }

    /// Decodes message `idx` from its (merged) chunks. Recursion runs only
    /// through `message` → `object`/`special` → `message`, so each nesting
    /// level costs two small frames.
    pub fn message(
        &mut self,
        idx: u16,
        chunks: &[&[u8]],
        depth: usize,
    ) -> Result<Value, ProtobufError> {
        if depth > MAX_DEPTH {
            return Err(ProtobufError::TooDeep(MAX_DEPTH));
        }
        self.spend()?;
        let msg = message_by_index(idx)?;
        if msg.special == Special::None {
            self.object(msg, chunks, depth)
        } else {
            self.special(msg, chunks, depth)
        }
    }

    #[inline(never)]
    fn special(
        &mut self,
        msg: &'static Message,
        chunks: &[&[u8]],
        depth: usize,
    ) -> Result<Value, ProtobufError> {
        match msg.special {
            Special::None => self.object(msg, chunks, depth),
            Special::Time | Special::MicroTime => {
                let last = chunks.last().copied().unwrap_or_default();
                timestamp_json(msg, last, msg.special == Special::MicroTime)
            }
            Special::Duration => {
                let mut nanos = 0i64;
                wire::for_each_field(chunks, |tag, wire_type, r| {
                    if tag == 1 {
                        expect_wire(msg.name, tag, wire_type, VARINT)?;
                        nanos = r.varint()? as i64;
                        Ok(())
                    } else {
                        r.skip(wire_type)
                    }
                })?;
                Ok(Value::String(go_duration(nanos)))
            }
            Special::Quantity => {
                // Upstream replaces (does not merge) a repeated Quantity.
                let last = chunks.last().copied().unwrap_or_default();
                match last_bytes(msg, &[last], 1)? {
                    None => Ok(Value::String("0".to_string())),
                    Some([]) => Err(invalid(msg, "empty quantity")),
                    Some(s) => Ok(Value::String(lossy(s))),
                }
            }
            Special::IntOrString => int_or_string(msg, chunks),
            Special::RawExtension => match last_bytes(msg, chunks, 1)? {
                None => Ok(Value::Null),
                Some(raw) if raw.starts_with(MAGIC) => self.envelope(raw, None, depth),
                Some(raw) => serde_json::from_slice(raw)
                    .map_err(|e| invalid(msg, &format!("embedded object is not JSON: {e}"))),
            },
            Special::RawJson => match last_bytes(msg, chunks, 1)? {
                None | Some([]) => Ok(Value::Null),
                Some(raw) => {
                    serde_json::from_slice(raw).map_err(|e| invalid(msg, &format!("not JSON: {e}")))
                }
            },
            Special::StringList => {
                let mut items = Vec::new();
                wire::for_each_field(chunks, |tag, wire_type, r| {
                    if tag == 1 {
                        expect_wire(msg.name, tag, wire_type, LEN)?;
                        self.spend()?;
                        items.push(Value::String(lossy(r.bytes()?)));
                        Ok(())
                    } else {
                        r.skip(wire_type)
                    }
                })?;
                Ok(if items.is_empty() {
                    Value::Null
                } else {
                    Value::Array(items)
                })
            }
            Special::PropsOrArray | Special::PropsOrBool | Special::PropsOrStringArray => {
                self.schema_union(msg, chunks, depth)
            }
        }
    }

    /// apiextensions' JSONSchemaPropsOr{Array,Bool,StringArray}: marshalled as
    /// whichever alternative is set, like their Go MarshalJSON.
    fn schema_union(
        &mut self,
        msg: &'static Message,
        chunks: &[&[u8]],
        depth: usize,
    ) -> Result<Value, ProtobufError> {
        let mut slots = self.read_slots(msg, chunks)?;
        let (schema_tag, other_tag) = match msg.special {
            Special::PropsOrBool => (2, 1),
            _ => (1, 2),
        };
        let mut take = |tag: u32| -> Slot {
            msg.field_index(tag)
                .and_then(|i| slots.get_mut(i))
                .map_or(Slot::Absent, |s| std::mem::replace(s, Slot::Absent))
        };
        let schema = take(schema_tag);
        let other = take(other_tag);
        // Every alternative that is a schema is a JSONSchemaProps.
        let Some(props) = msg.fields.iter().find_map(|f| match f.kind {
            Kind::Message(m) => Some(m),
            _ => None,
        }) else {
            return Ok(Value::Null);
        };
        let schema_value = match schema {
            Slot::Chunks(c) => Some(self.message(props, &c, depth + 1)?),
            _ => None,
        };
        Ok(match (msg.special, other) {
            (Special::PropsOrBool, other) => schema_value.unwrap_or(match other {
                Slot::Scalar(v) => v,
                _ => Value::Bool(false),
            }),
            (Special::PropsOrArray, Slot::Chunks(elems)) if !elems.is_empty() => {
                let mut items = Vec::with_capacity(elems.len());
                for e in elems {
                    items.push(self.message(props, &[e], depth + 1)?);
                }
                Value::Array(items)
            }
            (_, Slot::List(items)) if !items.is_empty() => Value::Array(items),
            _ => schema_value.unwrap_or(Value::Null),
        })
    }

    /// Reads every field of a message without decoding nested messages.
    fn read_slots<'a>(
        &mut self,
        msg: &'static Message,
        chunks: &[&'a [u8]],
    ) -> Result<Vec<Slot<'a>>, ProtobufError> {
        let mut slots: Vec<Slot<'a>> = msg.fields.iter().map(|_| Slot::Absent).collect();
        wire::for_each_field(chunks, |tag, wire_type, r| {
            let found = msg.field_index(tag);
            match found.and_then(|i| Some((msg.fields.get(i)?, slots.get_mut(i)?))) {
                Some((field, slot)) => self.read_field(msg, field, slot, wire_type, r),
                // Unknown fields are skipped, as upstream does.
                None => r.skip(wire_type),
            }
        })?;
        Ok(slots)
    }

    fn object(
        &mut self,
        msg: &'static Message,
        chunks: &[&[u8]],
        depth: usize,
    ) -> Result<Value, ProtobufError> {
        let slots = self.read_slots(msg, chunks)?;
        let mut out = Map::new();
        for (field, slot) in msg.fields.iter().zip(slots) {
            let value = match slot {
                Slot::Absent => self.absent(field.kind, field.flags, depth)?,
                Slot::Scalar(v) => {
                    // A present zero is dropped only where Go would drop it:
                    // a non-pointer `omitempty` field.
                    if field.has(O) && !field.has(P) && is_zero(&v) {
                        None
                    } else {
                        Some(v)
                    }
                }
                Slot::List(items) => Some(Value::Array(items)),
                Slot::Chunks(c) => match field.kind {
                    Kind::Message(m) if field.has(R) => {
                        let mut items = Vec::with_capacity(c.len());
                        for e in c {
                            items.push(self.message(m, &[e], depth + 1)?);
                        }
                        Some(Value::Array(items))
                    }
                    Kind::Message(m) => Some(self.message(m, &c, depth + 1)?),
                    Kind::MapString | Kind::MapBytes | Kind::MapMessage(_) => {
                        // Go's encoding/json writes map keys sorted.
                        let mut entries = BTreeMap::new();
                        for e in c {
                            let (key, raw) = split_entry(msg, e)?;
                            let value = match field.kind {
                                Kind::MapMessage(m) => {
                                    self.message(m, raw.as_slice(), depth + 1)?
                                }
                                Kind::MapBytes => {
                                    Value::String(base64_std(raw.unwrap_or_default()))
                                }
                                _ => Value::String(lossy(raw.unwrap_or_default())),
                            };
                            entries.insert(key, value);
                        }
                        Some(Value::Object(entries.into_iter().collect()))
                    }
                    _ => None,
                },
            };
            let Some(value) = value else { continue };
            if field.has(I) {
                if let Value::Object(inner) = value {
                    for (k, v) in inner {
                        out.entry(k).or_insert(v);
                    }
                }
            } else {
                out.insert(field.json.to_string(), value);
            }
        }
        Ok(Value::Object(out))
    }

    /// The JSON Go writes for a field that was not on the wire (its Go zero
    /// value), or `None` when Go omits it.
    fn absent(
        &mut self,
        kind: Kind,
        flags: u8,
        depth: usize,
    ) -> Result<Option<Value>, ProtobufError> {
        let omitempty = flags & O != 0;
        let nil_able = flags & (R | P) != 0
            || matches!(
                kind,
                Kind::Bytes | Kind::MapString | Kind::MapBytes | Kind::MapMessage(_)
            );
        if nil_able {
            return Ok(if omitempty { None } else { Some(Value::Null) });
        }
        Ok(match kind {
            // A non-pointer struct is never omitted by encoding/json.
            Kind::Message(m) => Some(self.message(m, &[], depth + 1)?),
            _ if omitempty => None,
            Kind::String => Some(Value::String(String::new())),
            Kind::Bool => Some(Value::Bool(false)),
            _ => Some(Value::from(0)),
        })
    }

    /// Reads one occurrence of a field. Nested messages and map entries are
    /// only collected here; `object` decodes them.
    fn read_field<'a>(
        &mut self,
        msg: &'static Message,
        field: &'static Field,
        slot: &mut Slot<'a>,
        wire_type: u8,
        r: &mut Reader<'a>,
    ) -> Result<(), ProtobufError> {
        let repeated = field.has(R);
        let expect = |want: u8| expect_wire_field(msg, field.json, field.tag, wire_type, want);
        self.spend()?;
        match field.kind {
            Kind::Message(_) | Kind::MapString | Kind::MapBytes | Kind::MapMessage(_) => {
                expect(LEN)?;
                let b = r.bytes()?;
                match slot {
                    Slot::Chunks(c) => c.push(b),
                    _ => *slot = Slot::Chunks(vec![b]),
                }
            }
            Kind::String => {
                expect(LEN)?;
                let v = Value::String(lossy(r.bytes()?));
                set_or_push(slot, v, repeated);
            }
            Kind::Bytes => {
                expect(LEN)?;
                let v = Value::String(base64_std(r.bytes()?));
                set_or_push(slot, v, repeated);
            }
            Kind::Bool | Kind::Int32 | Kind::Int64 | Kind::Double => {
                let single = if field.kind == Kind::Double {
                    FIXED64
                } else {
                    VARINT
                };
                if repeated && wire_type == LEN {
                    // Packed repeated scalars.
                    let mut packed = Reader::new(r.bytes()?);
                    while !packed.done() {
                        self.spend()?;
                        let v = scalar(msg, field.kind, &mut packed)?;
                        push(slot, v);
                    }
                } else {
                    expect(single)?;
                    let v = scalar(msg, field.kind, r)?;
                    set_or_push(slot, v, repeated);
                }
            }
        }
        Ok(())
    }
}

/// One `map<string, V>` entry: key is field 1, value field 2; a missing key
/// or value takes its zero value, as in Go.
fn split_entry<'a>(
    msg: &'static Message,
    entry: &'a [u8],
) -> Result<(String, Option<&'a [u8]>), ProtobufError> {
    let mut key = String::new();
    let mut value = None;
    wire::for_each_field(&[entry], |tag, wire_type, r| match tag {
        1 | 2 => {
            expect_wire(msg.name, tag, wire_type, LEN)?;
            let b = r.bytes()?;
            if tag == 1 {
                key = lossy(b);
            } else {
                value = Some(b);
            }
            Ok(())
        }
        _ => r.skip(wire_type),
    })?;
    Ok((key, value))
}

fn base64_std(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn push(slot: &mut Slot<'_>, v: Value) {
    match slot {
        Slot::List(items) => items.push(v),
        _ => *slot = Slot::List(vec![v]),
    }
}

fn set_or_push(slot: &mut Slot<'_>, v: Value, repeated: bool) {
    if repeated {
        push(slot, v);
    } else {
        *slot = Slot::Scalar(v);
    }
}

fn is_zero(v: &Value) -> bool {
    match v {
        Value::String(s) => s.is_empty(),
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::Null => true,
        _ => false,
    }
}

fn invalid(msg: &Message, reason: &str) -> ProtobufError {
    ProtobufError::InvalidValue {
        message: msg.name,
        reason: reason.to_string(),
    }
}

fn expect_wire(message: &'static str, tag: u32, got: u8, want: u8) -> Result<(), ProtobufError> {
    if got == want {
        Ok(())
    } else {
        Err(ProtobufError::WireType {
            message,
            field: String::new(),
            tag,
            got,
            want,
        })
    }
}

fn expect_wire_field(
    msg: &Message,
    field: &str,
    tag: u32,
    got: u8,
    want: u8,
) -> Result<(), ProtobufError> {
    if got == want {
        Ok(())
    } else {
        Err(ProtobufError::WireType {
            message: msg.name,
            field: field.to_string(),
            tag,
            got,
            want,
        })
    }
}

fn scalar(msg: &Message, kind: Kind, r: &mut Reader<'_>) -> Result<Value, ProtobufError> {
    Ok(match kind {
        Kind::Bool => Value::Bool(r.varint()? != 0),
        // int32 keeps the low 32 bits, like every protobuf decoder.
        Kind::Int32 => Value::from(r.varint()? as u32 as i32),
        Kind::Int64 => Value::from(r.varint()? as i64),
        Kind::Double => double(msg, f64::from_bits(r.fixed64()?))?,
        _ => Value::Null,
    })
}

/// Go's encoding/json writes integral floats without a fraction.
fn double(msg: &Message, v: f64) -> Result<Value, ProtobufError> {
    if !v.is_finite() {
        return Err(invalid(msg, "NaN or infinite number"));
    }
    if v.fract() == 0.0 && v.abs() < 1e15 {
        return Ok(Value::from(v as i64));
    }
    Number::from_f64(v)
        .map(Value::Number)
        .ok_or_else(|| invalid(msg, "unrepresentable number"))
}

/// Field `tag` (bytes) of the last chunk that has it.
fn last_bytes<'a>(
    msg: &'static Message,
    chunks: &[&'a [u8]],
    want: u32,
) -> Result<Option<&'a [u8]>, ProtobufError> {
    let mut out = None;
    wire::for_each_field(chunks, |tag, wire_type, r| {
        if tag == want {
            expect_wire(msg.name, tag, wire_type, LEN)?;
            out = Some(r.bytes()?);
            Ok(())
        } else {
            r.skip(wire_type)
        }
    })?;
    Ok(out)
}

fn int_or_string(msg: &'static Message, chunks: &[&[u8]]) -> Result<Value, ProtobufError> {
    let mut kind = 0i64;
    let mut int_val = 0i32;
    let mut str_val = String::new();
    wire::for_each_field(chunks, |tag, wire_type, r| match tag {
        1 | 2 => {
            expect_wire(msg.name, tag, wire_type, VARINT)?;
            let v = r.varint()?;
            if tag == 1 {
                kind = v as i64;
            } else {
                int_val = v as u32 as i32;
            }
            Ok(())
        }
        3 => {
            expect_wire(msg.name, tag, wire_type, LEN)?;
            str_val = lossy(r.bytes()?);
            Ok(())
        }
        _ => r.skip(wire_type),
    })?;
    match kind {
        0 => Ok(Value::from(int_val)),
        1 => Ok(Value::String(str_val)),
        other => Err(invalid(msg, &format!("IntOrString type {other}"))),
    }
}

/// meta/v1 Time (seconds only, as upstream drops nanoseconds on decode) or
/// MicroTime (microseconds), `null` for the zero time.
fn timestamp_json(msg: &Message, chunk: &[u8], micro: bool) -> Result<Value, ProtobufError> {
    let mut seconds = 0i64;
    let mut nanos = 0i32;
    if chunk.is_empty() {
        return Ok(Value::Null);
    }
    wire::for_each_field(&[chunk], |tag, wire_type, r| match tag {
        1 | 2 => {
            expect_wire(msg.name, tag, wire_type, VARINT)?;
            let v = r.varint()?;
            if tag == 1 {
                seconds = v as i64;
            } else {
                nanos = v as u32 as i32;
            }
            Ok(())
        }
        _ => r.skip(wire_type),
    })?;
    let total = i128::from(seconds) * 1_000_000_000 + if micro { i128::from(nanos) } else { 0 };
    let secs = i64::try_from(total.div_euclid(1_000_000_000))
        .map_err(|_| invalid(msg, "time out of range"))?;
    // In [0, 1e9): fits.
    let sub = total.rem_euclid(1_000_000_000) as u32;
    if secs == GO_ZERO_UNIX && sub == 0 {
        return Ok(Value::Null);
    }
    let t = chrono::DateTime::from_timestamp(secs, sub)
        .ok_or_else(|| invalid(msg, "time out of range"))?;
    let year = chrono::Datelike::year(&t);
    if !(0..=9999).contains(&year) {
        return Err(invalid(msg, "year outside [0, 9999]"));
    }
    let base = t.format("%Y-%m-%dT%H:%M:%S");
    Ok(Value::String(if micro {
        format!("{base}.{:06}Z", sub / 1000)
    } else {
        format!("{base}Z")
    }))
}

/// Go's `time.Duration.String()`: `1h2m3.5s`, `1.5ms`, `0s`.
pub(super) fn go_duration(nanos: i64) -> String {
    let neg = nanos < 0;
    let mut u = nanos.unsigned_abs();
    // Built back to front, like the Go implementation.
    let mut rev: Vec<u8> = Vec::with_capacity(32);
    fn frac(rev: &mut Vec<u8>, v: u64, prec: u32) -> u64 {
        let mut v = v;
        let mut print = false;
        for _ in 0..prec {
            let digit = (v % 10) as u8;
            print = print || digit != 0;
            if print {
                rev.push(b'0' + digit);
            }
            v /= 10;
        }
        if print {
            rev.push(b'.');
        }
        v
    }
    fn int(rev: &mut Vec<u8>, v: u64) {
        let mut v = v;
        loop {
            rev.push(b'0' + (v % 10) as u8);
            v /= 10;
            if v == 0 {
                break;
            }
        }
    }
    if u < 1_000_000_000 {
        if u == 0 {
            return "0s".to_string();
        }
        rev.push(b's');
        let prec = if u < 1_000 {
            rev.push(b'n');
            0
        } else if u < 1_000_000 {
            // "µ" (U+00B5) reversed as UTF-8 bytes.
            rev.extend_from_slice(&[0xb5, 0xc2]);
            3
        } else {
            rev.push(b'm');
            6
        };
        u = frac(&mut rev, u, prec);
        int(&mut rev, u);
    } else {
        rev.push(b's');
        u = frac(&mut rev, u, 9);
        int(&mut rev, u % 60);
        u /= 60;
        if u > 0 {
            rev.push(b'm');
            int(&mut rev, u % 60);
            u /= 60;
            if u > 0 {
                rev.push(b'h');
                int(&mut rev, u);
            }
        }
    }
    if neg {
        rev.push(b'-');
    }
    rev.reverse();
    String::from_utf8_lossy(&rev).into_owned()
}
