//! The proxy-wasm map encoding, in which the proxy hands over header maps and takes a local
//! response's headers: the pair count, then each pair's key and value sizes (all `u32`, little
//! endian), then the keys and values, each followed by a NUL. Apart from the adapter so that it
//! is tested natively, and public so that the test host encodes the maps it gives as this does.

/// The encoding of `pairs`, in their order.
pub fn encode<K: AsRef<[u8]>, V: AsRef<[u8]>>(pairs: &[(K, V)]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(pairs.len() as u32).to_le_bytes());
    for (k, v) in pairs {
        out.extend_from_slice(&(k.as_ref().len() as u32).to_le_bytes());
        out.extend_from_slice(&(v.as_ref().len() as u32).to_le_bytes());
    }
    for (k, v) in pairs {
        out.extend_from_slice(k.as_ref());
        out.push(0);
        out.extend_from_slice(v.as_ref());
        out.push(0);
    }
    out
}

/// The pairs of an encoded map; malformed input is `None`, never a panic. Keys that are not
/// UTF-8 are read lossily.
pub fn decode(bytes: &[u8]) -> Option<Vec<(String, Vec<u8>)>> {
    let word = |at: usize| -> Option<usize> {
        let b = bytes.get(at..at.checked_add(4)?)?;
        Some(u32::from_le_bytes(b.try_into().ok()?) as usize)
    };
    let count = word(0)?;
    let mut sizes = Vec::with_capacity(count.min(1024));
    for i in 0..count {
        let at = 4 + i * 8;
        sizes.push((word(at)?, word(at + 4)?));
    }
    let mut at = 4usize.checked_add(count.checked_mul(8)?)?;
    let mut pairs = Vec::with_capacity(sizes.len());
    for (k, v) in sizes {
        let key = bytes.get(at..at.checked_add(k)?)?;
        at = at.checked_add(k)?.checked_add(1)?;
        let value = bytes.get(at..at.checked_add(v)?)?;
        at = at.checked_add(v)?.checked_add(1)?;
        pairs.push((String::from_utf8_lossy(key).into_owned(), value.to_vec()));
    }
    Some(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_map_reads_back_as_written() {
        let pairs = vec![
            (":status".to_string(), b"401".to_vec()),
            (
                "www-authenticate".to_string(),
                b"Bearer realm=\"mcp\"".to_vec(),
            ),
            ("x-empty".to_string(), Vec::new()),
        ];
        let bytes = encode(&pairs);
        assert_eq!(&bytes[..4], &3u32.to_le_bytes());
        assert_eq!(&bytes[4..12], [7, 0, 0, 0, 3, 0, 0, 0]);
        assert_eq!(&bytes[28..40], b":status\x00401\x00");
        assert_eq!(decode(&bytes), Some(pairs));
        assert_eq!(decode(&encode::<&str, &str>(&[])), Some(Vec::new()));
    }

    #[test]
    fn malformed_maps_are_none() {
        let bytes = encode(&[("key", "value")]);
        // Every truncation that cuts into a size, the key or the value (the last NUL is not
        // needed), and sizes that point past the end.
        for end in 0..bytes.len() - 1 {
            assert_eq!(decode(&bytes[..end]), None, "{end}");
        }
        assert_eq!(decode(&u32::MAX.to_le_bytes()), None);
        let mut huge = bytes.clone();
        huge[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(decode(&huge), None);
    }
}
