//! Convex document ids as `npx convex export` writes them: base32 (Convex's lowercase
//! Crockford-like alphabet) of `[VInt(table number)] [16-byte internal id] [footer]`, where the
//! footer is the Fletcher-16 checksum of the bytes before it (little-endian, XOR'd with the
//! format version, 0).

use std::fmt;

/// The base32 alphabet of Convex ids: digits and lowercase letters without `i`, `l`, `o`, `u`.
const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";
/// Byte -> its value in `ALPHABET`, or `INVALID` (a table: the scan decodes millions of ids).
const DECODE: [u8; 256] = {
    let mut t = [INVALID; 256];
    let mut i = 0;
    while i < 32 {
        t[ALPHABET[i] as usize] = i as u8;
        i += 1;
    }
    t
};
const INVALID: u8 = 0xff;
/// Bytes of the internal id.
pub const INTERNAL_ID_LEN: usize = 16;
/// Bytes of the footer (the checksum).
const FOOTER_LEN: usize = 2;
/// The id format version the footer is XOR'd with.
const VERSION: u16 = 0;
/// A table number is a VInt of one to five bytes.
const TABLE_NUMBER_LEN_MAX: usize = 5;
const BINARY_LEN_MIN: usize = 1 + INTERNAL_ID_LEN + FOOTER_LEN;
const BINARY_LEN_MAX: usize = TABLE_NUMBER_LEN_MAX + INTERNAL_ID_LEN + FOOTER_LEN;
/// Shortest and longest encoded id, in characters.
pub const ENCODED_LEN_MIN: usize = (BINARY_LEN_MIN * 8).div_ceil(5);
pub const ENCODED_LEN_MAX: usize = (BINARY_LEN_MAX * 8).div_ceil(5);
/// The number of the first user table of a deployment.
pub const USER_TABLE_FIRST: u32 = 10_001;

/// A decoded Convex document id.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConvexId {
    pub table: u32,
    pub internal: [u8; INTERNAL_ID_LEN],
}

/// Why a string is not a Convex id.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// Too short or too long to be an id.
    #[error("an id has {ENCODED_LEN_MIN} to {ENCODED_LEN_MAX} characters, found {0}")]
    Length(usize),
    /// A character outside the base32 alphabet.
    #[error("{0:?} is not in the id alphabet")]
    Character(char),
    /// The table number is not a valid VInt, or is 0.
    #[error("invalid table number")]
    TableNumber,
    /// The checksum in the footer does not match.
    #[error("checksum mismatch (footer {found:#06x}, expected {expected:#06x})")]
    Checksum { found: u16, expected: u16 },
    /// The bytes do not end where an id ends (or the encoding is not canonical).
    #[error("trailing or non-canonical bits")]
    Trailing,
}

fn fletcher16(bytes: &[u8]) -> u16 {
    let (mut c0, mut c1) = (0u8, 0u8);
    for b in bytes {
        c0 = c0.wrapping_add(*b);
        c1 = c1.wrapping_add(c0);
    }
    (u16::from(c1) << 8) | u16::from(c0)
}

impl ConvexId {
    /// The id's string form, as Convex writes it.
    pub fn encode(&self) -> String {
        let mut buf = [0u8; BINARY_LEN_MAX];
        let mut n = 0;
        let mut table = self.table;
        loop {
            if table < 0x80 {
                buf[n] = table as u8;
                n += 1;
                break;
            }
            buf[n] = (table as u8 & 0x7f) | 0x80;
            n += 1;
            table >>= 7;
        }
        buf[n..n + INTERNAL_ID_LEN].copy_from_slice(&self.internal);
        n += INTERNAL_ID_LEN;
        let footer = fletcher16(&buf[..n]) ^ VERSION;
        buf[n..n + FOOTER_LEN].copy_from_slice(&footer.to_le_bytes());
        n += FOOTER_LEN;
        base32(&buf[..n])
    }

