//! Key codes: canonical form, custom-key validation, generation and the check symbol.
//!
//! Every key lives in one namespace, compared in canonical form (ASCII upper case, spaces and
//! dashes removed). Generated keys are 19 Crockford base32 symbols plus one check symbol
//! computed in GF(32), shown as `XXXXX-XXXXX-XXXXX-XXXXX`. A pool's generated keys carry its
//! [`KeyTag`] in symbols 16 to 19, masked by the first four (so keys of one pool share no
//! visible prefix): 15 symbols, 75 bits, stay random. The tag is only a hint of the key's
//! pool, which lets a redemption write without reading the key first; the write is
//! conditioned on the key's pool, so a key whose tag misleads (an older key, a custom key of
//! the generated shape) is only read the usual way.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Crockford base32: no I, L, O or U.
pub const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
/// Random symbols in a generated key.
pub const RANDOM_SYMBOLS: usize = 19;
/// Symbols in a generated key, check symbol included.
pub const GENERATED_LEN: usize = RANDOM_SYMBOLS + 1;
/// Symbols of a generated key that carry its pool's tag.
pub const TAG_SYMBOLS: usize = 4;
/// Where in a generated key the masked tag sits.
const TAG_AT: usize = RANDOM_SYMBOLS - TAG_SYMBOLS;
/// Shortest custom key, in canonical form.
pub const MIN_LEN: usize = 4;
/// Longest custom key, in canonical form.
pub const MAX_LEN: usize = 64;

/// Maps an ASCII byte to its Crockford value, or 255 when it is not a strict symbol.
const fn decode_table() -> [u8; 256] {
    let mut table = [255u8; 256];
    let mut i = 0;
    while i < 32 {
        table[ALPHABET[i] as usize] = i as u8;
        i += 1;
    }
    table
}
static DECODE: [u8; 256] = decode_table();

/// A key in canonical form: 4 to 64 characters of A-Z and 0-9.
///
/// `Debug` is redacted so that keys never reach logs; `Display` shows the key in full.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct KeyCode(String);

impl KeyCode {
    /// Parses typed or pasted text into a canonical key, or says why it cannot be one.
    pub fn parse(input: &str) -> Result<Self, KeyFormatError> {
        let canonical = canonicalize(input)?;
        if canonical.len() < MIN_LEN {
            return Err(if canonical.is_empty() {
                KeyFormatError::Empty
            } else {
                KeyFormatError::TooShort
            });
        }
        if canonical.len() > MAX_LEN {
            return Err(KeyFormatError::TooLong);
        }
        Ok(Self(canonical))
    }

    /// The canonical text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The form shown to people: generated keys in dashed groups of five, custom keys as stored.
    pub fn display_form(&self) -> String {
        if is_generated_shape(self.0.as_bytes()) {
            let mut out = String::with_capacity(GENERATED_LEN + 3);
            for (i, chunk) in self.0.as_bytes().chunks(5).enumerate() {
                if i > 0 {
                    out.push('-');
                }
                // The shape check above guarantees ASCII.
                out.extend(chunk.iter().map(|&b| b as char));
            }
            out
        } else {
            self.0.clone()
        }
    }

    /// The pool tag a generated key carries (see [`KeyTag`]); `None` for other shapes. Only a
    /// hint: a key generated before tags, or a custom key of the generated shape, yields
    /// some tag too.
    pub fn tag(&self) -> Option<KeyTag> {
        let bytes = self.0.as_bytes();
        if !is_generated_shape(bytes) {
            return None;
        }
        let mut tag = [0u8; TAG_SYMBOLS];
        for (i, v) in tag.iter_mut().enumerate() {
            *v = DECODE[bytes[TAG_AT + i] as usize] ^ DECODE[bytes[i] as usize];
        }
        Some(KeyTag(tag))
    }

    /// True for a key in the generated shape whose check symbol is valid.
    pub fn is_valid_generated(&self) -> bool {
        is_generated_shape(self.0.as_bytes()) && check_is_valid(self.0.as_bytes())
    }
}

impl fmt::Debug for KeyCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let head: String = self.0.chars().take(2).collect();
        write!(f, "KeyCode({head}…)")
    }
}

