//! One helper process: spawn, hello handshake, framed request/reply, stderr
//! forwarding and post-mortem reports.

use std::collections::VecDeque;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStderr, ChildStdin, ChildStdout, Command};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::msgpack;

/// The helper script, shipped inside the binary and run as
/// `python -u -c <BOOTSTRAP> <pieces of HELPER_SOURCE>...`.
pub(crate) const HELPER_SOURCE: &str = include_str!("helper.py");

/// Linux caps one argument at 128 KiB (`MAX_ARG_STRLEN`), which the script
/// is close to; it travels as arguments of at most this many bytes, which
/// [`BOOTSTRAP`] joins and runs (no file on disk: a container's root file
/// system may be read-only).
const SCRIPT_PIECE: usize = 64 * 1024;

/// Joins the script's pieces from `sys.argv`, leaves `sys.argv` as a plain
/// `-c` script sees it, and runs the script as `__main__`.
const BOOTSTRAP: &str = "import sys\n\
    _helper_source = ''.join(sys.argv[1:])\n\
    del sys.argv[1:]\n\
    exec(compile(_helper_source, '<string>', 'exec'))\n";

/// [`HELPER_SOURCE`] in pieces of at most [`SCRIPT_PIECE`] bytes, each
/// ending at a character boundary.
fn script_pieces() -> Vec<&'static str> {
    let mut pieces = Vec::new();
    let mut rest = HELPER_SOURCE;
    while !rest.is_empty() {
        let mut end = rest.len().min(SCRIPT_PIECE);
        while !rest.is_char_boundary(end) {
            end -= 1;
        }
        let (piece, tail) = rest.split_at(end);
        pieces.push(piece);
        rest = tail;
    }
    pieces
}

/// How long a fresh helper may take to import dask/distributed and say hello.
pub(crate) const HELLO_TIMEOUT: Duration = Duration::from_secs(120);

/// Largest reply frame accepted from a helper (a sanity bound, not a quota).
const MAX_FRAME: u64 = 1 << 40;

/// Frames up to this size are read into a buffer of exactly their size.
const EXACT_FRAME_MAX: u64 = 256 << 20;

/// stderr lines kept per helper for error reports.
const STDERR_TAIL: usize = 20;

/// Longest stderr line forwarded to the log; the rest is cut.
const MAX_LINE: usize = 16 * 1024;

/// What a helper process is started as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// The pool helper in this slot: one request at a time (graphs and
    /// other one-off work).
    Materializer(usize),
    /// The long-lived process that runs `run_on_scheduler` functions.
    FunctionRunner,
}

impl Role {
    /// The `slot` its log lines carry: the pool slot, or `runner`.
    fn label(self) -> String {
        match self {
            Role::Materializer(slot) => slot.to_string(),
            Role::FunctionRunner => "runner".to_string(),
        }
    }
}

/// Write one length-prefixed frame and flush it.
pub(crate) async fn write_frame(stdin: &mut ChildStdin, body: &[u8]) -> io::Result<()> {
    stdin.write_all(&(body.len() as u64).to_le_bytes()).await?;
    stdin.write_all(body).await?;
    stdin.flush().await
}

/// What a helper reports when it starts successfully.
#[derive(Debug, Clone)]
pub(crate) struct Hello {
    /// `sys.executable` of the helper.
    pub python: String,
    /// msgpack encoding of `distributed.versions.get_versions()`.
    pub versions: Bytes,
    /// The pid the Python process reports (differs from the child's pid when
    /// the configured "python" is a wrapper that does not `exec`).
    pub python_pid: Option<i64>,
}

type Tail = Arc<Mutex<VecDeque<String>>>;

/// A running helper that has said hello.
pub(crate) struct Helper {
    child: Child,
    /// `None` once taken by [`Helper::take_stdin`].
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    pid: u32,
    python: PathBuf,
    tail: Tail,
    stderr_task: JoinHandle<()>,
    pub hello: Hello,
}