    /// Decodes an id string, checking its length, alphabet, table number and checksum.
    pub fn decode(s: &str) -> Result<ConvexId, IdError> {
        if !(ENCODED_LEN_MIN..=ENCODED_LEN_MAX).contains(&s.len()) {
            return Err(IdError::Length(s.chars().count()));
        }
        let mut buf = [0u8; BINARY_LEN_MAX + 1];
        let mut len = 0;
        let (mut acc, mut bits) = (0u32, 0u32);
        for (i, b) in s.bytes().enumerate() {
            let v = DECODE[usize::from(b)];
            if v == INVALID {
                return Err(IdError::Character(s[i..].chars().next().unwrap_or('?')));
            }
            acc = (acc << 5) | v as u32;
            bits += 5;
            if bits >= 8 {
                bits -= 8;
                if len == buf.len() {
                    return Err(IdError::Trailing);
                }
                buf[len] = (acc >> bits) as u8;
                len += 1;
                acc &= (1 << bits) - 1;
            }
        }
        // Leftover bits must be zero padding.
        if acc != 0 {
            return Err(IdError::Trailing);
        }
        let bytes = &buf[..len];
        let mut table: u32 = 0;
        let mut pos = 0;
        loop {
            if pos == TABLE_NUMBER_LEN_MAX || pos >= bytes.len() {
                return Err(IdError::TableNumber);
            }
            let b = bytes[pos];
            table |= u32::from(b & 0x7f)
                .checked_shl(7 * pos as u32)
                .ok_or(IdError::TableNumber)?;
            pos += 1;
            if b & 0x80 == 0 {
                break;
            }
        }
        if table == 0 {
            return Err(IdError::TableNumber);
        }
        if bytes.len() != pos + INTERNAL_ID_LEN + FOOTER_LEN {
            return Err(IdError::Trailing);
        }
        let mut internal = [0u8; INTERNAL_ID_LEN];
        internal.copy_from_slice(&bytes[pos..pos + INTERNAL_ID_LEN]);
        let at = pos + INTERNAL_ID_LEN;
        let expected = fletcher16(&bytes[..at]) ^ VERSION;
        let found = u16::from_le_bytes([bytes[at], bytes[at + 1]]);
        if found != expected {
            return Err(IdError::Checksum { found, expected });
        }
        // A VInt with a redundant last byte (a zero after a continuation) decodes, but is
        // not Convex's encoding of the number.
        if pos > 1 && bytes[pos - 1] == 0 {
            return Err(IdError::Trailing);
        }
        Ok(ConvexId { table, internal })
    }

    /// Whether `s` could be an id at all (length and alphabet), a cheap test before `decode`.
    pub fn looks_like(s: &str) -> bool {
        (ENCODED_LEN_MIN..=ENCODED_LEN_MAX).contains(&s.len())
            && s.bytes().all(|b| DECODE[usize::from(b)] != INVALID)
    }
}

impl fmt::Display for ConvexId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.encode())
    }
}

fn base32(bytes: &[u8]) -> String {
    let mut out = String::with_capacity((bytes.len() * 8).div_ceil(5));
    let (mut acc, mut bits) = (0u32, 0u32);
    for b in bytes {
        acc = (acc << 8) | u32::from(*b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((acc >> bits) & 0x1f) as usize] as char);
        }
        acc &= (1 << bits) - 1;
    }
    if bits > 0 {
        out.push(ALPHABET[((acc << (5 - bits)) & 0x1f) as usize] as char);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_for_small_and_user_table_numbers() {
        for table in [1, 127, 128, 10_001, 10_002, 16_383, 16_384, u32::MAX] {
            let id = ConvexId {
                table,
                internal: std::array::from_fn(|i| (i as u8).wrapping_mul(37) ^ table as u8),
            };
            let s = id.encode();
            assert!(ConvexId::looks_like(&s), "{s}");
            assert_eq!(ConvexId::decode(&s), Ok(id), "{s}");
            assert_eq!(ConvexId::decode(&s).map(|d| d.encode()), Ok(s.clone()));
        }
        // A user table (two VInt bytes) gives the 32-character ids seen in exports.
        let user = ConvexId {
            table: USER_TABLE_FIRST,
            internal: [7; 16],
        };
        assert_eq!(user.encode().len(), 32);
    }

    #[test]
    fn a_changed_character_fails_the_checksum_or_the_table() {
        let id = ConvexId {
            table: 10_001,
            internal: [0xab; 16],
        }
        .encode();
        let mut rejected = 0;
        for i in 0..id.len() {
            let mut b = id.clone().into_bytes();
            b[i] = if b[i] == b'0' { b'1' } else { b'0' };
            let s = String::from_utf8(b).expect("ascii");
            assert!(ConvexId::decode(&s).is_err(), "{s} decoded");
            rejected += 1;
        }
        assert_eq!(rejected, 32);
        assert!(matches!(
            ConvexId::decode("evt_123"),
            Err(IdError::Length(7))
        ));
        let bad_char = format!("{}u", &id[..31]);
        assert_eq!(ConvexId::decode(&bad_char), Err(IdError::Character('u')));
    }
}
