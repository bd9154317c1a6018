//! A minimal Go `encoding/gob` codec: enough for DMSG stream objects, and strict about bounds.
//!
//! # Format (what we read)
//! ```text
//! stream  = message*
//! message = uint(len) ‖ int(type_id) ‖ body[len − size(type_id)]
//!           type_id < 0: body is a wireType defining type −type_id
//!           type_id > 0: body is a value of that type
//! uint    = b < 0x80 ? b : (−n as u8) ‖ n big-endian bytes (n ≤ 8)
//! int     = zigzag: u = i ≥ 0 ? i << 1 : (!i << 1) | 1
//! struct  = (uint(field delta) ‖ value)* ‖ 0x00       (zero fields omitted)
//! ```
//! Type ids ≥ 65 are chosen per Go process, so the decoder reads the definitions in the stream
//! and resolves fields **by name**; it never assumes ids. The encoder takes a starting id so it
//! can reproduce either form seen from Go (65/66/67 or 68/69).
//!
//! Bounds: at most [`MAX_TYPES`] definitions, [`MAX_DEPTH`] levels of nesting, and every
//! length is checked against the remaining input before allocating.
//!
//! Based on Go 1.19 `encoding/gob` (doc.go, decode.go, type.go) and the annotated dumps in
//! stream_objects.json.

use crate::error::GobError;

/// Largest number of type definitions accepted in one stream (a DMSG object has 2 or 3).
pub const MAX_TYPES: usize = 16;
/// Deepest value nesting accepted (StreamRequest → Addr → PubKey is 3).
pub const MAX_DEPTH: usize = 8;
/// Largest gob stream [`decode`] accepts (64 KiB; a DMSG object is at most one 4070-byte
/// record). Also bounds every allocation the decoder makes.
pub const MAX_INPUT: usize = 64 * 1024;
/// First id Go gives to user types.
pub const FIRST_USER_ID: i64 = 65;

/// Built-in type ids.
pub mod id {
    /// bool
    pub const BOOL: i64 = 1;
    /// int (all signed widths)
    pub const INT: i64 = 2;
    /// uint (all unsigned widths)
    pub const UINT: i64 = 3;
    /// float
    pub const FLOAT: i64 = 4;
    /// []byte
    pub const BYTES: i64 = 5;
    /// string
    pub const STRING: i64 = 6;
}

// ---------------------------------------------------------------------------------------------
// primitives

/// Reads gob primitives from a slice.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    /// A reader over `buf`.
    pub fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf }
    }

    /// Bytes left.
    pub fn remaining(&self) -> usize {
        self.buf.len()
    }

    /// Reads `n` raw bytes.
    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], GobError> {
        if n > self.buf.len() {
            return Err(GobError::Eof);
        }
        let (a, b) = self.buf.split_at(n);
        self.buf = b;
        Ok(a)
    }

    /// Reads a gob unsigned integer.
    pub fn uint(&mut self) -> Result<u64, GobError> {
        let b = *self.buf.first().ok_or(GobError::Eof)?;
        self.buf = &self.buf[1..];
        if b < 0x80 {
            return Ok(u64::from(b));
        }
        let n = usize::from(b.wrapping_neg());
        if n == 0 || n > 8 {
            return Err(GobError::BadInt);
        }
        let raw = self.bytes(n)?;
        Ok(raw.iter().fold(0u64, |acc, &x| (acc << 8) | u64::from(x)))
    }

    /// Reads a gob signed integer.
    pub fn int(&mut self) -> Result<i64, GobError> {
        let u = self.uint()?;
        Ok(if u & 1 == 1 {
            !((u >> 1) as i64)
        } else {
            (u >> 1) as i64
        })
    }

    /// Reads a length and checks it against the remaining input (each unit needs ≥ 1 byte).
    pub fn read_len(&mut self) -> Result<usize, GobError> {
        let n = self.uint()?;
        if n > self.buf.len() as u64 {
            return Err(GobError::Eof);
        }
        Ok(n as usize)
    }

    /// Reads `uint(len) ‖ bytes`.
    pub fn byte_slice(&mut self) -> Result<&'a [u8], GobError> {
        let n = self.read_len()?;
        self.bytes(n)
    }
}