impl Helper {
    /// Start the helper script (see [`BOOTSTRAP`]) as a graph materializer and wait for
    /// its hello. The error is a human-readable reason naming what is wrong.
    pub(crate) async fn spawn(python: &Path, slot: usize) -> Result<Helper, String> {
        Self::spawn_as(python, Role::Materializer(slot)).await
    }

    /// Start the helper script in `role` and wait for its hello.
    pub(crate) async fn spawn_as(python: &Path, role: Role) -> Result<Helper, String> {
        let mut command = Command::new(python);
        if role == Role::FunctionRunner {
            command.env("DASK_SCHEDULER_HELPER_ROLE", "function-runner");
        }
        let mut child = command
            .arg("-u")
            .arg("-c")
            .arg(BOOTSTRAP)
            .args(script_pieces())
            // Lets code tell it is being unpickled in a scheduler-side helper.
            .env("DASK_SCHEDULER_MATERIALIZER", "1")
            // Per-graph phase timings are logged at debug level.
            .env(
                "DASK_SCHEDULER_MATERIALIZER_LOG_LEVEL",
                if tracing::enabled!(target: "materializer", tracing::Level::DEBUG) {
                    "DEBUG"
                } else {
                    "INFO"
                },
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot execute Python interpreter {python:?}: {e}"))?;
        let pid = child.id().unwrap_or(0);
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(format!("helper {python:?} started without stdio pipes"));
        };
        let tail: Tail = Arc::default();
        let stderr_task = tokio::spawn(forward_stderr(stderr, pid, role.label(), tail.clone()));
        let mut helper = Helper {
            child,
            stdin: Some(stdin),
            stdout: BufReader::with_capacity(1 << 16, stdout),
            pid,
            python: python.to_path_buf(),
            tail,
            stderr_task,
            hello: Hello {
                python: String::new(),
                versions: Bytes::new(),
                python_pid: None,
            },
        };
        let frame = tokio::time::timeout(HELLO_TIMEOUT, read_frame(&mut helper.stdout)).await;
        let outcome = match frame {
            Err(_) => Err(format!(
                "Python helper {python:?} did not start within {HELLO_TIMEOUT:?}{}",
                helper.stop_and_describe().await
            )),
            Ok(Err(e)) => Err(format!(
                "Python helper {python:?} failed before saying hello ({}){}",
                describe_io(&e),
                helper.stop_and_describe().await
            )),
            Ok(Ok(frame)) => parse_hello(&frame, python),
        };
        match outcome {
            Ok(hello) => {
                helper.hello = hello;
                Ok(helper)
            }
            Err(reason) => {
                helper.stop().await;
                Err(reason)
            }
        }
    }

