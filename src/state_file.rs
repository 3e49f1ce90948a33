//! State files: the small JSON documents collectors keep across restarts
//! in the state directory (the log reader's position, amcheck's pass, the
//! backup collector's last verify and restore test). Written atomically
//! (a temporary file renamed over the old one), so a crash leaves the old
//! file or the new one, never half of one.

use std::path::Path;

use serde::de::DeserializeOwned;

/// Reads `path` as JSON: `Ok(None)` when it does not exist, `Err` (one
/// line) when it cannot be read or parsed. The caller says in the log what
/// it does instead.
pub fn read<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, String> {
    match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| e.to_string()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}

/// Writes `bytes` to `path` atomically, creating its directory.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_written_file_reads_back_and_a_missing_or_broken_one_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("deeper/state.json");
        assert_eq!(read::<Vec<u32>>(&path), Ok(None));
        write_atomically(&path, b"[1,2]").unwrap();
        assert_eq!(read::<Vec<u32>>(&path), Ok(Some(vec![1, 2])));
        assert!(!path.with_extension("tmp").exists());
        std::fs::write(&path, b"[1,").unwrap();
        assert!(read::<Vec<u32>>(&path).is_err());
    }
}