impl fmt::Display for KeyCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for KeyCode {
    type Error = KeyFormatError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<KeyCode> for String {
    fn from(value: KeyCode) -> Self {
        value.0
    }
}

/// A pool's tag: four symbol values (20 bits) that every key generated for the pool carries,
/// chosen at random when the pool is made. Not a secret and not unique: two pools that draw
/// the same tag only lose the shortcut for some of their keys.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct KeyTag([u8; TAG_SYMBOLS]);

impl KeyTag {
    /// A tag from the operating system's CSPRNG.
    pub fn random() -> Result<Self, getrandom::Error> {
        let mut bytes = [0u8; TAG_SYMBOLS];
        getrandom::fill(&mut bytes)?;
        Ok(Self(bytes.map(|b| b & 0x1f)))
    }
}

impl fmt::Debug for KeyTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyTag({self})")
    }
}

impl fmt::Display for KeyTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for &v in &self.0 {
            write!(f, "{}", ALPHABET[v as usize] as char)?;
        }
        Ok(())
    }
}

impl TryFrom<String> for KeyTag {
    type Error = String;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        let bytes = value.as_bytes();
        let mut tag = [0u8; TAG_SYMBOLS];
        if bytes.len() != TAG_SYMBOLS {
            return Err(format!("a key tag has {TAG_SYMBOLS} symbols"));
        }
        for (v, &b) in tag.iter_mut().zip(bytes) {
            *v = DECODE[b as usize];
            if *v == 255 {
                return Err("a key tag is in the Crockford alphabet".into());
            }
        }
        Ok(Self(tag))
    }
}

impl From<KeyTag> for String {
    fn from(value: KeyTag) -> Self {
        value.to_string()
    }
}

/// Why text is not a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyFormatError {
    #[error("the key is empty")]
    Empty,
    #[error("a key may hold only letters A-Z and digits 0-9 (spaces and dashes are ignored)")]
    InvalidCharacters,
    #[error("a key needs at least 4 letters or digits")]
    TooShort,
    #[error("a key has at most 64 letters or digits")]
    TooLong,
    #[error(
        "20-symbol keys in the generated alphabet are reserved for generated keys and need a valid check symbol; use another length"
    )]
    ReservedShape,
}

/// Upper case, spaces and dashes removed; anything but ASCII letters and digits is an error.
fn canonicalize(input: &str) -> Result<String, KeyFormatError> {
    let mut out = String::with_capacity(input.len());
    for c in input.trim().chars() {
        match c {
            ' ' | '-' => {}
            c if c.is_ascii_alphanumeric() => out.push(c.to_ascii_uppercase()),
            _ => return Err(KeyFormatError::InvalidCharacters),
        }
    }
    Ok(out)
}

/// Validates a key an admin entered. Every key accepted here is redeemable exactly as entered.
pub fn parse_custom(input: &str) -> Result<KeyCode, KeyFormatError> {
    let key = KeyCode::parse(input)?;
    // A learner's generated-shaped input with a bad check symbol is answered without a store
    // lookup, so a custom key of that shape could never be redeemed: refuse it up front.
    if is_generated_shape(key.0.as_bytes()) && !check_is_valid(key.0.as_bytes()) {
        return Err(KeyFormatError::ReservedShape);
    }
    Ok(key)
}

/// What a learner's typed key means before any store lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyLookup {
    /// Look these up in order; the first that exists is the key.
    Candidates(Vec<KeyCode>),
    /// A generated key whose check symbol does not match the others: a typo, known without a
    /// lookup (no key of that shape exists, custom keys included).
    Mistyped,
    /// Not a key at all: wrong characters or length.
    Invalid,
}

/// Interprets a learner's input: as typed first, then with look-alikes (O→0, I/L→1) mapped
/// when that turns it into a generated key with a valid check symbol.
pub fn lookup_candidates(input: &str) -> KeyLookup {
    let Ok(typed) = KeyCode::parse(input) else {
        return KeyLookup::Invalid;
    };
    let bytes = typed.0.as_bytes();
    if is_generated_shape(bytes) {
        return if check_is_valid(bytes) {
            KeyLookup::Candidates(vec![typed])
        } else {
            KeyLookup::Mistyped
        };
    }
    let mut candidates = vec![typed.clone()];
    if let Some(mapped) = look_alikes_mapped(&typed)
        && check_is_valid(mapped.as_bytes())
    {
        candidates.push(KeyCode(mapped));
    }
    KeyLookup::Candidates(candidates)
}

/// True when `typed`, with its look-alikes mapped, reads as a generated key with a check
/// symbol that does not match: what to call it once no key exists as typed.
pub fn reads_as_mistyped(typed: &KeyCode) -> bool {
    look_alikes_mapped(typed).is_some_and(|mapped| !check_is_valid(mapped.as_bytes()))
}

