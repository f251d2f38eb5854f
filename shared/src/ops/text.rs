//! The text an admin types for a course or a pool: names and descriptions that show what they
//! say (no control, bidirectional or only invisible characters), and launch URLs that go where
//! they show.

/// Trimmed text of at most `max` characters that prints what it says: no control, bidirectional
/// or only invisible characters; `what` names the field in the message.
pub(super) fn parse_text(text: &str, max: usize, what: &str) -> Result<String, String> {
    parse_text_allowing(text, max, what, &[])
}

/// Like `parse_text`, for prose: line breaks and tabs are kept.
pub(super) fn parse_prose(text: &str, max: usize, what: &str) -> Result<String, String> {
    parse_text_allowing(text, max, what, &['\n', '\r', '\t'])
}

fn parse_text_allowing(
    text: &str,
    max: usize,
    what: &str,
    allowed: &[char],
) -> Result<String, String> {
    let trimmed = text.trim();
    let chars = trimmed.chars().count();
    if chars == 0 {
        Err(format!("{what} must not be empty"))
    } else if chars > max {
        Err(format!("{what} has at most {max} characters"))
    } else if trimmed
        .chars()
        .any(|c| c.is_control() && !allowed.contains(&c))
    {
        Err(format!("{what} must not contain control characters"))
    } else if trimmed.chars().any(is_bidi_control) {
        Err(format!(
            "{what} must not contain bidirectional override, embedding or isolate characters"
        ))
    } else if trimmed.chars().all(is_invisible) {
        Err(format!("{what} must contain a visible character"))
    } else {
        Ok(trimmed.to_string())
    }
}

/// A line as an answer echoes it: trimmed, and cut to `max` characters with an ellipsis.
pub(super) fn echo(line: &str, max: usize) -> String {
    let trimmed = line.trim();
    if trimmed.chars().count() > max {
        let mut s: String = trimmed.chars().take(max).collect();
        s.push('…');
        s
    } else {
        trimmed.to_string()
    }
}

/// Longest launch URL, in characters.
pub const MAX_URL_CHARS: usize = 2000;

/// A launch URL: absolute https with a host and no credentials, where learners' browsers go.
pub fn parse_launch_url(text: &str) -> Result<String, String> {
    let text = text.trim();
    if text.chars().count() > MAX_URL_CHARS {
        return Err(format!("launch_url has at most {MAX_URL_CHARS} characters"));
    }
    let url = url::Url::parse(text).map_err(|_| {
        "launch_url is an absolute URL such as https://lab.example.com/start".to_string()
    })?;
    if url.scheme() != "https" {
        return Err("launch_url must be an https URL".into());
    }
    // Browsers' URL parsing forgives `https:///host` and backslashes; a launch URL is written
    // out plainly, so that what the admin sees is where learners go.
    let after_scheme = text.get("https://".len()..).unwrap_or_default();
    if !text
        .get(..8)
        .is_some_and(|s| s.eq_ignore_ascii_case("https://"))
        || after_scheme.starts_with(['/', '\\'])
        || url.host_str().is_none_or(str::is_empty)
    {
        return Err("launch_url needs a host".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("launch_url must not carry a user name or password".into());
    }
    Ok(url.to_string())
}

/// Characters that reorder the text around them (U+202A-U+202E, U+2066-U+2069): in a name
/// they make one string display as another.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Characters that print nothing by themselves, by their Unicode properties: white space,
/// Default_Ignorable_Code_Point (zero-width, fillers, variation selectors, tag characters),
/// format characters (Cf), marks with nothing to sit on (Mn, Me), separators (Zs, Zl, Zp),
/// private-use and unassigned code points (Co, Cn, which no font is known to draw), and the
/// symbols drawn blank (U+2800 BRAILLE PATTERN BLANK, a symbol by category).
fn is_invisible(c: char) -> bool {
    use icu_properties::props::{DefaultIgnorableCodePoint, GeneralCategory, GeneralCategoryGroup};
    use icu_properties::{CodePointMapData, CodePointSetData};
    const PRINTS_NOTHING: GeneralCategoryGroup = GeneralCategoryGroup::Format
        .union(GeneralCategoryGroup::NonspacingMark)
        .union(GeneralCategoryGroup::EnclosingMark)
        .union(GeneralCategoryGroup::Separator)
        .union(GeneralCategoryGroup::PrivateUse)
        .union(GeneralCategoryGroup::Unassigned);
    const BLANK_SYMBOLS: &[char] = &['\u{2800}'];
    c.is_whitespace()
        || BLANK_SYMBOLS.contains(&c)
        || CodePointSetData::new::<DefaultIgnorableCodePoint>().contains(c)
        || PRINTS_NOTHING.contains(CodePointMapData::<GeneralCategory>::new().get(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_validation() {
        assert!(parse_text("  ", 10, "name").is_err());
        assert!(parse_text("a\u{7}b", 10, "name").is_err());
        assert_eq!(parse_text(" ab ", 10, "name").unwrap(), "ab");
        assert!(parse_text("a\nb", 10, "name").is_err());
        assert_eq!(parse_prose("a\nb\tc", 10, "d").unwrap(), "a\nb\tc");
        assert!(parse_prose("a\u{7}b", 10, "d").is_err());
        assert!(parse_text(&"é".repeat(11), 10, "name").is_err());
        // Names that display as something else, or as nothing.
        for bad in [
            "invoice\u{202E}fdp.exe",
            "a\u{2066}b\u{2069}",
            "\u{202D}Safety",
            "\u{200B}\u{200B}",
            "\u{FEFF}",
            "\u{3164}",
            "\u{200D}\u{2060}\u{00AD}",
            // Blank by category or by property, not on any hand list.
            "\u{2800}\u{2800}",
            "\u{E0041}\u{E0042}\u{E007F}",
            "\u{180B}\u{180C}\u{180D}",
            "\u{E0100}\u{E01EF}",
            "\u{1D173}\u{1D17A}",
            "\u{0301}\u{20DD}",
            "\u{E000}\u{F8FF}",
            "\u{0378}",
            "\u{3000}\u{2028}",
        ] {
            assert!(parse_text(bad, 50, "name").is_err(), "{bad:?}");
            assert!(parse_prose(bad, 50, "d").is_err(), "{bad:?}");
        }
        // Right-to-left text itself, and a joiner inside visible text, are fine.
        assert!(parse_text("שלום עולם", 50, "name").is_ok());
        assert!(parse_text("👩\u{200D}💻 Developers", 50, "name").is_ok());
        assert!(parse_text("Cafe\u{0301} \u{2800}", 50, "name").is_ok());
        assert!(parse_text("\u{1F3F4}\u{E0067}\u{E0062}\u{E007F}", 50, "name").is_ok());
    }
}
