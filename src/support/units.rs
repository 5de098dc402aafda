//! Sizes and durations as people write them on command lines and in commands.

/// A byte count: digits with an optional K, M or G suffix (powers of 1024; `KiB`, `MB`... are
/// accepted too).
///
/// # Errors
/// A message naming the text that is not a byte count.
///
/// # Examples
/// ```
/// assert_eq!(daqproc::support::units::parse_bytes("64K"), Ok(65536));
/// ```
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, suffix) = t.split_at(digits);
    let mult: u64 = match suffix.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => {
            return Err(format!(
                "{s:?} is not a byte count (e.g. 1000, 64K, 4M, 1G)"
            ))
        }
    };
    num.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(|| format!("{s:?} is not a byte count (e.g. 1000, 64K, 4M, 1G)"))
}

/// `s` cut to at most `max` bytes, on a character boundary.
pub fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    #[test]
    fn cutting() {
        assert_eq!(super::cut("abc", 5), "abc");
        assert_eq!(super::cut("abcdef", 3), "abc");
        assert_eq!(super::cut("aé", 2), "a");
    }

    #[test]
    fn bytes() {
        assert_eq!(super::parse_bytes("4M"), Ok(4 << 20));
        assert_eq!(super::parse_bytes("1000"), Ok(1000));
        assert!(super::parse_bytes("4X").is_err());
        assert!(super::parse_bytes("99999999999G").is_err());
    }
}
