//! Reading an inventory file, bounded: regular files only (a FIFO or `/dev/zero` would block or
//! never end), at most [`MAX_INVENTORY_BYTES`], and UTF-8 checked with the first bad byte located
//! at file:line:column.

use std::io::Read;
use std::path::Path;

use super::error::{Diagnostic, ErrorKind, InventoryError, Location};

/// The largest inventory file read (4 MiB): a 5,000-host inventory written out host by host is
/// under 1 MiB; anything bigger is a wrong file, and reading it whole would only cost memory.
pub const MAX_INVENTORY_BYTES: u64 = 4 * 1024 * 1024;

/// The inventory's text, or a located diagnostic saying why it cannot be used.
pub(super) fn read_inventory(path: &Path) -> Result<String, InventoryError> {
    // stat before open: opening a FIFO without a writer would block forever.
    let metadata = std::fs::metadata(path).map_err(|e| InventoryError::io(path, &e))?;
    if !metadata.is_file() {
        return Err(refused(
            path,
            format!(
                "cannot read inventory `{}`: it is {}, not a regular file",
                path.display(),
                file_kind(&metadata)
            ),
        ));
    }
    let too_big = || {
        refused(
            path,
            format!(
                "cannot read inventory `{}`: it is larger than the {} MiB an inventory may be",
                path.display(),
                MAX_INVENTORY_BYTES / (1024 * 1024)
            ),
        )
    };
    if metadata.len() > MAX_INVENTORY_BYTES {
        return Err(too_big());
    }
    let file = std::fs::File::open(path).map_err(|e| InventoryError::io(path, &e))?;
    let mut bytes = Vec::with_capacity(metadata.len() as usize);
    // The file may grow between the stat and the read: never read past the cap.
    file.take(MAX_INVENTORY_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| InventoryError::io(path, &e))?;
    if bytes.len() as u64 > MAX_INVENTORY_BYTES {
        return Err(too_big());
    }
    String::from_utf8(bytes).map_err(|e| not_utf8(path, e.as_bytes(), e.utf8_error()))
}

fn refused(path: &Path, message: String) -> InventoryError {
    InventoryError::single(Diagnostic {
        kind: ErrorKind::Io,
        message,
        path: path.to_path_buf(),
        location: None,
        help: Some(
            "pass the path of an inventory TOML file, e.g. `inventory/pi-cluster.toml`".into(),
        ),
    })
}

fn file_kind(metadata: &std::fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let kind = metadata.file_type();
    if kind.is_dir() {
        "a folder"
    } else if kind.is_fifo() {
        "a FIFO (named pipe)"
    } else if kind.is_char_device() {
        "a character device"
    } else if kind.is_block_device() {
        "a block device"
    } else if kind.is_socket() {
        "a socket"
    } else {
        "a special file"
    }
}

/// Invalid UTF-8, located at the first bad byte: line and column count the valid text before it.
fn not_utf8(path: &Path, bytes: &[u8], error: std::str::Utf8Error) -> InventoryError {
    let at = error.valid_up_to();
    let valid = std::str::from_utf8(&bytes[..at]).expect("valid up to here");
    let line_start = valid.rfind('\n').map_or(0, |i| i + 1);
    let line_end = bytes[at..]
        .iter()
        .position(|&b| b == b'\n')
        .map_or(bytes.len(), |i| at + i);
    let source_line = String::from_utf8_lossy(&bytes[line_start..line_end])
        .trim_end_matches('\r')
        .replace('\t', " ");
    InventoryError::single(Diagnostic {
        kind: ErrorKind::Syntax,
        message: format!("invalid UTF-8: byte 0x{:02x} at offset {at}", bytes[at]),
        path: path.to_path_buf(),
        location: Some(Location {
            line: valid.matches('\n').count() + 1,
            column: valid[line_start..].chars().count() + 1,
            source_line,
            caret_len: 1,
        }),
        help: Some("an inventory is UTF-8 text: re-save the file as UTF-8".into()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn only(err: &InventoryError) -> &Diagnostic {
        assert_eq!(err.diagnostics().len(), 1, "{err}");
        &err.diagnostics()[0]
    }

    #[test]
    fn the_first_invalid_byte_is_located() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("inv.toml");
        std::fs::write(&path, b"[cluster]\nname = \"\xc3\xa9t\xff\xfe\"\n").unwrap();
        let err = read_inventory(&path).unwrap_err();
        let diagnostic = only(&err);
        let location = diagnostic.location.as_ref().unwrap();
        assert_eq!((location.line, location.column), (2, 11), "{err}");
        assert!(diagnostic.message.contains("0xff"), "{err}");
        assert!(err.to_string().contains("inv.toml:2:11"), "{err}");
    }

    #[test]
    fn special_files_are_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo.toml");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        let err = read_inventory(&fifo).unwrap_err();
        assert!(err.to_string().contains("a FIFO"), "{err}");
        let err = read_inventory(Path::new("/dev/zero")).unwrap_err();
        assert!(err.to_string().contains("a character device"), "{err}");
        let err = read_inventory(dir.path()).unwrap_err();
        assert!(err.to_string().contains("a folder"), "{err}");
    }

    #[test]
    fn files_over_the_cap_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.toml");
        let file = std::fs::File::create(&path).unwrap();
        file.set_len(MAX_INVENTORY_BYTES + 1).unwrap();
        let err = read_inventory(&path).unwrap_err();
        assert!(err.to_string().contains("larger than the 4 MiB"), "{err}");
        file.set_len(MAX_INVENTORY_BYTES).unwrap();
        // At the cap it is read (NUL bytes are valid UTF-8; TOML refuses them later).
        assert_eq!(
            read_inventory(&path).unwrap().len() as u64,
            MAX_INVENTORY_BYTES
        );
    }
}
