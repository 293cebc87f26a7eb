//! The pid file and the scheduler file.

use std::io::Write;
use std::path::{Path, PathBuf};

/// Removes a file when dropped (best effort). Hold it for the life of the
/// process and drop it on the way out (not skipped by `process::exit`).
#[derive(Debug)]
pub struct FileGuard {
    path: PathBuf,
}

impl FileGuard {
    /// Remove `path` when the guard is dropped.
    pub fn new(path: impl Into<PathBuf>) -> FileGuard {
        FileGuard { path: path.into() }
    }

    /// The guarded path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for FileGuard {
    fn drop(&mut self) {
        match std::fs::remove_file(&self.path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!("Could not remove {}: {e}", self.path.display()),
        }
    }
}

/// Write this process's PID to `path`; the returned guard removes the file.
pub fn write_pid_file(path: impl AsRef<Path>) -> std::io::Result<FileGuard> {
    let path = path.as_ref();
    std::fs::write(path, std::process::id().to_string())?;
    Ok(FileGuard::new(path))
}

/// Atomically write the scheduler file: `info` as indented JSON, written to a
/// temporary file in the same directory and renamed over `path`, so readers
/// (`Client(scheduler_file=...)`, workers) never see a partial file.
///
/// `info` is the scheduler's identity, e.g. [`scheduler_identity`].
pub fn write_scheduler_file(
    path: impl AsRef<Path>,
    info: &serde_json::Value,
) -> std::io::Result<()> {
    let path = path.as_ref();
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path.file_name().ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "scheduler file path has no file name",
        )
    })?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".{}.tmp", std::process::id()));
    let tmp = dir.join(tmp_name);
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        serde_json::to_writer_pretty(&mut f, info)?;
        f.write_all(b"\n")?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// The identity JSON the Python scheduler writes to `--scheduler-file`:
/// `{"type": "Scheduler", "id", "address", "services": {"dashboard": port},
/// "started", "n_workers": 0, "total_threads": 0, "total_memory": 0, "workers": {}}`.
pub fn scheduler_identity(
    id: &str,
    address: &str,
    dashboard_port: Option<u16>,
    started: f64,
) -> serde_json::Value {
    let mut services = serde_json::Map::new();
    if let Some(port) = dashboard_port {
        services.insert("dashboard".into(), port.into());
    }
    serde_json::json!({
        "type": "Scheduler",
        "id": id,
        "address": address,
        "services": services,
        "started": started,
        "n_workers": 0,
        "total_threads": 0,
        "total_memory": 0,
        "workers": {},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmpdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("dask-sched-files-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn pid_file_is_written_and_removed() {
        let d = tmpdir("pid");
        let p = d.join("sched.pid");
        {
            let _g = write_pid_file(&p).unwrap();
            assert_eq!(
                std::fs::read_to_string(&p).unwrap(),
                std::process::id().to_string()
            );
        }
        assert!(!p.exists());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn scheduler_file_is_atomic_json() {
        let d = tmpdir("sf");
        let p = d.join("scheduler.json");
        std::fs::write(&p, "old").unwrap();
        let info = scheduler_identity("Scheduler-1", "tcp://10.0.0.1:8786", Some(8787), 1.5);
        write_scheduler_file(&p, &info).unwrap();
        let back: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
        assert_eq!(back, info);
        assert_eq!(back["services"]["dashboard"], 8787);
        assert_eq!(back["type"], "Scheduler");
        let leftovers: Vec<_> = std::fs::read_dir(&d).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "temporary file left behind");
        drop(FileGuard::new(&p));
        assert!(!p.exists());
        assert!(write_scheduler_file(d.join("missing-dir/x.json"), &info).is_err());
        std::fs::remove_dir_all(&d).unwrap();
    }
}
