//! Properties of what reads untrusted text: key parsing, the paste parser and the CSV cell
//! neutraliser, over arbitrary input (a bounded number of cases, so `cargo test` stays quick).

use std::collections::BTreeSet;

use keypool::keys::{self, ALPHABET, GENERATED_LEN, KeyCode, KeyLookup};
use keypool::ops::paste::{CheckedPaste, MAX_REJECTED_SHOWN};
use keypool::spreadsheet;
use proptest::prelude::*;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        ..ProptestConfig::default()
    }
}

/// Text a user may paste: keys, near-keys, separators, blanks, CR, unicode, control bytes.
fn messy() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[a-zA-Z0-9 \\-]{0,70}",
        "[ \t\r\u{a0}\u{200b}é☃🔑a-z0-9-]{0,30}",
        Just(String::new()),
    ]
}

fn generated() -> impl Strategy<Value = KeyCode> {
    proptest::array::uniform19(any::<u8>()).prop_map(|r| keys::generated_from_random(&r))
}

/// A line of a paste: valid keys (some repeated), bad ones, blanks.
fn paste_line() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[a-z0-9]{4,12}",
        1 => "(aaaa|bbbb|cc-cc|DDDD)",
        1 => "[ \t]{0,3}",
        2 => messy().prop_map(|s| s.replace('\n', " ")),
    ]
}

/// The non-blank line numbers of a text body, counting from 1, blank lines included.
fn non_blank_lines(body: &str) -> Vec<usize> {
    body.split('\n')
        .enumerate()
        .filter(|(_, l)| !l.trim_end_matches('\r').trim().is_empty())
        .map(|(i, _)| i + 1)
        .collect()
}