/// The input with O read as 0 and I, L as 1, when that makes it a generated key's shape.
fn look_alikes_mapped(typed: &KeyCode) -> Option<String> {
    let mapped: String = typed
        .0
        .chars()
        .map(|c| match c {
            'O' => '0',
            'I' | 'L' => '1',
            c => c,
        })
        .collect();
    is_generated_shape(mapped.as_bytes()).then_some(mapped)
}

/// 20 symbols, every one in the strict Crockford alphabet.
fn is_generated_shape(bytes: &[u8]) -> bool {
    bytes.len() == GENERATED_LEN && bytes.iter().all(|&b| DECODE[b as usize] != 255)
}

/// Multiplication by x in GF(2^5) modulo x^5 + x^2 + 1.
#[inline]
fn times_x(v: u8) -> u8 {
    let shifted = v << 1;
    if shifted & 0x20 != 0 {
        (shifted ^ 0x25) & 0x1f
    } else {
        shifted
    }
}

/// Runs the check over symbol values: `acc' = x·acc + s` in GF(32).
///
/// `(a, b) -> x·a + b` is a totally anti-symmetric quasigroup (x ≠ 0, 1), so, as in Damm's
/// scheme, every single substitution and every transposition of neighbours changes the result.
#[inline]
fn check_accumulate(values: impl IntoIterator<Item = u8>) -> u8 {
    values.into_iter().fold(0, |acc, v| times_x(acc) ^ v)
}

/// The check symbol's value for 19 symbol values: the one that brings the accumulator to 0.
#[inline]
fn check_value(values: &[u8]) -> u8 {
    // x·acc + c = 0 in characteristic 2 means c = x·acc.
    times_x(check_accumulate(values.iter().copied()))
}

/// True when the 20 strict symbols bring the accumulator to zero.
fn check_is_valid(bytes: &[u8]) -> bool {
    check_accumulate(bytes.iter().map(|&b| DECODE[b as usize])) == 0
}

/// The check symbol (as an ASCII byte) for 19 strict Crockford symbols.
pub fn check_symbol(symbols: &[u8]) -> Option<u8> {
    if symbols.len() != RANDOM_SYMBOLS {
        return None;
    }
    let mut values = [0u8; RANDOM_SYMBOLS];
    for (v, &b) in values.iter_mut().zip(symbols) {
        *v = DECODE[b as usize];
        if *v == 255 {
            return None;
        }
    }
    Some(ALPHABET[check_value(&values) as usize])
}

/// Builds a generated key from 19 random bytes; only the low five bits of each are used, which
/// keeps the symbols uniform because 256 is a multiple of 32.
pub fn generated_from_random(random: &[u8; RANDOM_SYMBOLS]) -> KeyCode {
    generated_with_tag(random, None)
}

/// Builds a generated key from 19 random bytes, carrying `tag` masked by its first symbols
/// when given (the random bytes there are then unused).
pub fn generated_with_tag(random: &[u8; RANDOM_SYMBOLS], tag: Option<KeyTag>) -> KeyCode {
    let mut values = [0u8; RANDOM_SYMBOLS];
    for (v, &r) in values.iter_mut().zip(random) {
        *v = r & 0x1f;
    }
    if let Some(KeyTag(tag)) = tag {
        for (i, t) in tag.into_iter().enumerate() {
            values[TAG_AT + i] = t ^ values[i];
        }
    }
    let mut text = String::with_capacity(GENERATED_LEN);
    text.extend(values.iter().map(|&v| ALPHABET[v as usize] as char));
    text.push(ALPHABET[check_value(&values) as usize] as char);
    KeyCode(text)
}

/// Generates `count` untagged keys from the operating system's CSPRNG.
pub fn generate(count: usize) -> Result<Vec<KeyCode>, getrandom::Error> {
    generate_tagged(count, None)
}

/// Generates `count` keys carrying `tag` from the operating system's CSPRNG, with one entropy
/// call per batch.
pub fn generate_tagged(
    count: usize,
    tag: Option<KeyTag>,
) -> Result<Vec<KeyCode>, getrandom::Error> {
    const BATCH: usize = 4096;
    let mut keys = Vec::with_capacity(count);
    let mut buffer = vec![0u8; BATCH.min(count.max(1)) * RANDOM_SYMBOLS];
    while keys.len() < count {
        let n = (count - keys.len()).min(BATCH);
        let bytes = &mut buffer[..n * RANDOM_SYMBOLS];
        getrandom::fill(bytes)?;
        for chunk in bytes.chunks_exact(RANDOM_SYMBOLS) {
            let random: &[u8; RANDOM_SYMBOLS] = chunk.try_into().expect("exact chunk");
            keys.push(generated_with_tag(random, tag));
        }
    }
    Ok(keys)
}

#[cfg(test)]
mod tests;