    /// OS process id of the helper.
    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    /// Send one request body and read its reply body. Partial frames the
    /// helper streams before its reply (`{"partial": true, ...}`) go to
    /// `chunks`; without a `chunks` sink they are a protocol error
    /// ([`io::ErrorKind::InvalidData`]).
    pub(crate) async fn roundtrip(
        &mut self,
        body: &[u8],
        chunks: Option<&mpsc::UnboundedSender<Bytes>>,
    ) -> io::Result<Bytes> {
        let stdin = self.stdin.as_mut().ok_or_else(|| {
            io::Error::new(io::ErrorKind::BrokenPipe, "the helper's input was taken")
        })?;
        write_frame(stdin, body).await?;
        loop {
            let frame = Bytes::from(read_frame(&mut self.stdout).await?);
            if !msgpack::is_partial(&frame) {
                return Ok(frame);
            }
            match chunks {
                // The requester may have gone away: keep draining until the
                // reply so the helper stays in step.
                Some(tx) => {
                    let _ = tx.send(frame);
                }
                None => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "helper streamed partial replies to a request that did not ask for them",
                    ))
                }
            }
        }
    }

    /// Hand the request side to a writer of its own, for a helper that
    /// answers requests out of order (the function runner); the replies are
    /// then read with [`Helper::read_reply`].
    pub(crate) fn take_stdin(&mut self) -> Option<ChildStdin> {
        self.stdin.take()
    }

    /// The next frame the helper writes (cancel-safe only between frames).
    pub(crate) async fn read_reply(&mut self) -> io::Result<Bytes> {
        read_frame(&mut self.stdout).await.map(Bytes::from)
    }

    /// Resident memory of the helper process in bytes (Linux; `None` elsewhere
    /// or when it cannot be read).
    pub(crate) fn rss_bytes(&self) -> Option<u64> {
        let pid = self
            .hello
            .python_pid
            .and_then(|p| u32::try_from(p).ok())
            .unwrap_or(self.pid);
        rss_of(pid)
    }

    /// Wait until the process exits on its own (cancel-safe).
    pub(crate) async fn exited(&mut self) -> String {
        match self.child.wait().await {
            Ok(status) => describe_status(status),
            Err(e) => format!("could not be waited for ({e})"),
        }
    }

    /// Kill the helper and reap it.
    pub(crate) async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
        self.stderr_task.abort();
    }

    /// After a failed exchange: how the process ended, plus its last stderr
    /// lines, as a sentence fragment starting with "; ".
    async fn stop_and_describe(&mut self) -> String {
        // Give a dying process a moment to finish exiting on its own so that
        // its real exit status (not our SIGKILL) is reported.
        let status = match tokio::time::timeout(Duration::from_secs(2), self.child.wait()).await {
            Ok(Ok(status)) => describe_status(status),
            Ok(Err(e)) => format!("could not be waited for ({e})"),
            Err(_) => {
                let _ = self.child.start_kill();
                let _ = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
                "was still running and has been killed".to_string()
            }
        };
        // Let the stderr forwarder drain what the process wrote last.
        if !self.stderr_task.is_finished() {
            let _ = tokio::time::timeout(Duration::from_secs(1), &mut self.stderr_task).await;
        }
        format!(
            "; the process (pid {}) {status}{}",
            self.pid,
            stderr_tail(&self.tail)
        )
    }

    /// Report for a helper that failed while working on a request.
    pub(crate) async fn death_report(self, cause: &io::Error) -> String {
        self.failure_report("graph materializer", "materializing this graph", cause)
            .await
    }

    /// "the Python `<what>` process (python) failed while `<doing>`
    /// (cause); the process (pid) exited with ..., last stderr lines".
    pub(crate) async fn failure_report(
        mut self,
        what: &str,
        doing: &str,
        cause: &io::Error,
    ) -> String {
        let how = self.stop_and_describe().await;
        let python = std::mem::take(&mut self.python);
        self.stop().await;
        format!(
            "the Python {what} process ({python:?}) failed while {doing} ({}){how}",
            describe_io(cause)
        )
    }
}

/// Resident set size of a process, from `VmRSS` in `/proc/<pid>/status`
/// (Linux).
fn rss_of(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

fn describe_io(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::UnexpectedEof => "it closed its output".into(),
        io::ErrorKind::BrokenPipe => "it closed its input".into(),
        _ => e.to_string(),
    }
}

fn describe_status(status: ExitStatus) -> String {
    if let Some(code) = status.code() {
        return format!("exited with status {code}");
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(sig) = status.signal() {
            let name = match sig {
                6 => " (SIGABRT)",
                9 => " (SIGKILL, e.g. the out-of-memory killer)",
                11 => " (SIGSEGV)",
                15 => " (SIGTERM)",
                _ => "",
            };
            return format!("was killed by signal {sig}{name}");
        }
    }
    format!("ended ({status})")
}

fn stderr_tail(tail: &Tail) -> String {
    let lines = match tail.lock() {
        Ok(t) => t.iter().cloned().collect::<Vec<_>>(),
        Err(_) => Vec::new(),
    };
    if lines.is_empty() {
        String::new()
    } else {
        format!("; last stderr lines:\n{}", lines.join("\n"))
    }
}

