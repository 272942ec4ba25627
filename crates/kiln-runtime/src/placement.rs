//! Stable placement of keys on members: a distributor's (tenant, service) on an ingester, a
//! querier's part of a query on a querier. The same key lands on the same member while the
//! membership holds, and a change of membership moves only the keys of the member that came or
//! went.

/// Jump consistent hash (Lamping and Veach, 2014): the bucket in `0..buckets` of `key`.
pub fn jump_hash(mut key: u64, buckets: usize) -> usize {
    let (mut b, mut j) = (-1_i64, 0_i64);
    while j < buckets as i64 {
        b = j;
        key = key.wrapping_mul(2_862_933_555_777_941_757).wrapping_add(1);
        j = ((b + 1) as f64 * ((1_i64 << 31) as f64 / ((key >> 33) + 1) as f64)) as i64;
    }
    b.max(0) as usize
}

/// A stable 64-bit hash of `parts` (FNV-1a, a zero byte between parts): the same in every
/// process and every release, unlike std's hasher.
pub fn stable_hash<'a>(parts: impl IntoIterator<Item = &'a str>) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for (index, part) in parts.into_iter().enumerate() {
        let separator = (index > 0).then_some(0u8);
        for byte in separator.into_iter().chain(part.bytes()) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jump_hash_is_stable_and_moves_little_when_a_bucket_is_added() {
        let keys: Vec<u64> = (0..10_000)
            .map(|i| stable_hash(["t", &format!("svc-{i}")]))
            .collect();
        let before: Vec<usize> = keys.iter().map(|&k| jump_hash(k, 4)).collect();
        let after: Vec<usize> = keys.iter().map(|&k| jump_hash(k, 5)).collect();
        let moved = before.iter().zip(&after).filter(|(a, b)| a != b).count();
        // One fifth of the keys move to the new bucket, and only there.
        assert!((1_700..2_300).contains(&moved), "{moved} keys moved");
        assert!(before.iter().zip(&after).all(|(a, b)| a == b || *b == 4));
        let mut per_bucket = [0; 4];
        for b in before {
            per_bucket[b] += 1;
        }
        assert!(
            per_bucket.iter().all(|&n| (2_200..2_800).contains(&n)),
            "{per_bucket:?}"
        );
        assert_eq!(jump_hash(stable_hash(["t", "svc-1"]), 1), 0);
        assert_eq!(jump_hash(7, 0), 0);
    }
}
