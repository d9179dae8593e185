//! Decoding of `application/x-www-form-urlencoded` values: how S3 writes an object key in an
//! event notification's `Records` (`"red flower.jpg"` arrives as `red+flower.jpg`, a `+` in
//! the key as `%2B`). `+` is a space, `%XX` is the byte `XX`; the bytes must be UTF-8. A `%`
//! not followed by two hex digits is refused, never passed through: a key is read one way.

/// Why a form-encoded value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormError {
    #[error("{0} has a % not followed by two hex digits")]
    BadEscape(String),
    #[error("{0} does not decode to UTF-8")]
    NotUtf8(String),
}

/// The value `text` encodes (`+` → space, `%XX` → byte `XX`).
pub fn decode(text: &str) -> Result<String, FormError> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' => {
                let hex = |at: usize| bytes.get(at).and_then(|b| (*b as char).to_digit(16));
                match (hex(i + 1), hex(i + 2)) {
                    (Some(high), Some(low)) => out.push((high * 16 + low) as u8),
                    _ => return Err(FormError::BadEscape(crate::ids::quote(text))),
                }
                i += 3;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| FormError::NotUtf8(crate::ids::quote(text)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_what_s3_writes_in_a_notification() {
        let table = [
            ("releases/checkout/v2.6.0.json", "releases/checkout/v2.6.0.json"),
            ("red+flower.jpg", "red flower.jpg"),
            (
                "releases/checkout/v2.7.0%2Bbuild.5.json",
                "releases/checkout/v2.7.0+build.5.json",
            ),
            ("a%20b", "a b"),
            ("a%2fb%2Fc", "a/b/c"),
            ("%2E%2E/%2e%2e", "../.."),
            ("100%25", "100%"),
            ("%25%32%46", "%2F"),
            ("caf%C3%A9", "caf\u{e9}"),
            ("%00", "\u{0}"),
            ("", ""),
            ("++", "  "),
        ];
        for (encoded, want) in table {
            assert_eq!(decode(encoded).as_deref(), Ok(want), "{encoded:?}");
        }
    }

    #[test]
    fn refuses_what_could_be_read_two_ways() {
        for bad in ["%", "a%2", "%zz", "%+1", "%%41", "ab%g0", "%C3", "%FF", "%C3%28"] {
            let err = decode(bad).unwrap_err();
            assert!(err.to_string().contains(&format!("{bad:?}")), "{bad:?}: {err}");
        }
    }
}