/// Appends a gob unsigned integer.
pub fn put_uint(out: &mut Vec<u8>, v: u64) {
    if v < 0x80 {
        out.push(v as u8);
        return;
    }
    let be = v.to_be_bytes();
    let skip = (v.leading_zeros() / 8) as usize;
    let n = 8 - skip;
    out.push((n as u8).wrapping_neg());
    out.extend_from_slice(&be[skip..]);
}

/// Appends a gob signed integer.
pub fn put_int(out: &mut Vec<u8>, v: i64) {
    let u = if v < 0 {
        ((!v as u64) << 1) | 1
    } else {
        (v as u64) << 1
    };
    put_uint(out, u);
}

/// Appends `uint(len) ‖ bytes`.
pub fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_uint(out, b.len() as u64);
    out.extend_from_slice(b);
}

// ---------------------------------------------------------------------------------------------
// types

/// A decoded type definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WireType {
    /// Struct with named fields.
    Struct {
        /// Go type name.
        name: String,
        /// (field name, type id) in order.
        fields: Vec<(String, i64)>,
    },
    /// Fixed-length array.
    Array {
        /// Go type name.
        name: String,
        /// Element type id.
        elem: i64,
        /// Length.
        len: u64,
    },
    /// Slice (other than []byte, which is built in).
    Slice {
        /// Go type name.
        name: String,
        /// Element type id.
        elem: i64,
    },
    /// A type with `MarshalBinary`/`GobEncode`/`MarshalText`: its value is a byte string.
    Opaque {
        /// Go type name.
        name: String,
    },
}

impl WireType {
    /// The Go type name.
    pub fn name(&self) -> &str {
        match self {
            WireType::Struct { name, .. }
            | WireType::Array { name, .. }
            | WireType::Slice { name, .. }
            | WireType::Opaque { name } => name,
        }
    }
}

/// A decoded value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// bool
    Bool(bool),
    /// any signed integer
    Int(i64),
    /// any unsigned integer
    Uint(u64),
    /// float64 bits
    Float(u64),
    /// []byte
    Bytes(Vec<u8>),
    /// string
    String(String),
    /// Marshaler output
    Opaque(Vec<u8>),
    /// array or slice
    List(Vec<Value>),
    /// struct: only the fields present on the wire, by name
    Struct(Vec<(String, Value)>),
}

impl Value {
    /// A struct field by name.
    pub fn field(&self, name: &str) -> Option<&Value> {
        match self {
            Value::Struct(f) => f.iter().find(|(n, _)| n == name).map(|(_, v)| v),
            _ => None,
        }
    }
}

/// A decoded top-level value with its Go type name.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    /// Go type name of the value (e.g. `StreamRequest`).
    pub type_name: String,
    /// The value.
    pub value: Value,
}

fn read_common(r: &mut Reader<'_>) -> Result<(String, i64), GobError> {
    // CommonType { Name string; Id typeId }
    let mut name = String::new();
    let mut idv = 0i64;
    let mut field = -1i64;
    loop {
        let d = r.uint()?;
        if d == 0 {
            break;
        }
        field += d as i64;
        match field {
            0 => name = String::from_utf8(r.byte_slice()?.to_vec()).map_err(|_| GobError::Utf8)?,
            1 => idv = r.int()?,
            _ => return Err(GobError::BadDefinition),
        }
    }
    Ok((name, idv))
}