fn parse_hello(frame: &[u8], python: &Path) -> Result<Hello, String> {
    let field = |name: &str| msgpack::map_get(frame, name).ok().flatten();
    let text = |name: &str| field(name).and_then(msgpack::as_str).map(str::to_owned);
    if text("op").as_deref() != Some("hello") {
        return Err(format!(
            "Python helper {python:?} sent a malformed hello ({} bytes)",
            frame.len()
        ));
    }
    match text("status").as_deref() {
        Some("ok") => {
            let versions = field("versions")
                .ok_or_else(|| format!("Python helper {python:?} sent a hello without versions"))?;
            Ok(Hello {
                python: text("python").unwrap_or_else(|| python.display().to_string()),
                versions: Bytes::copy_from_slice(versions),
                python_pid: field("pid").and_then(msgpack::as_int),
            })
        }
        _ => {
            Err(text("message")
                .unwrap_or_else(|| format!("Python helper {python:?} failed to start")))
        }
    }
}

/// Read one `u64 LE length + body` frame.
async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> io::Result<Vec<u8>> {
    let mut len = [0u8; 8];
    r.read_exact(&mut len).await?;
    let n = u64::from_le_bytes(len);
    if n > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("helper sent a frame of {n} bytes"),
        ));
    }
    if n <= EXACT_FRAME_MAX {
        // Read into a buffer of exactly the frame's size (the reply is
        // decoded in place and dropped once its tasks are parsed).
        let mut body = vec![0u8; n as usize];
        r.read_exact(&mut body).await.map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                io::Error::new(e.kind(), "helper closed its output mid-message")
            } else {
                e
            }
        })?;
        return Ok(body);
    }
    // A huge (or corrupt) length: grow with the data actually received
    // rather than trusting it.
    let mut body = Vec::with_capacity(1 << 20);
    r.take(n).read_to_end(&mut body).await?;
    if body.len() as u64 != n {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "helper closed its output mid-message",
        ));
    }
    Ok(body)
}

/// Forward helper stderr to `tracing` (target "materializer"), keeping the
/// last lines for error reports.
async fn forward_stderr(stderr: ChildStderr, pid: u32, slot: String, tail: Tail) {
    let mut reader = BufReader::new(stderr);
    let mut line = Vec::new();
    loop {
        line.clear();
        match read_line_bounded(&mut reader, &mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end();
        if text.is_empty() {
            continue;
        }
        log_line(text, pid, &slot);
        if text.starts_with("INFO dask_scheduler.materializer:")
            || text.starts_with("DEBUG dask_scheduler.materializer:")
        {
            continue; // our own chatter is no clue to why a helper died
        }
        if let Ok(mut t) = tail.lock() {
            if t.len() == STDERR_TAIL {
                t.pop_front();
            }
            t.push_back(text.to_string());
        }
    }
}

/// Read up to and including '\n', keeping at most MAX_LINE bytes of it.
/// Returns the number of bytes consumed (0 at EOF).
async fn read_line_bounded<R: tokio::io::AsyncBufRead + Unpin>(
    r: &mut R,
    out: &mut Vec<u8>,
) -> io::Result<usize> {
    let mut consumed = 0;
    loop {
        let buf = r.fill_buf().await?;
        if buf.is_empty() {
            return Ok(consumed);
        }
        let (take, done) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (buf.len(), false),
        };
        let room = MAX_LINE.saturating_sub(out.len());
        out.extend_from_slice(&buf[..take.min(room)]);
        r.consume(take);
        consumed += take;
        if done {
            return Ok(consumed);
        }
    }
}

