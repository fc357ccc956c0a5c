//! Input text as an error message shows it: invisible characters made visible, long text cut.

/// How many characters of an input an error message repeats.
pub const MAX_ECHO_CHARS: usize = 80;

/// `text` for an error message: a byte-order mark, a zero-width or control character is
/// written `U+FEFF` (so `﻿timestamp` no longer looks like `timestamp`), and text longer than
/// [`MAX_ECHO_CHARS`] is cut, saying how long it was (a 40 MB field is not printed whole).
pub fn echo(text: &str) -> String {
    let mut out = String::new();
    let mut total = 0usize;
    for (shown, c) in text.chars().enumerate() {
        total = shown + 1;
        if shown >= MAX_ECHO_CHARS {
            continue;
        }
        if is_invisible(c) {
            out.push_str(&format!("U+{:04X}", c as u32));
        } else {
            out.push(c);
        }
    }
    if total > MAX_ECHO_CHARS {
        out.push_str(&format!("… ({total} characters)"));
    }
    out
}

/// Characters a terminal shows as nothing (or as a jump): controls, format characters such as
/// the byte-order mark and zero-width spaces, and the line and paragraph separators.
fn is_invisible(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{00AD}'
                | '\u{180E}'
                | '\u{200B}'..='\u{200F}'
                | '\u{2028}'..='\u{202E}'
                | '\u{2060}'..='\u{2064}'
                | '\u{FEFF}'
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invisible_characters_are_named() {
        assert_eq!(echo("\u{feff}timestamp"), "U+FEFFtimestamp");
        assert_eq!(echo("a\u{200b}b\tc"), "aU+200BbU+0009c");
        assert_eq!(echo("17208.88"), "17208.88");
        assert_eq!(echo("€ é"), "€ é");
    }

    #[test]
    fn long_text_is_cut_and_its_length_given() {
        let long = "9".repeat(40_000_000);
        let e = echo(&long);
        assert_eq!(e, format!("{}… (40000000 characters)", "9".repeat(80)));
        assert_eq!(echo(&"x".repeat(80)), "x".repeat(80));
    }
}
