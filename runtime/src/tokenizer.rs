//! Dia's text tokenizer: UTF-8 bytes, with `[S1]` and `[S2]` replaced by bytes 1 and 2.
//! Other bracketed tags (`[S3]`, `(laughs)`) are plain bytes, as in the reference.

use crate::error::RuntimeError;

/// How many tokens `text` is (bytes, each speaker tag one).
pub fn count_tokens(text: &str) -> usize {
    text.len() - 3 * (text.matches("[S1]").count() + text.matches("[S2]").count())
}

/// Tokenises `text` for an encoder of `max_len` tokens.
///
/// The reference silently truncates text longer than the encoder; we refuse it instead, since
/// the cut-off words would simply be missing from the audio.
pub fn encode_text(text: &str, max_len: usize) -> Result<Vec<i64>, RuntimeError> {
    if text.trim().is_empty() {
        return Err(RuntimeError::EmptyText);
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i..].starts_with(b"[S1]") {
            out.push(1);
            i += 4;
        } else if bytes[i..].starts_with(b"[S2]") {
            out.push(2);
            i += 4;
        } else {
            out.push(bytes[i] as i64);
            i += 1;
        }
    }
    if out.len() > max_len {
        return Err(RuntimeError::TextTooLong {
            tokens: out.len(),
            max: max_len,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn speaker_tags_become_bytes_one_and_two() {
        let t = encode_text("[S1] Hi. [S2] Yo! [S3]", 64).unwrap();
        let mut want = vec![1i64];
        want.extend(b" Hi. ".iter().map(|&b| b as i64));
        want.push(2);
        want.extend(b" Yo! [S3]".iter().map(|&b| b as i64));
        assert_eq!(t, want);
    }

    #[test]
    fn counting_agrees_with_encoding() {
        for t in ["[S1] Hi. [S2] Yo! [S3]", "[S1][S2][S1]", "é [S1", "plain"] {
            assert_eq!(count_tokens(t), encode_text(t, 64).unwrap().len(), "{t}");
        }
    }

    #[test]
    fn non_ascii_is_utf8_bytes() {
        assert_eq!(encode_text("é", 8).unwrap(), vec![0xc3, 0xa9]);
    }

    #[test]
    fn empty_and_too_long_are_errors() {
        assert!(matches!(encode_text("  ", 8), Err(RuntimeError::EmptyText)));
        match encode_text("[S1] abcdefgh", 8) {
            Err(RuntimeError::TextTooLong { tokens: 10, max: 8 }) => {}
            other => panic!("{other:?}"),
        }
    }
}
