//! Reading a file that a user, an operator or a policy repository named: regular files
//! only, and never more than a stated number of bytes. A FIFO, a device or a symbolic
//! link to one (`/dev/zero`) is refused before a byte is read, and opening never
//! blocks. Every reader of outside files goes through here (policies, configurations,
//! traces, `.scaletest.ron`, plugins, credentials); standard input has its own capped
//! reader.

use std::fmt;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Why a file was not read.
#[derive(Debug)]
pub enum ReadError {
    /// Not a regular file: what it is instead.
    NotRegular(&'static str),
    /// Larger than allowed.
    TooLarge {
        size: u64,
        max: u64,
    },
    /// Not UTF-8, where text was wanted: the offset of the first bad byte.
    NotUtf8(usize),
    Io(std::io::Error),
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::NotRegular(kind) => write!(f, "it is {kind}, not a regular file"),
            ReadError::TooLarge { size, max } => write!(
                f,
                "it is {} and at most {} is read",
                show_bytes(*size),
                show_bytes(*max)
            ),
            ReadError::NotUtf8(at) => write!(f, "it is not UTF-8 text (byte {at})"),
            ReadError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for ReadError {}

/// `1 MiB`, `64 KiB`, `17 bytes`.
pub fn show_bytes(n: u64) -> String {
    if n >= 1 << 20 && n.is_multiple_of(1 << 20) {
        format!("{} MiB", n >> 20)
    } else if n >= 1 << 20 {
        format!("{:.1} MiB", n as f64 / 1048576.0)
    } else if n >= 1 << 10 && n.is_multiple_of(1 << 10) {
        format!("{} KiB", n >> 10)
    } else {
        format!("{n} bytes")
    }
}

fn kind_of(meta: &std::fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    }
}

/// The bytes of a regular file of at most `max` bytes. Links are followed, and what
/// they lead to is judged.
pub fn read_bytes(path: &Path, max: u64) -> Result<Vec<u8>, ReadError> {
    // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(ReadError::Io)?;
    let meta = file.metadata().map_err(ReadError::Io)?;
    if !meta.is_file() {
        return Err(ReadError::NotRegular(kind_of(&meta)));
    }
    if meta.len() > max {
        return Err(ReadError::TooLarge {
            size: meta.len(),
            max,
        });
    }
    // The file may grow between the check and the read: never read past the cap.
    read_all(file, max)
}

/// The text of a regular UTF-8 file of at most `max` bytes.
pub fn read_text(path: &Path, max: u64) -> Result<String, ReadError> {
    String::from_utf8(read_bytes(path, max)?)
        .map_err(|e| ReadError::NotUtf8(e.utf8_error().valid_up_to()))
}

/// All of a reader (standard input) up to `max` bytes; more is an error, never a
/// silent truncation.
pub fn read_all(reader: impl Read, max: u64) -> Result<Vec<u8>, ReadError> {
    let mut bytes = Vec::new();
    reader
        .take(max.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(ReadError::Io)?;
    if bytes.len() as u64 > max {
        return Err(ReadError::TooLarge {
            size: bytes.len() as u64,
            max,
        });
    }
    Ok(bytes)
}

/// Size caps of the files policyctl reads, each far above any real file of its kind.
pub mod caps {
    /// A `.scale` file.
    pub const POLICY: u64 = 1 << 20;
    /// A service or actuator configuration (RON).
    pub const CONFIG: u64 = 1 << 20;
    /// A `.scaletest.ron` file.
    pub const SCALETEST: u64 = 16 << 20;
    /// A CSV trace (a month of 15 s samples of 20 metrics is about 30 MiB).
    pub const TRACE: u64 = 256 << 20;
    /// A WebAssembly plugin.
    pub const PLUGIN: u64 = 64 << 20;
    /// A secret: a token, a header value, a CA bundle.
    pub const SECRET: u64 = 1 << 20;
    /// A YAML manifest, or a directory's manifests one at a time (`import`).
    pub const MANIFEST: u64 = 16 << 20;
    /// The service's state file.
    pub const STATE: u64 = 256 << 20;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_and_fifos_are_refused_before_reading() {
        assert!(matches!(
            read_bytes(Path::new("/dev/zero"), 10),
            Err(ReadError::NotRegular("a character device"))
        ));
        assert!(matches!(
            read_bytes(Path::new("/"), 10),
            Err(ReadError::NotRegular("a directory"))
        ));
    }

    #[test]
    fn standard_input_over_the_cap_is_an_error() {
        assert_eq!(read_all(&b"abc"[..], 3).ok(), Some(b"abc".to_vec()));
        assert!(matches!(
            read_all(&b"abcd"[..], 3),
            Err(ReadError::TooLarge { max: 3, .. })
        ));
    }

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(show_bytes(1 << 20), "1 MiB");
        assert_eq!(show_bytes(64 << 10), "64 KiB");
        assert_eq!(show_bytes(17), "17 bytes");
    }
}
