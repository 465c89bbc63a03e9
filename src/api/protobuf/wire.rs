//! Protobuf wire-format reading: varints, field keys, length-delimited
//! slices and skipping unknown fields. Bounds-checked on every read and
//! allocation-free; knows nothing about Kubernetes messages.

use super::ProtobufError;

pub(super) const VARINT: u8 = 0;
pub(super) const FIXED64: u8 = 1;
pub(super) const LEN: u8 = 2;
pub(super) const FIXED32: u8 = 5;

/// A cursor over one serialized message.
pub(super) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    pub fn done(&self) -> bool {
        self.pos >= self.buf.len()
    }

    pub fn varint(&mut self) -> Result<u64, ProtobufError> {
        let mut value: u64 = 0;
        for i in 0..10 {
            let byte = *self.buf.get(self.pos).ok_or(ProtobufError::Truncated)?;
            self.pos += 1;
            if i == 9 && byte > 1 {
                return Err(ProtobufError::VarintOverflow);
            }
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte < 0x80 {
                return Ok(value);
            }
        }
        Err(ProtobufError::VarintOverflow)
    }

    /// The next field's (tag, wire type).
    pub fn key(&mut self) -> Result<(u32, u8), ProtobufError> {
        let key = self.varint()?;
        let tag = key >> 3;
        if tag == 0 || tag > u64::from(u32::MAX >> 3) {
            return Err(ProtobufError::InvalidTag(tag));
        }
        // Both casts are in range: tag was checked above, the wire type is 3 bits.
        Ok((tag as u32, (key & 7) as u8))
    }

    pub fn bytes(&mut self) -> Result<&'a [u8], ProtobufError> {
        let len = self.varint()?;
        let len = usize::try_from(len).map_err(|_| ProtobufError::Truncated)?;
        let end = self.pos.checked_add(len).ok_or(ProtobufError::Truncated)?;
        let out = self
            .buf
            .get(self.pos..end)
            .ok_or(ProtobufError::Truncated)?;
        self.pos = end;
        Ok(out)
    }

    pub fn fixed64(&mut self) -> Result<u64, ProtobufError> {
        let end = self.pos.checked_add(8).ok_or(ProtobufError::Truncated)?;
        let raw = self
            .buf
            .get(self.pos..end)
            .ok_or(ProtobufError::Truncated)?;
        let mut le = [0u8; 8];
        le.copy_from_slice(raw);
        self.pos = end;
        Ok(u64::from_le_bytes(le))
    }

    fn fixed32(&mut self) -> Result<(), ProtobufError> {
        let end = self.pos.checked_add(4).ok_or(ProtobufError::Truncated)?;
        if end > self.buf.len() {
            return Err(ProtobufError::Truncated);
        }
        self.pos = end;
        Ok(())
    }

    /// Skips the value of a field with the given wire type. Groups (3, 4)
    /// are not used by Kubernetes and are rejected, as the Go decoder does
    /// for end-group.
    pub fn skip(&mut self, wire_type: u8) -> Result<(), ProtobufError> {
        match wire_type {
            VARINT => self.varint().map(drop),
            FIXED64 => self.fixed64().map(drop),
            LEN => self.bytes().map(drop),
            FIXED32 => self.fixed32(),
            other => Err(ProtobufError::UnsupportedWireType(other)),
        }
    }
}

/// Iterates (tag, wire type, reader positioned at the value) over several
/// serialized chunks of one message, in order: a message field that occurs
/// more than once is merged, which equals decoding the concatenation.
pub(super) fn for_each_field<'a>(
    chunks: &[&'a [u8]],
    mut f: impl FnMut(u32, u8, &mut Reader<'a>) -> Result<(), ProtobufError>,
) -> Result<(), ProtobufError> {
    for chunk in chunks {
        let mut r = Reader::new(chunk);
        while !r.done() {
            let (tag, wire_type) = r.key()?;
            f(tag, wire_type, &mut r)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_edges() {
        assert_eq!(Reader::new(&[0x00]).varint().ok(), Some(0));
        assert_eq!(Reader::new(&[0xac, 0x02]).varint().ok(), Some(300));
        let max = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
        assert_eq!(Reader::new(&max).varint().ok(), Some(u64::MAX));
        let too_long = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02];
        assert!(matches!(
            Reader::new(&too_long).varint(),
            Err(ProtobufError::VarintOverflow)
        ));
        assert!(matches!(
            Reader::new(&[0x80]).varint(),
            Err(ProtobufError::Truncated)
        ));
    }

    #[test]
    fn huge_length_is_truncated_not_a_panic() {
        let mut r = Reader::new(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]);
        assert!(matches!(r.bytes(), Err(ProtobufError::Truncated)));
    }

    #[test]
    fn tag_zero_is_rejected() {
        assert!(matches!(
            Reader::new(&[0x02, 0x00]).key(),
            Err(ProtobufError::InvalidTag(0))
        ));
    }

    #[test]
    fn groups_are_rejected() {
        let mut r = Reader::new(&[]);
        assert!(matches!(
            r.skip(3),
            Err(ProtobufError::UnsupportedWireType(3))
        ));
    }
}
