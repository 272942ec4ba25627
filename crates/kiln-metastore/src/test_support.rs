//! Helpers shared by the crate's tests.

/// A ULID made at `millis` (unix milliseconds), told apart by `n`.
pub(crate) fn ulid(millis: i64, n: u64) -> String {
    const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    let time = (0..10).map(|i| ALPHABET[(((millis as u64) >> (45 - 5 * i)) & 31) as usize]);
    let random = (0..13).map(|i| ALPHABET[((n >> (60 - 5 * i)) & 31) as usize]);
    time.chain(*b"000").chain(random).map(char::from).collect()
}