fn log_line(text: &str, pid: u32, slot: &str) {
    let level = line_level(text);
    // Our own format is "LEVEL name: message": the level is in the event.
    let text = match text.split_once(' ') {
        Some((first, rest))
            if ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"].contains(&first) =>
        {
            rest
        }
        _ => text,
    };
    match level {
        tracing::Level::ERROR => tracing::error!(target: "materializer", pid, slot, "{text}"),
        tracing::Level::WARN => tracing::warn!(target: "materializer", pid, slot, "{text}"),
        tracing::Level::DEBUG => tracing::debug!(target: "materializer", pid, slot, "{text}"),
        _ => tracing::info!(target: "materializer", pid, slot, "{text}"),
    }
}

/// Level of a helper log line: our own format is "LEVEL name: message",
/// distributed's is "time - name - LEVEL - message"; anything else is INFO.
fn line_level(text: &str) -> tracing::Level {
    let named = |name: &str| {
        text.split_whitespace().next() == Some(name) || text.contains(&format!(" - {name} - "))
    };
    if named("ERROR") || named("CRITICAL") {
        tracing::Level::ERROR
    } else if named("WARNING") {
        tracing::Level::WARN
    } else if named("DEBUG") {
        tracing::Level::DEBUG
    } else {
        tracing::Level::INFO
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_travels_in_arguments_linux_accepts() {
        // Linux limits one argv string to 128 KiB (MAX_ARG_STRLEN).
        let pieces = script_pieces();
        assert!(pieces
            .iter()
            .all(|p| !p.is_empty() && p.len() <= SCRIPT_PIECE));
        assert_eq!(pieces.concat(), HELPER_SOURCE);
        assert!(BOOTSTRAP.len() < 1024);
        assert!(HELPER_SOURCE.contains("def main():"));
    }

    /// The bootstrap runs the joined pieces as `__main__`, with `sys.argv`
    /// as a one-argument `-c` script has it.
    #[test]
    fn bootstrap_runs_the_joined_script() {
        let python = std::env::var("DASK_SCHEDULER_PYTHON").unwrap_or_else(|_| "python3".into());
        let script = "import sys\nprint(__name__, sys.argv, 'x' * 3)\n";
        let (a, b) = script.split_at(10);
        let out = std::process::Command::new(&python)
            .args(["-c", BOOTSTRAP, a, b])
            .output()
            .expect("a Python interpreter (DASK_SCHEDULER_PYTHON, else python3)");
        assert!(out.status.success(), "{out:?}");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "__main__ ['-c'] xxx\n"
        );
    }

    #[test]
    fn levels() {
        assert_eq!(line_level("WARNING dask: x"), tracing::Level::WARN);
        assert_eq!(
            line_level("2026-01-01 - distributed.x - ERROR - boom"),
            tracing::Level::ERROR
        );
        assert_eq!(line_level("hello ERROR"), tracing::Level::INFO);
    }

    #[tokio::test]
    async fn frames() {
        let mut data: &[u8] = &[3, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3];
        assert_eq!(read_frame(&mut data).await.unwrap(), vec![1, 2, 3]);
        let mut short: &[u8] = &[9, 0, 0, 0, 0, 0, 0, 0, 1];
        assert!(read_frame(&mut short).await.is_err());
        let mut huge: &[u8] = &[0xff; 8];
        let e = read_frame(&mut huge).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    }

    #[tokio::test]
    async fn bounded_lines() {
        let long = vec![b'x'; MAX_LINE * 2];
        let mut input = long.clone();
        input.extend_from_slice(b"\nnext\n");
        let mut r = BufReader::new(&input[..]);
        let mut line = Vec::new();
        assert_eq!(
            read_line_bounded(&mut r, &mut line).await.unwrap(),
            long.len() + 1
        );
        assert_eq!(line.len(), MAX_LINE);
        line.clear();
        assert_eq!(read_line_bounded(&mut r, &mut line).await.unwrap(), 5);
        assert_eq!(line, b"next\n");
        line.clear();
        assert_eq!(read_line_bounded(&mut r, &mut line).await.unwrap(), 0);
    }
}
