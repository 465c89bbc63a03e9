//! The shape of the generated message table (`schema.rs`): what one protobuf
//! message and one of its fields look like to the decoder. Data only; the
//! decoding rules that read it live in `decode`.

/// The field is `repeated` on the wire and a JSON array.
pub(super) const R: u8 = 1;
/// The Go field is a pointer: present on the wire exactly when set, so a zero
/// value that is present is kept.
pub(super) const P: u8 = 2;
/// The Go JSON tag has `omitempty`.
pub(super) const O: u8 = 4;
/// The Go JSON tag has `inline`: the message's fields join the parent object.
pub(super) const I: u8 = 8;

/// Wire kind of a field; map keys are always strings in Kubernetes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    String,
    Bytes,
    Bool,
    Int32,
    Int64,
    Double,
    /// Index into `schema::MESSAGES`.
    Message(u16),
    MapString,
    MapBytes,
    MapMessage(u16),
}

/// Messages whose JSON form is not an object of their fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Special {
    None,
    /// meta/v1 Time: RFC 3339 seconds, `null` when zero.
    Time,
    /// meta/v1 MicroTime: RFC 3339 with 6 fractional digits, `null` when zero.
    MicroTime,
    /// meta/v1 Duration: Go `time.Duration.String()`. No kind in the table
    /// has one today; kept so a regenerated table that does still decodes.
    #[allow(dead_code)]
    Duration,
    /// resource.Quantity: its string.
    Quantity,
    /// intstr.IntOrString: a number or a string.
    IntOrString,
    /// runtime.RawExtension: the embedded JSON (or embedded protobuf object).
    RawExtension,
    /// meta/v1 FieldsV1, apiextensions JSON: raw JSON bytes in field 1.
    RawJson,
    /// A named `[]string` (authentication ExtraValue): field 1 as a bare array.
    StringList,
    /// apiextensions JSONSchemaPropsOrArray.
    PropsOrArray,
    /// apiextensions JSONSchemaPropsOrBool.
    PropsOrBool,
    /// apiextensions JSONSchemaPropsOrStringArray.
    PropsOrStringArray,
}

#[derive(Debug)]
pub(super) struct Field {
    pub tag: u32,
    /// Upstream JSON name; empty for inlined fields.
    pub json: &'static str,
    pub kind: Kind,
    pub flags: u8,
}

impl Field {
    pub const fn new(tag: u32, json: &'static str, kind: Kind, flags: u8) -> Self {
        Field {
            tag,
            json,
            kind,
            flags,
        }
    }

    pub fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }
}

#[derive(Debug)]
pub(super) struct Message {
    /// Full protobuf name, e.g. `k8s.io.api.core.v1.ConfigMap`.
    pub name: &'static str,
    pub special: Special,
    /// In Go struct order, which is the order JSON objects are written in.
    pub fields: &'static [Field],
}

impl Message {
    pub const fn new(name: &'static str, special: Special, fields: &'static [Field]) -> Self {
        Message {
            name,
            special,
            fields,
        }
    }

    pub fn field_index(&self, tag: u32) -> Option<usize> {
        self.fields.iter().position(|f| f.tag == tag)
    }
}