/// Every non-blank line is valid or rejected, exactly once; the shown rejections are the
/// first of them by line number, at most `MAX_REJECTED_SHOWN`.
fn check_accounting(paste: &CheckedPaste, expected: &[usize]) -> Result<(), TestCaseError> {
    prop_assert_eq!(paste.len(), expected.len());
    let valid: Vec<usize> = paste.valid().into_iter().map(|(l, _)| l).collect();
    prop_assert!(
        valid.windows(2).all(|w| w[0] < w[1]),
        "valid lines in order"
    );
    let rejections = paste.rejections();
    prop_assert_eq!(valid.len() + rejections.count(), expected.len());
    let valid_set: BTreeSet<usize> = valid.iter().copied().collect();
    let rejected: Vec<usize> = expected
        .iter()
        .copied()
        .filter(|l| !valid_set.contains(l))
        .collect();
    prop_assert!(valid.iter().all(|l| expected.binary_search(l).is_ok()));
    let shown: Vec<usize> = rejections.shown().iter().map(|r| r.line).collect();
    let want = &rejected[..rejected.len().min(MAX_REJECTED_SHOWN)];
    prop_assert_eq!(shown.as_slice(), want);
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn key_parsing_never_panics_and_canonical_forms_are_fixed_points(s in messy()) {
        let _ = keys::lookup_candidates(&s);
        if let Ok(k) = KeyCode::parse(&s) {
            prop_assert_eq!(KeyCode::parse(k.as_str()), Ok(k.clone()));
            prop_assert_eq!(KeyCode::parse(&k.display_form()), Ok(k.clone()));
            prop_assert!((keys::MIN_LEN..=keys::MAX_LEN).contains(&k.as_str().len()));
            prop_assert!(k.as_str().bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()));
        }
        if let Ok(k) = keys::parse_custom(&s) {
            prop_assert_eq!(keys::parse_custom(k.as_str()), Ok(k.clone()));
            prop_assert_eq!(keys::parse_custom(&k.display_form()), Ok(k.clone()));
        }
    }

    #[test]
    fn custom_keys_are_always_found_as_typed(s in messy()) {
        if let Ok(k) = keys::parse_custom(&s) {
            match keys::lookup_candidates(&s) {
                KeyLookup::Candidates(c) => prop_assert_eq!(&c[0], &k),
                KeyLookup::Invalid | KeyLookup::Mistyped => prop_assert!(false, "an accepted custom key is unredeemable"),
            }
        }
    }

    #[test]
    fn generated_keys_round_trip_through_their_display_form(key in generated(), lower in any::<bool>()) {
        prop_assert!(key.is_valid_generated());
        let mut shown = key.display_form();
        prop_assert_eq!(shown.len(), GENERATED_LEN + 3);
        if lower {
            shown = shown.to_lowercase();
        }
        prop_assert_eq!(KeyCode::parse(&shown), Ok(key.clone()));
        prop_assert_eq!(keys::parse_custom(&shown), Ok(key.clone()));
        prop_assert_eq!(keys::lookup_candidates(&shown), KeyLookup::Candidates(vec![key]));
    }

    #[test]
    fn a_single_symbol_typo_never_finds_another_generated_key(
        key in generated(),
        pos in 0..GENERATED_LEN,
        typed in "[0-9A-Za-z]",
    ) {
        let mut typo = key.as_str().as_bytes().to_vec();
        let c = typed.as_bytes()[0].to_ascii_uppercase();
        prop_assume!(c != typo[pos]);
        typo[pos] = c;
        let typo = String::from_utf8(typo).unwrap();
        match keys::lookup_candidates(&typo) {
            KeyLookup::Invalid | KeyLookup::Mistyped => {}
            KeyLookup::Candidates(candidates) => {
                // Only a look-alike (O for 0, I or L for 1) may lead back, and only to the key.
                for candidate in candidates.iter().filter(|k| k.is_valid_generated()) {
                    prop_assert_eq!(candidate, &key);
                }
            }
        }
        if ALPHABET.contains(&c) {
            prop_assert_eq!(keys::lookup_candidates(&typo), KeyLookup::Mistyped);
        } else {
            // A look-alike (O, I, L) or U: looked up as typed, and a typo once nothing is found
            // unless the look-alike reads as the very symbol it replaced.
            let original = key.as_str().as_bytes()[pos];
            let reads_as = match c { b'O' => Some(b'0'), b'I' | b'L' => Some(b'1'), _ => None };
            let typed = KeyCode::parse(&typo).unwrap();
            prop_assert_eq!(
                keys::reads_as_mistyped(&typed),
                reads_as.is_some_and(|r| r != original)
            );
        }
    }

    #[test]
    fn every_pasted_line_is_valid_or_rejected_exactly_once(
        lines in proptest::collection::vec(paste_line(), 0..60),
        crlf in any::<bool>(),
    ) {
        let body = lines.join(if crlf { "\r\n" } else { "\n" });
        let paste = CheckedPaste::from_text(&body);
        check_accounting(&paste, &non_blank_lines(&body))?;
        // The same lines as a JSON list number and judge alike.
        let json = serde_json::json!({ "keys": lines }).to_string();
        let listed = CheckedPaste::from_json(json.as_bytes()).unwrap();
        prop_assert_eq!(listed.valid(), CheckedPaste::from_list(&lines).valid());
        if !crlf {
            prop_assert_eq!(listed.valid(), paste.valid());
            prop_assert_eq!(listed.rejections(), paste.rejections());
        }
    }

    #[test]
    fn arbitrary_bodies_never_panic_and_stay_accounted(body in messy(), bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        check_accounting(&CheckedPaste::from_text(&body), &non_blank_lines(&body))?;
        let _ = CheckedPaste::from_json(&bytes);
        let text = String::from_utf8_lossy(&bytes);
        check_accounting(&CheckedPaste::from_text(&text), &non_blank_lines(&text))?;
    }

    #[test]
    fn rejections_stay_bounded_and_first(bad in 0usize..3000, good in 0usize..50, seed in any::<u64>()) {
        // Bad lines and good ones interleaved by a seed, with duplicates of the good ones.
        let mut lines = Vec::new();
        let mut state = seed | 1;
        let (mut b, mut g) = (0, 0);
        while b < bad || g < good {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            if g < good && (b == bad || state % 4 == 0) {
                lines.push(format!("good{}", g % 20));
                g += 1;
            } else {
                lines.push("x".to_string());
                b += 1;
            }
        }
        let body = lines.join("\n");
        let paste = CheckedPaste::from_text(&body);
        prop_assert!(paste.rejections().shown().len() <= MAX_REJECTED_SHOWN);
        check_accounting(&paste, &non_blank_lines(&body))?;
    }

    #[test]
    fn csv_cells_never_start_a_formula(s in any::<String>()) {
        let cell = spreadsheet::cell(&s);
        let first = cell.as_bytes().first().copied();
        prop_assert!(!matches!(first, Some(b'=' | b'+' | b'-' | b'@' | b'\t' | b'\r')));
        // Nothing is lost: the cell is the text, or an apostrophe and the text.
        prop_assert!(cell == s || cell.strip_prefix('\'') == Some(s.as_str()));
    }
}
