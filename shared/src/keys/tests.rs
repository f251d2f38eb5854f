//! The key codes' unit tests: canonical form, custom-key errors, generation, tags, and the
//! check symbol catching every single substitution and adjacent transposition.

use super::*;
use proptest::prelude::*;

fn random_key() -> impl Strategy<Value = KeyCode> {
    proptest::array::uniform19(any::<u8>()).prop_map(|r| generated_from_random(&r))
}

proptest! {
    #[test]
    fn a_tagged_key_carries_its_tag_and_a_valid_check(
        random in proptest::array::uniform19(any::<u8>()),
        tag in proptest::array::uniform4(0u8..32),
    ) {
        let tag = KeyTag(tag);
        let key = generated_with_tag(&random, Some(tag));
        prop_assert!(key.is_valid_generated());
        prop_assert_eq!(key.tag(), Some(tag));
        // The first 15 symbols are the random ones, untouched.
        let untagged = generated_from_random(&random);
        prop_assert_eq!(&key.as_str()[..TAG_AT], &untagged.as_str()[..TAG_AT]);
    }
}

#[test]
fn keys_of_one_tag_share_no_visible_prefix_and_stay_unique() {
    let tag = KeyTag::random().unwrap();
    let keys = generate_tagged(10_000, Some(tag)).unwrap();
    assert!(keys.iter().all(|k| k.tag() == Some(tag)));
    let unique: std::collections::HashSet<_> = keys.iter().collect();
    assert_eq!(unique.len(), keys.len());
    // Every position still takes many symbols: the tag is masked, not shown.
    for i in 0..GENERATED_LEN {
        let seen: std::collections::HashSet<u8> =
            keys.iter().map(|k| k.as_str().as_bytes()[i]).collect();
        assert!(
            seen.len() > 20,
            "position {i} takes only {} symbols",
            seen.len()
        );
    }
    assert_eq!(KeyCode::parse("WELCOME2026").unwrap().tag(), None);
}

#[test]
fn a_tag_reads_back_from_its_text() {
    let tag = KeyTag::random().unwrap();
    assert_eq!(KeyTag::try_from(tag.to_string()), Ok(tag));
    assert!(KeyTag::try_from("ABC".to_string()).is_err());
    assert!(KeyTag::try_from("ABCU".to_string()).is_err());
}

#[test]
fn canonical_form_ignores_case_spaces_and_dashes() {
    let a = KeyCode::parse("abcd-efgh").unwrap();
    let b = KeyCode::parse("  ABCD EFGH ").unwrap();
    assert_eq!(a, b);
    assert_eq!(a.as_str(), "ABCDEFGH");
}

#[test]
fn custom_key_errors_say_why() {
    assert_eq!(parse_custom(""), Err(KeyFormatError::Empty));
    assert_eq!(parse_custom(" - "), Err(KeyFormatError::Empty));
    assert_eq!(parse_custom("abc"), Err(KeyFormatError::TooShort));
    assert_eq!(parse_custom(&"A".repeat(65)), Err(KeyFormatError::TooLong));
    assert!(parse_custom(&"A".repeat(64)).is_ok());
    assert_eq!(
        parse_custom("ABCD_EFGH"),
        Err(KeyFormatError::InvalidCharacters)
    );
    assert_eq!(
        parse_custom("ÄBCDEFGH"),
        Err(KeyFormatError::InvalidCharacters)
    );
    assert_eq!(
        parse_custom("ABCD\u{0}EFG"),
        Err(KeyFormatError::InvalidCharacters)
    );
}

#[test]
fn debug_never_shows_the_whole_key() {
    let key = KeyCode::parse("SECRETKEY123").unwrap();
    let debug = format!("{key:?}");
    assert!(!debug.contains("SECRETKEY123"), "{debug}");
    assert_eq!(key.to_string(), "SECRETKEY123");
}

#[test]
fn generated_keys_have_the_documented_format() {
    let keys = generate(1000).unwrap();
    assert_eq!(keys.len(), 1000);
    for key in &keys {
        let shown = key.display_form();
        assert_eq!(shown.len(), 23);
        for (i, c) in shown.chars().enumerate() {
            if i % 6 == 5 {
                assert_eq!(c, '-', "{shown}");
            } else {
                assert!(ALPHABET.contains(&(c as u8)), "{shown}");
            }
        }
        assert!(key.is_valid_generated());
        assert_eq!(KeyCode::parse(&shown).unwrap(), *key);
    }
    let distinct: std::collections::HashSet<_> = keys.iter().collect();
    assert_eq!(distinct.len(), keys.len());
}

#[test]
fn generated_symbols_cover_the_whole_alphabet() {
    let mut seen = [0usize; 32];
    for key in generate(2000).unwrap() {
        for &b in &key.as_str().as_bytes()[..RANDOM_SYMBOLS] {
            seen[DECODE[b as usize] as usize] += 1;
        }
    }
    // 38,000 symbols over 32 values: each should appear about 1,187 times.
    assert!(seen.iter().all(|&n| n > 900 && n < 1500), "{seen:?}");
}