/// Reads a struct whose fields are `CommonType` (0) followed by `extra` ints/other (1..):
/// `handler(field_index, reader)` handles fields ≥ 1.
fn read_def_struct(
    r: &mut Reader<'_>,
    mut handler: impl FnMut(i64, &mut Reader<'_>) -> Result<(), GobError>,
) -> Result<(String, i64), GobError> {
    let mut common = (String::new(), 0);
    let mut field = -1i64;
    loop {
        let d = r.uint()?;
        if d == 0 {
            break;
        }
        if d > 16 {
            return Err(GobError::BadDefinition);
        }
        field += d as i64;
        if field == 0 {
            common = read_common(r)?;
        } else {
            handler(field, r)?;
        }
    }
    Ok(common)
}

fn read_wire_type(r: &mut Reader<'_>) -> Result<(WireType, i64), GobError> {
    // wireType { ArrayT 1; SliceT 2; StructT 3; MapT 4; GobEncoderT 5; BinaryMarshalerT 6;
    //            TextMarshalerT 7 } — exactly one is set.
    let d = r.uint()?;
    let (wt, own_id) = match d {
        1 => {
            let mut elem = 0;
            let mut len = 0i64;
            let (name, idv) = read_def_struct(r, |f, r| {
                match f {
                    1 => elem = r.int()?,
                    2 => len = r.int()?,
                    _ => return Err(GobError::BadDefinition),
                }
                Ok(())
            })?;
            if len < 0 {
                return Err(GobError::BadDefinition);
            }
            (
                WireType::Array {
                    name,
                    elem,
                    len: len as u64,
                },
                idv,
            )
        }
        2 => {
            let mut elem = 0;
            let (name, idv) = read_def_struct(r, |f, r| {
                match f {
                    1 => elem = r.int()?,
                    _ => return Err(GobError::BadDefinition),
                }
                Ok(())
            })?;
            (WireType::Slice { name, elem }, idv)
        }
        3 => {
            let mut fields = Vec::new();
            let (name, idv) = read_def_struct(r, |f, r| {
                if f != 1 {
                    return Err(GobError::BadDefinition);
                }
                let n = r.read_len()?;
                for _ in 0..n {
                    // fieldType { Name string; Id typeId }
                    let (fname, fid) = read_common(r)?;
                    fields.push((fname, fid));
                }
                Ok(())
            })?;
            (WireType::Struct { name, fields }, idv)
        }
        5..=7 => {
            let (name, idv) = read_def_struct(r, |_, _| Err(GobError::BadDefinition))?;
            (WireType::Opaque { name }, idv)
        }
        4 => return Err(GobError::Unsupported),
        _ => return Err(GobError::BadDefinition),
    };
    if r.uint()? != 0 {
        return Err(GobError::BadDefinition);
    }
    Ok((wt, own_id))
}

struct Types {
    defs: Vec<(i64, WireType)>,
}

impl Types {
    fn get(&self, t: i64) -> Result<&WireType, GobError> {
        self.defs
            .iter()
            .find(|(i, _)| *i == t)
            .map(|(_, w)| w)
            .ok_or(GobError::UndefinedType(t))
    }

    fn read_value(&self, r: &mut Reader<'_>, t: i64, depth: usize) -> Result<Value, GobError> {
        if depth > MAX_DEPTH {
            return Err(GobError::TooDeep);
        }
        Ok(match t {
            id::BOOL => match r.uint()? {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                _ => return Err(GobError::BadInt),
            },
            id::INT => Value::Int(r.int()?),
            id::UINT => Value::Uint(r.uint()?),
            id::FLOAT => Value::Float(r.uint()?),
            id::BYTES => Value::Bytes(r.byte_slice()?.to_vec()),
            id::STRING => Value::String(
                String::from_utf8(r.byte_slice()?.to_vec()).map_err(|_| GobError::Utf8)?,
            ),
            _ => match self.get(t)? {
                WireType::Opaque { .. } => Value::Opaque(r.byte_slice()?.to_vec()),
                WireType::Array { elem, len, .. } => {
                    let n = r.read_len()?;
                    if n as u64 != *len {
                        return Err(GobError::ArrayLength);
                    }
                    let mut v = Vec::with_capacity(n.min(64));
                    for _ in 0..n {
                        v.push(self.read_value(r, *elem, depth + 1)?);
                    }
                    Value::List(v)
                }
                WireType::Slice { elem, .. } => {
                    let n = r.read_len()?;
                    let mut v = Vec::with_capacity(n.min(64));
                    for _ in 0..n {
                        v.push(self.read_value(r, *elem, depth + 1)?);
                    }
                    Value::List(v)
                }
                WireType::Struct { fields, .. } => {
                    let mut out = Vec::new();
                    let mut idx = -1i64;
                    loop {
                        let d = r.uint()?;
                        if d == 0 {
                            break;
                        }
                        idx = idx
                            .checked_add(i64::try_from(d).map_err(|_| GobError::BadField)?)
                            .ok_or(GobError::BadField)?;
                        let (name, ft) = usize::try_from(idx)
                            .ok()
                            .and_then(|i| fields.get(i))
                            .ok_or(GobError::BadField)?;
                        let v = self.read_value(r, *ft, depth + 1)?;
                        out.push((name.clone(), v));
                    }
                    Value::Struct(out)
                }
            },
        })
    }
}

/// Decodes one gob stream holding type definitions and exactly one value, as a DMSG signed
/// object carries. Trailing bytes after the value are refused.
pub fn decode(buf: &[u8]) -> Result<Decoded, GobError> {
    if buf.len() > MAX_INPUT {
        return Err(GobError::BadLength);
    }
    let mut r = Reader::new(buf);
    let mut types = Types { defs: Vec::new() };
    loop {
        let len = r.read_len()?;
        if len == 0 {
            return Err(GobError::BadLength);
        }
        let msg = r.bytes(len)?;
        let mut m = Reader::new(msg);
        let t = m.int()?;
        if t < 0 {
            let t = t.checked_neg().ok_or(GobError::BadTypeId(t))?;
            if t < FIRST_USER_ID || types.defs.iter().any(|(i, _)| *i == t) {
                return Err(GobError::BadTypeId(t));
            }
            if types.defs.len() >= MAX_TYPES {
                return Err(GobError::TooManyTypes);
            }
            let (wt, own) = read_wire_type(&mut m)?;
            if own != t || m.remaining() != 0 {
                return Err(GobError::BadDefinition);
            }
            types.defs.push((t, wt));
            continue;
        }
        if t == 0 {
            return Err(GobError::BadTypeId(t));
        }
        let type_name = match t {
            id::BOOL..=id::STRING => {
                // a top-level non-struct value is preceded by a zero "singleton" delta
                if m.uint()? != 0 {
                    return Err(GobError::BadField);
                }
                String::new()
            }
            _ => {
                let wt = types.get(t)?;
                if !matches!(wt, WireType::Struct { .. }) && m.uint()? != 0 {
                    return Err(GobError::BadField);
                }
                wt.name().to_string()
            }
        };
        let value = types.read_value(&mut m, t, 0)?;
        if m.remaining() != 0 {
            return Err(GobError::BadLength);
        }
        if r.remaining() != 0 {
            return Err(GobError::Trailing);
        }
        return Ok(Decoded { type_name, value });
    }
}

/// Builds one gob message (`uint(len) ‖ int(id) ‖ body`).
pub fn put_message(out: &mut Vec<u8>, type_id: i64, body: &[u8]) {
    let mut head = Vec::with_capacity(10);
    put_int(&mut head, type_id);
    put_uint(out, (head.len() + body.len()) as u64);
    out.extend_from_slice(&head);
    out.extend_from_slice(body);
}

fn put_common(out: &mut Vec<u8>, name: &str, type_id: i64) {
    out.push(1); // field 0: CommonType
    out.push(1); // Name
    put_bytes(out, name.as_bytes());
    out.push(1); // Id
    put_int(out, type_id);
    out.push(0);
}

/// Appends the definition of a struct type.
pub fn define_struct(out: &mut Vec<u8>, type_id: i64, name: &str, fields: &[(&str, i64)]) {
    let mut b = vec![3u8]; // StructT
    put_common(&mut b, name, type_id);
    b.push(1); // Field []fieldType
    put_uint(&mut b, fields.len() as u64);
    for (fname, fid) in fields {
        b.push(1);
        put_bytes(&mut b, fname.as_bytes());
        b.push(1);
        put_int(&mut b, *fid);
        b.push(0);
    }
    b.push(0); // end structType
    b.push(0); // end wireType
    put_message(out, -type_id, &b);
}

/// Appends the definition of a fixed-length array type.
pub fn define_array(out: &mut Vec<u8>, type_id: i64, name: &str, elem: i64, len: i64) {
    let mut b = vec![1u8]; // ArrayT
    put_common(&mut b, name, type_id);
    b.push(1);
    put_int(&mut b, elem);
    b.push(1);
    put_int(&mut b, len);
    b.push(0);
    b.push(0);
    put_message(out, -type_id, &b);
}

/// Appends the definition of a `BinaryMarshaler` type.
pub fn define_binary_marshaler(out: &mut Vec<u8>, type_id: i64, name: &str) {
    let mut b = vec![6u8]; // BinaryMarshalerT
    put_common(&mut b, name, type_id);
    b.push(0);
    b.push(0);
    put_message(out, -type_id, &b);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uint_forms() {
        for (v, hex) in [
            (0u64, "00"),
            (0x7f, "7f"),
            (0x80, "ff80"),
            (49153, "fec001"),
            (u64::MAX, "f8ffffffffffffffff"),
        ] {
            let mut out = Vec::new();
            put_uint(&mut out, v);
            assert_eq!(hex::encode(&out), hex);
            assert_eq!(Reader::new(&out).uint().unwrap(), v);
        }
        assert_eq!(Reader::new(&[0xf7]).uint(), Err(GobError::BadInt));
        assert_eq!(Reader::new(&[0xfe, 1]).uint(), Err(GobError::Eof));
    }

    #[test]
    fn bounds() {
        assert_eq!(decode(&vec![0u8; MAX_INPUT + 1]), Err(GobError::BadLength));
        // a self-referencing struct nests until MAX_DEPTH
        let mut out = Vec::new();
        define_struct(&mut out, 65, "A", &[("X", 65)]);
        let mut body = vec![1u8; 20];
        body.extend_from_slice(&[0u8; 21]);
        put_message(&mut out, 65, &body);
        assert_eq!(decode(&out), Err(GobError::TooDeep));
        // a value of an undefined type
        let mut out = Vec::new();
        put_message(&mut out, 70, &[0]);
        assert_eq!(decode(&out), Err(GobError::UndefinedType(70)));
        // duplicate definition
        let mut out = Vec::new();
        define_struct(&mut out, 65, "A", &[]);
        define_struct(&mut out, 65, "A", &[]);
        assert_eq!(decode(&out), Err(GobError::BadTypeId(65)));
        // trailing bytes after the value
        let mut out = Vec::new();
        define_struct(&mut out, 65, "A", &[("N", id::UINT)]);
        put_message(&mut out, 65, &[1, 5, 0]);
        let ok = decode(&out).unwrap();
        assert_eq!(ok.value.field("N"), Some(&Value::Uint(5)));
        out.push(0);
        assert_eq!(decode(&out), Err(GobError::Trailing));
    }

    #[test]
    fn int_forms() {
        for v in [0i64, 1, -1, 65, -65, i64::MIN, i64::MAX] {
            let mut out = Vec::new();
            put_int(&mut out, v);
            assert_eq!(Reader::new(&out).int().unwrap(), v);
        }
        let mut out = Vec::new();
        put_int(&mut out, -65);
        assert_eq!(hex::encode(&out), "ff81");
    }
}
