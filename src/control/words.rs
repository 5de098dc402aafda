//! Words of a command line: the one tokenizer and quoting rule that every owner and every client
//! share. `tokenize(join(words)) == words` for any words.
//!
//! Words are separated by blanks; `"..."` and `'...'` group; a backslash takes the next character
//! literally outside single quotes (inside double quotes too).

/// Splits a command line into words.
///
/// # Errors
/// A message for an unterminated quote or a trailing backslash.
///
/// # Examples
/// ```
/// use daqproc::control::words::tokenize;
/// assert_eq!(tokenize(r#"set label "night shift""#).unwrap(), ["set", "label", "night shift"]);
/// ```
pub fn tokenize(line: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => cur.push(c),
                        None => return Err("unterminated ' quote".to_owned()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c) => cur.push(c),
                            None => return Err("backslash at end of line".to_owned()),
                        },
                        Some(c) => cur.push(c),
                        None => return Err("unterminated \" quote".to_owned()),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some(c) => cur.push(c),
                    None => return Err("backslash at end of line".to_owned()),
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        out.push(cur);
    }
    Ok(out)
}

/// Quotes a word so that [`tokenize`] gives it back unchanged.
pub fn quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| !c.is_whitespace() && !matches!(c, '\'' | '"' | '\\'));
    if plain {
        return word.to_owned();
    }
    let mut s = String::with_capacity(word.len() + 2);
    s.push('"');
    for c in word.chars() {
        if c == '"' || c == '\\' {
            s.push('\\');
        }
        s.push(c);
    }
    s.push('"');
    s
}

/// Joins words into a command line, quoting where needed.
pub fn join(words: &[impl AsRef<str>]) -> String {
    words
        .iter()
        .map(|w| quote(w.as_ref()))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokenizing() {
        assert_eq!(
            tokenize("  start farm1  2115 ").unwrap(),
            ["start", "farm1", "2115"]
        );
        assert_eq!(
            tokenize(r#"set label "hello world" x\ y 'a"b'"#).unwrap(),
            ["set", "label", "hello world", "x y", "a\"b"]
        );
        assert_eq!(tokenize("set label \"\"").unwrap(), ["set", "label", ""]);
        assert!(tokenize("set label \"oops").is_err());
        assert!(tokenize("x \\").is_err());
    }

    #[test]
    fn quoting_roundtrips() {
        for w in [
            "plain",
            "two words",
            "",
            "a\"b",
            "back\\slash",
            "it's",
            "tab\there",
        ] {
            assert_eq!(tokenize(&quote(w)).unwrap(), [w], "{w}");
        }
        assert_eq!(join(&["set", "label", "a b"]), "set label \"a b\"");
    }

    #[test]
    fn random_words_roundtrip() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let alphabet: Vec<char> = "ab \t'\"\\x-é.".chars().collect();
        for _ in 0..20_000 {
            let n = (x % 4) as usize;
            let words: Vec<String> = (0..n)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let len = (x % 6) as usize;
                    (0..len)
                        .map(|i| alphabet[((x >> (i * 5)) % alphabet.len() as u64) as usize])
                        .collect()
                })
                .collect();
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            assert_eq!(tokenize(&join(&words)).unwrap(), words);
        }
    }
}