#[test]
fn check_symbol_matches_generation() {
    let key = generate(1).unwrap().remove(0);
    let bytes = key.as_str().as_bytes();
    assert_eq!(check_symbol(&bytes[..19]), Some(bytes[19]));
    assert_eq!(check_symbol(b"ABC"), None);
    assert_eq!(check_symbol(b"IIIIIIIIIIIIIIIIIII"), None);
}

/// Every substitution at every position, for every symbol pair, is caught: exhaustive over
/// the 20 positions and the 31 wrong symbols at each, for many random keys.
#[test]
fn every_single_substitution_is_caught() {
    for key in generate(200).unwrap() {
        let original = key.as_str().as_bytes().to_vec();
        for pos in 0..GENERATED_LEN {
            for &sym in ALPHABET {
                if sym == original[pos] {
                    continue;
                }
                let mut typo = original.clone();
                typo[pos] = sym;
                assert!(!check_is_valid(&typo));
                let text = String::from_utf8(typo).unwrap();
                assert_eq!(lookup_candidates(&text), KeyLookup::Mistyped);
            }
        }
    }
}

/// The anti-symmetry holds for every accumulator value and every symbol pair, which is what
/// makes every adjacent transposition detectable anywhere in the key.
#[test]
fn every_adjacent_transposition_is_caught_exhaustively() {
    for acc in 0u8..32 {
        for a in 0u8..32 {
            for b in 0u8..32 {
                if a == b {
                    continue;
                }
                let ab = times_x(times_x(acc) ^ a) ^ b;
                let ba = times_x(times_x(acc) ^ b) ^ a;
                assert_ne!(ab, ba, "acc={acc} a={a} b={b}");
            }
        }
    }
    for key in generate(500).unwrap() {
        let original = key.as_str().as_bytes().to_vec();
        for pos in 0..GENERATED_LEN - 1 {
            if original[pos] == original[pos + 1] {
                continue;
            }
            let mut typo = original.clone();
            typo.swap(pos, pos + 1);
            assert!(!check_is_valid(&typo));
        }
    }
}

#[test]
fn look_alikes_map_only_for_generated_keys() {
    let key = generated_from_random(&[0u8; 19]); // nineteen zeros, then the check symbol
    let typed = key.as_str().replace('0', "O").to_lowercase();
    match lookup_candidates(&typed) {
        KeyLookup::Candidates(c) => {
            assert_eq!(c.len(), 2);
            assert_eq!(c[0].as_str(), typed.to_uppercase());
            assert_eq!(c[1], key);
        }
        KeyLookup::Invalid | KeyLookup::Mistyped => {
            panic!("look-alike input was not recognised")
        }
    }
    // A custom key is always looked up exactly as typed.
    assert_eq!(
        lookup_candidates("hello-world"),
        KeyLookup::Candidates(vec![KeyCode::parse("HELLOWORLD").unwrap()])
    );
    assert_eq!(lookup_candidates("ab"), KeyLookup::Invalid);
    assert_eq!(lookup_candidates("ab$cdef"), KeyLookup::Invalid);
}

#[test]
fn reserved_shape_only_refuses_unredeemable_custom_keys() {
    let generated = generate(1).unwrap().remove(0);
    assert_eq!(parse_custom(generated.as_str()), Ok(generated.clone()));
    let mut bad = generated.as_str().as_bytes().to_vec();
    bad[19] = if bad[19] == b'0' { b'1' } else { b'0' };
    let bad = String::from_utf8(bad).unwrap();
    assert_eq!(parse_custom(&bad), Err(KeyFormatError::ReservedShape));
    // Twenty characters with a letter outside the alphabet are an ordinary custom key.
    assert!(parse_custom("HELLOWORLDHELLOWORLD").is_ok());
    match lookup_candidates("HELLOWORLDHELLOWORLD") {
        KeyLookup::Candidates(c) => assert_eq!(c[0].as_str(), "HELLOWORLDHELLOWORLD"),
        KeyLookup::Invalid | KeyLookup::Mistyped => panic!("custom key refused"),
    }
}

proptest! {
    #[test]
    fn typed_variants_of_a_generated_key_find_it(key in random_key(), lower in any::<bool>(), dashes in any::<bool>()) {
        let mut typed = if dashes { key.display_form() } else { key.as_str().to_string() };
        if lower { typed = typed.to_lowercase(); }
        prop_assert_eq!(lookup_candidates(&typed), KeyLookup::Candidates(vec![key]));
    }

    #[test]
    fn any_substitution_is_invalid(key in random_key(), pos in 0usize..20, sym in 0usize..32) {
        let mut typo = key.as_str().as_bytes().to_vec();
        prop_assume!(typo[pos] != ALPHABET[sym]);
        typo[pos] = ALPHABET[sym];
        prop_assert!(!check_is_valid(&typo));
    }

    #[test]
    fn parse_never_panics_and_canonical_is_stable(s in "\\PC{0,80}") {
        if let Ok(k) = KeyCode::parse(&s) {
            prop_assert_eq!(KeyCode::parse(k.as_str()), Ok(k.clone()));
            prop_assert!(k.as_str().bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()));
        }
    }
}
