//! Byte mutations shared by the property tests of the parsers (`bundle/`, `graphs/`, `runtime/`
//! `tests/parse_props.rs`, each including this file with `#[path]`): cut, flip, insert and
//! remove bytes, and overwrite 4 or 8 of them with a little-endian length or count.

use proptest::prelude::*;
use proptest::sample::Index;

/// One edit of a byte string; positions are fractions of its length.
#[derive(Clone, Debug)]
pub enum Edit {
    Truncate(Index),
    Flip(Index, u8),
    Insert(Index, Vec<u8>),
    Remove(Index, usize),
    /// Overwrite 4 bytes with a little-endian value (a length or count field).
    PutU32(Index, u32),
    /// Overwrite 8 bytes with a little-endian value (a length or offset field).
    PutU64(Index, u64),
}

/// Values a 32-bit length or count field goes wrong with.
pub fn interesting_u32() -> impl Strategy<Value = u32> {
    prop_oneof![
        any::<u32>(),
        Just(0),
        Just(1),
        Just(u32::MAX),
        Just(u32::MAX - 1),
        Just(1 << 31),
        Just(i32::MAX as u32),
    ]
}

/// Values a 64-bit length or offset field goes wrong with.
pub fn interesting_u64() -> impl Strategy<Value = u64> {
    prop_oneof![
        any::<u64>(),
        Just(0),
        Just(1),
        Just(u64::MAX),
        Just(1 << 62),
        Just(1 << 32),
        Just(u32::MAX as u64),
        Just(i64::MAX as u64),
    ]
}

pub fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        any::<Index>().prop_map(Edit::Truncate),
        (any::<Index>(), 1u8..).prop_map(|(i, x)| Edit::Flip(i, x)),
        (
            any::<Index>(),
            prop_oneof![
                prop::collection::vec(any::<u8>(), 1..16),
                // Pieces of JSON (config and manifest text, safetensors headers).
                prop_oneof![
                    Just(b"[".to_vec()),
                    Just(b"{\"a\":".to_vec()),
                    Just(b"-".to_vec()),
                    Just(b"99999999999999999999".to_vec()),
                ],
            ]
        )
            .prop_map(|(i, b)| Edit::Insert(i, b)),
        (any::<Index>(), 1usize..64).prop_map(|(i, n)| Edit::Remove(i, n)),
        (any::<Index>(), interesting_u32()).prop_map(|(i, v)| Edit::PutU32(i, v)),
        (any::<Index>(), interesting_u64()).prop_map(|(i, v)| Edit::PutU64(i, v)),
    ]
}

/// A position in `0..=len`.
fn at(i: &Index, len: usize) -> usize {
    i.index(len + 1)
}

/// Overwrites the bytes from `p` with `value`, as far as `bytes` reaches.
fn put(bytes: &mut [u8], p: usize, value: &[u8]) {
    for (slot, &b) in bytes.iter_mut().skip(p).zip(value) {
        *slot = b;
    }
}

pub fn apply(bytes: &mut Vec<u8>, e: &Edit) {
    let len = bytes.len();
    match e {
        Edit::Truncate(i) => bytes.truncate(at(i, len)),
        Edit::Flip(i, x) if len > 0 => bytes[i.index(len)] ^= x,
        Edit::Flip(..) => {}
        Edit::Insert(i, b) => {
            let p = at(i, len);
            bytes.splice(p..p, b.iter().copied());
        }
        Edit::Remove(i, n) => {
            let p = at(i, len);
            bytes.drain(p..(p + n).min(len));
        }
        Edit::PutU32(i, v) => put(bytes, at(i, len), &v.to_le_bytes()),
        Edit::PutU64(i, v) => put(bytes, at(i, len), &v.to_le_bytes()),
    }
}
