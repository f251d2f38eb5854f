//! The local data folder: the database, export files and the token secret, readable by their
//! owner only.

use std::path::Path;

use anyhow::Context as _;

/// Creates the data folder if it is missing and makes it the owner's alone (0700), so nothing
/// in it can be read by another user whatever its own mode.
pub fn prepare(data_dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating the data folder {}", data_dir.display()))?;
    owner_only(data_dir, 0o700)
}

/// Makes the database files the owner's alone (0600): the database and SQLite's journal files
/// beside it, when they exist.
pub fn protect_database(db: &Path) -> anyhow::Result<()> {
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut name = db.as_os_str().to_owned();
        name.push(suffix);
        let path = std::path::PathBuf::from(name);
        if path.exists() {
            owner_only(&path, 0o600)?;
        }
    }
    Ok(())
}

/// The signing secret of this data folder, made on first use (32 random bytes, hex) and kept
/// in the folder with mode 0600. An existing secret that others can read, or that is too
/// short or too regular to be a secret, is refused with what to do about it.
pub fn load_or_create_secret(data_dir: &Path) -> anyhow::Result<Vec<u8>> {
    prepare(data_dir)?;
    let path = data_dir.join("token-secret");
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            check_private(&path)?;
            let secret = text.trim();
            check_strength(secret).map_err(|why| {
                anyhow::anyhow!(
                    "{} {why}; delete it to make a new one (tokens signed with it stop working)",
                    path.display()
                )
            })?;
            Ok(secret.as_bytes().to_vec())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut bytes = [0u8; 32];
            getrandom::fill(&mut bytes)
                .map_err(|e| anyhow::anyhow!("the OS random source failed: {e}"))?;
            let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            write_private(&path, &hex)?;
            Ok(hex.into_bytes())
        }
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// The launch-token keys of this data folder, the current one first: `launch-key` (a P-256
/// key in PKCS#8, base64, made on first use, mode 0600) and, after a rotation,
/// `launch-key.previous`, still published so that tokens it signed just before keep checking.
pub fn load_or_create_launch_keys(data_dir: &Path) -> anyhow::Result<Vec<Vec<u8>>> {
    use base64::Engine as _;
    prepare(data_dir)?;
    let current = data_dir.join("launch-key");
    if !current.exists() {
        let key = keypool::launch::LocalSigner::generate_key()?;
        write_private(
            &current,
            &base64::engine::general_purpose::STANDARD.encode(key),
        )?;
    }
    let mut keys = Vec::new();
    for path in [current, data_dir.join("launch-key.previous")] {
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        check_private(&path)?;
        let key = base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .with_context(|| format!("{} is not a launch key; delete it", path.display()))?;
        keys.push(key);
    }
    Ok(keys)
}

/// Starts a launch-key rotation: the current key becomes the previous one (published beside
/// the new one, which signs from the next start of the server) and a new key is made.
pub fn rotate_launch_key(data_dir: &Path) -> anyhow::Result<()> {
    load_or_create_launch_keys(data_dir)?;
    let (current, previous) = (
        data_dir.join("launch-key"),
        data_dir.join("launch-key.previous"),
    );
    std::fs::rename(&current, &previous)
        .with_context(|| format!("moving {} aside", current.display()))?;
    load_or_create_launch_keys(data_dir)?;
    Ok(())
}

/// At least 64 characters and about 256 bits of entropy by the text's own symbol frequencies
/// (a fresh secret has 64 hex digits, near 4 bits each; 64 times one character has none).
fn check_strength(secret: &str) -> Result<(), String> {
    const MIN_CHARS: usize = 64;
    const MIN_BITS: f64 = 192.0;
    let chars: Vec<char> = secret.chars().collect();
    if chars.len() < MIN_CHARS {
        return Err(format!(
            "is too short ({} characters, at least {MIN_CHARS})",
            chars.len()
        ));
    }
    let mut counts = std::collections::HashMap::new();
    for c in &chars {
        *counts.entry(*c).or_insert(0usize) += 1;
    }
    let n = chars.len() as f64;
    let per_char: f64 = counts
        .values()
        .map(|&k| {
            let p = k as f64 / n;
            -p * p.log2()
        })
        .sum();
    if per_char * n < MIN_BITS {
        return Err(format!(
            "is too regular to be a secret (about {:.0} bits, at least {MIN_BITS:.0})",
            per_char * n
        ));
    }
    Ok(())
}

#[cfg(unix)]
fn check_private(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(path)
        .with_context(|| format!("reading {}", path.display()))?
        .permissions()
        .mode();
    anyhow::ensure!(
        mode & 0o077 == 0,
        "{} can be read by other users (mode {:o}); run `chmod 600 {}` or delete it to make a new one",
        path.display(),
        mode & 0o777,
        path.display()
    );
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_: &Path) -> anyhow::Result<()> {
    Ok(())
}

#[cfg(unix)]
fn owner_only(path: &Path, mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("making {} private", path.display()))
}

#[cfg(not(unix))]
fn owner_only(_: &Path, _: u32) -> anyhow::Result<()> {
    Ok(())
}

fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(text.as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_secrets_pass_and_weak_ones_do_not() {
        let fresh: String = (0..32u8)
            .map(|i| format!("{:02x}", i.wrapping_mul(97).wrapping_add(13)))
            .collect();
        assert_eq!(check_strength(&fresh), Ok(()));
        assert!(check_strength(&"a".repeat(64)).is_err());
        assert!(check_strength(&"ab".repeat(64)).is_err());
        assert!(check_strength("0123456789abcdef").is_err());
    }
}
