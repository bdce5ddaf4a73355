//! The state file: what must survive a restart (scale events, stabilisation history,
//! window starts, the last known replica count, manual overrides), written atomically:
//! a temporary file beside it, fsync, rename, fsync of the directory. A reader never
//! sees half a file, whenever the process dies.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::engine::State;

/// Bumped when the layout changes incompatibly.
pub const VERSION: u32 = 1;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub version: u32,
    pub saved_at: Option<DateTime<Utc>>,
    pub policies: BTreeMap<String, PolicyState>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PolicyState {
    pub state: State,
    /// The replica count last observed or applied.
    #[serde(default)]
    pub replicas: Option<u32>,
    #[serde(default)]
    /// Boxed: few policies have one, and every policy keeps its state.
    pub manual: Option<Box<Override>>,
    /// When the policy last ticked.
    #[serde(default)]
    pub ticked_at: Option<DateTime<Utc>>,
    /// The latest decisions and override changes (newest last, at most
    /// `history::MAX_RECORDS`).
    #[serde(default)]
    pub records: std::collections::VecDeque<super::history::Record>,
}

/// A manual override, as a dashboard sets it: this count, until then, and who and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Override {
    pub replicas: u32,
    /// `None`: until deleted.
    pub until: Option<DateTime<Utc>>,
    pub set_at: DateTime<Utc>,
    #[serde(default)]
    pub reason: Option<String>,
    /// The request's `author`, else the name of the token that set it.
    #[serde(default)]
    pub author: Option<String>,
    /// Set outside the policy's bounds, on purpose (`"force": true`).
    #[serde(default)]
    pub forced: bool,
}

impl Override {
    pub fn active(&self, now: DateTime<Utc>) -> bool {
        self.until.is_none_or(|u| now < u)
    }
}

/// Read the state file. A missing file is an empty state; a file that cannot be parsed
/// is moved aside (never overwritten) and reported.
pub fn load(path: &Path) -> Result<(Snapshot, Option<String>), String> {
    let text = match crate::input::read_text(path, crate::input::caps::STATE) {
        Ok(text) => text,
        Err(crate::input::ReadError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok((Snapshot::default(), None));
        }
        Err(e) => return Err(format!("cannot read state file `{}`: {e}", path.display())),
    };
    match serde_json::from_str::<Snapshot>(&text) {
        Ok(s) if s.version == VERSION => Ok((s, None)),
        Ok(s) => {
            let aside = set_aside(path)?;
            Ok((
                Snapshot::default(),
                Some(format!(
                    "state file `{}` has version {}, this policyctl writes {VERSION}; moved to `{}`, starting with empty state",
                    path.display(),
                    s.version,
                    aside.display()
                )),
            ))
        }
        Err(e) => {
            let aside = set_aside(path)?;
            Ok((
                Snapshot::default(),
                Some(format!(
                    "state file `{}` is not valid ({e}); moved to `{}`, starting with empty state",
                    path.display(),
                    aside.display()
                )),
            ))
        }
    }
}

fn set_aside(path: &Path) -> Result<PathBuf, String> {
    let mut aside = path.as_os_str().to_owned();
    aside.push(format!(".bad-{}", Utc::now().format("%Y%m%dT%H%M%S")));
    let aside = PathBuf::from(aside);
    std::fs::rename(path, &aside)
        .map_err(|e| format!("cannot move bad state file `{}` aside: {e}", path.display()))?;
    Ok(aside)
}

/// Write `snapshot` (a `Snapshot`, or what serialises as one) to `path` atomically,
/// serialised straight into the file: 100,000 policies' states are never one buffer.
pub fn save(path: &Path, snapshot: &impl Serialize) -> std::io::Result<()> {
    write_atomically_with(path, |f| {
        let mut out = std::io::BufWriter::with_capacity(64 * 1024, f);
        serde_json::to_writer(&mut out, snapshot).map_err(std::io::Error::other)?;
        out.flush()
    })
}

pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_atomically_with(path, |f| f.write_all(bytes))
}

/// A temporary file beside `path`, filled by `write`, synced, renamed over `path`.
fn write_atomically_with(
    path: &Path,
    write: impl FnOnce(&mut std::fs::File) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "state".into());
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        write(&mut f)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)?;
        // The rename itself must reach the disk.
        std::fs::File::open(&dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_round_trips_and_a_bad_file_is_set_aside() {
        let dir = std::env::temp_dir().join(format!("policyctl-persist-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("state.json");
        let mut snapshot = Snapshot {
            version: VERSION,
            saved_at: Some(Utc::now()),
            policies: BTreeMap::new(),
        };
        snapshot.policies.insert(
            "web".into(),
            PolicyState {
                replicas: Some(3),
                manual: Some(Box::new(Override {
                    replicas: 5,
                    until: None,
                    set_at: Utc::now(),
                    reason: Some("launch".into()),
                    author: Some("alice".into()),
                    forced: false,
                })),
                ..PolicyState::default()
            },
        );
        assert!(save(&path, &snapshot).is_ok());
        assert_eq!(load(&path).ok().map(|l| l.0), Some(snapshot));

        assert!(std::fs::write(&path, "{ half").is_ok());
        let Ok((empty, Some(warning))) = load(&path) else {
            unreachable!("a bad state file was not reported")
        };
        assert_eq!(empty, Snapshot::default());
        assert!(warning.contains("moved to"), "{warning}");
        assert!(!path.exists());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
