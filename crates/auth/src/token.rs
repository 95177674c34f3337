//! API tokens.
//!
//! A token is `vireo_` followed by 43 base64url characters (32 bytes from the OS's CSPRNG).
//! The prefix makes a leaked token easy to recognise (secret scanners, logs) and lets the
//! server tell it from a JWT without trying both. Only its SHA-256 is stored: a token has
//! 256 bits of entropy, so a fast hash is enough (a slow password hash protects guessable
//! secrets, and this one is not guessable), and lookups stay a hash-map probe.

use base64::Engine;
use sha2::{Digest, Sha256};

pub const PREFIX: &str = "vireo_";

/// A token's stored form: the hex SHA-256 of the whole token text.
pub fn hash(token: &str) -> String {
    format!("{:x}", Sha256::digest(token.as_bytes()))
}

/// A fresh token.
pub fn mint() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes)?;
    Ok(format!(
        "{PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    ))
}

/// Whether `s` has a token's shape (prefix, length, alphabet): anything else is not looked up.
pub fn looks_like_token(s: &str) -> bool {
    s.strip_prefix(PREFIX).is_some_and(|rest| {
        rest.len() == 43
            && rest
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    })
}

/// A token's name: 1–64 of `a-z 0-9 . _ - @`, starting with a letter or digit. Names appear
/// as actors (`token:NAME`) on timelines and in evidence, so they are kept plain.
pub fn valid_name(name: &str) -> Result<(), String> {
    let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || ".-_@".contains(c);
    if name.is_empty() || name.len() > 64 {
        return Err(format!("token name {name:?}: use 1 to 64 characters"));
    }
    if !name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit()) {
        return Err(format!(
            "token name {name:?}: start with a lower-case letter or a digit"
        ));
    }
    if let Some(bad) = name.chars().find(|c| !ok_char(*c)) {
        return Err(format!(
            "token name {name:?}: {bad:?} is not allowed (use a-z, 0-9, '.', '_', '-', '@')"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_tokens_have_the_shape_and_differ() {
        let a = mint().unwrap();
        let b = mint().unwrap();
        assert!(looks_like_token(&a), "{a}");
        assert_ne!(a, b);
        assert_ne!(hash(&a), hash(&b));
        assert_eq!(hash(&a).len(), 64);
    }

    #[test]
    fn hashes_are_sha256_hex() {
        // sha256("abc"), FIPS 180-2's example.
        assert_eq!(
            hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn other_strings_are_not_tokens() {
        assert!(!looks_like_token("eyJhbGciOiJSUzI1NiJ9.e30.sig"));
        assert!(!looks_like_token("vireo_short"));
        assert!(!looks_like_token(&format!("vireo_{}", "!".repeat(43))));
    }

    #[test]
    fn names_are_checked() {
        assert!(valid_name("ci-deployer").is_ok());
        assert!(valid_name("alice@example.com").is_ok());
        assert!(valid_name("").is_err());
        assert!(valid_name("Alice").unwrap_err().contains("start with"));
        assert!(valid_name("a b").unwrap_err().contains("' '"));
        assert!(valid_name(&"a".repeat(65)).is_err());
    }
}
