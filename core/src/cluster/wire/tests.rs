//! What the codec tests share: goldens as hex, and value builders.

use super::notepack::Data;

/// The bytes a hex golden spells (whitespace ignored).
pub(super) fn hex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex")).collect()
}

/// Bytes as lowercase hex.
pub(super) fn to_hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A map value from `(key, value)` pairs.
pub(super) fn map(entries: Vec<(&str, Data)>) -> Data {
    Data::Map(entries.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
}

/// `notepack.encode([new Date(1735787045678), new Date(0), new Date(-1), new Date(Date.UTC(2500, 0, 1)),
/// 2 ** 53 + 2, -(2 ** 40), 1e21, 0.5, -0, NaN, undefined, new Uint8Array([4, 5])])`. Note 1e21: notepack writes
/// a wrapped uint64. Printed by `core/tests/fixtures/classic/generate-goldens.js` (`special`).
pub(super) const GOLDEN_SPECIAL: &str = "9cd7ffa1a5d60067760225d6ff00000000c70cff3b8b87c0ffffffffffffffffd7ff00000003e4e6b080\
    cf0020000000000002d3ffffff0000000000cf35c9adc5dea00000cb3fe000000000000000cb7ff8000000000000c0c4020405";
