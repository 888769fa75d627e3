//! Shared helpers for the `ferryd` integration tests.
//!
//! Every test talks to a real `ferryd` process over real sockets on
//! 127.0.0.1. Every blocking operation is bounded (socket timeouts, polling
//! loops with deadlines) so that a broken server fails a test instead of
//! hanging the suite.

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::ffi::{OsStr, OsString};
use std::fmt::Write as _;
use std::fs::{self, File, FileTimes};
use std::io::{self, BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tempfile::TempDir;

pub const ALICE: &str = "alice";
pub const ALICE_PW: &str = "alice-Pw-4711";
pub const BOB: &str = "bob";
/// A password with spaces: `AUTH` takes the rest of the line as password.
pub const BOB_PW: &str = "correct horse battery";

/// How long the server may take to print its listening line.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(10);
/// Socket read/write timeout: long enough for a loaded 2-core machine, short
/// enough that a server that never answers fails the test instead of hanging.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// The text ferryd logs on stderr once its listener is bound.
pub const LISTENING_MARKER: &str = "ferryd listening on ";

pub fn ferryd_bin() -> &'static str {
    env!("CARGO_BIN_EXE_ferryd")
}

/// Users file used unless a test supplies its own.
pub fn default_users_file() -> String {
    format!("{ALICE}:{ALICE_PW}\n{BOB}:{BOB_PW}\n")
}

/// The exact text of the `226` reply for an upload of `data`.
pub fn stored(data: &[u8]) -> String {
    format!("stored {} sha256={}", data.len(), sha256_hex(data))
}

/// Lowercase hex SHA-256 of `data`.
///
/// Large inputs go to coreutils' `sha256sum`: the `sha2` crate in a test
/// build is as unoptimised as the rest (about 20 MB/s), and the tests hash
/// hundreds of MiB; `sha256sum` takes a fraction of a second for those.
pub fn sha256_hex(data: &[u8]) -> String {
    if data.len() >= SHA256SUM_FROM {
        return sha256sum(data);
    }
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(data);
    let mut s = String::with_capacity(64);
    for b in digest.iter() {
        write!(s, "{b:02x}").unwrap();
    }
    s
}

/// From this size on, [`sha256_hex`] runs `sha256sum` (below, starting a
/// process costs more than it saves).
const SHA256SUM_FROM: usize = 1 << 20;

/// `sha256sum` of `data`, bounded in time.
fn sha256sum(data: &[u8]) -> String {
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("sha256sum (coreutils) is needed by the tests");
    let mut stdin = child.stdin.take().unwrap();
    let status = thread::scope(|scope| {
        scope.spawn(move || stdin.write_all(data).expect("write to sha256sum"));
        wait_child(&mut child, Duration::from_secs(60))
    });
    let Some(status) = status else {
        let _ = child.kill();
        panic!("sha256sum of {} bytes did not finish in 60 s", data.len());
    };
    assert!(status.success(), "sha256sum failed: {status}");
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let hex = out
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string();
    assert!(
        hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()),
        "sha256sum printed {out:?}"
    );
    hex
}

/// Deterministic, random-looking bytes: [`Rng`]'s from `seed`.
pub fn pseudo_random_bytes(seed: u64, len: usize) -> Vec<u8> {
    Rng::new(seed).bytes(len)
}

/// Writes a tree of 1,000 files under `tree`: 10 x 10 folders, three
/// levels, names with spaces (`year 3/month 7/img 5.jpg`), each file of
/// fewer than `max_len` random bytes from `rng`.
pub fn write_photo_tree(tree: &Path, rng: &mut Rng, max_len: u64) {
    for a in 0..10 {
        for b in 0..10 {
            let dir = tree.join(format!("year {a}")).join(format!("month {b}"));
            fs::create_dir_all(&dir).unwrap();
            for c in 0..10 {
                let len = rng.range(0, max_len) as usize;
                fs::write(dir.join(format!("img {c}.jpg")), rng.bytes(len)).unwrap();
            }
        }
    }
}

/// The tests' one source of random numbers (xorshift64*): seedable, so
/// that a run can be repeated, and good enough that different seeds give
/// different contents and corruption shows in a hash.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// Seeded from `FERRY_FAULT_SEED` if set, else from the clock; the
    /// seed is printed so that a failing run can be repeated.
    pub fn from_env(test: &str) -> Rng {
        let seed = std::env::var("FERRY_FAULT_SEED")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| {
                SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
            });
        eprintln!("{test}: FERRY_FAULT_SEED={seed}");
        Rng::new(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `lo..hi` (`hi > lo`).
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        assert!(hi > lo, "empty range {lo}..{hi}");
        lo + self.next_u64() % (hi - lo)
    }

    /// `len` bytes.
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len + 8);
        while out.len() < len {
            out.extend_from_slice(&self.next_u64().to_le_bytes());
        }
        out.truncate(len);
        out
    }
}

/// Polls `cond` every 20 ms until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Entries of a directory (empty if it does not exist).
pub fn dir_entries(dir: &Path) -> Vec<PathBuf> {
    match fs::read_dir(dir) {
        Ok(rd) => rd.map(|e| e.unwrap().path()).collect(),
        Err(e) if e.kind() == ErrorKind::NotFound => Vec::new(),
        Err(e) => panic!("cannot read {}: {e}", dir.display()),
    }
}

/// Waits for a child with a deadline; `None` if it is still running.
pub fn wait_child(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// Output of a `ferryd` run that is expected to end by itself.
#[derive(Debug)]
pub struct RunOutput {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Configures a `ferryd` process in a fresh temporary directory.
///
/// Layout: `<root>/storage` (created), `<root>/id_passwd.txt`.
pub struct ServerBuilder {
    dir: TempDir,
    listen: String,
    users: Option<Vec<u8>>,
    fsync: bool,
    args: Vec<OsString>,
    envs: Vec<(OsString, OsString)>,
}

impl Default for ServerBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl ServerBuilder {
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("ferry-test-")
            .tempdir()
            .expect("tempdir");
        fs::create_dir(dir.path().join("storage")).unwrap();
        ServerBuilder {
            dir,
            listen: "127.0.0.1:0".to_string(),
            users: Some(default_users_file().into_bytes()),
            fsync: false,
            args: Vec::new(),
            envs: Vec::new(),
        }
    }

    /// The temporary directory holding storage, users file and anything else
    /// the test puts there (canaries).
    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    pub fn storage(&self) -> PathBuf {
        self.dir.path().join("storage")
    }

    pub fn users_path(&self) -> PathBuf {
        self.dir.path().join("id_passwd.txt")
    }

    /// Replaces the users file content.
    pub fn users_file(mut self, content: impl AsRef<[u8]>) -> Self {
        self.users = Some(content.as_ref().to_vec());
        self
    }

    /// Starts without a users file (ferryd must create one).
    pub fn no_users_file(mut self) -> Self {
        self.users = None;
        self
    }

    pub fn listen(mut self, addr: &str) -> Self {
        self.listen = addr.to_string();
        self
    }

    /// Runs with fsync enabled (tests default to `--no-fsync` for speed).
    pub fn with_fsync(mut self) -> Self {
        self.fsync = true;
        self
    }

    /// Sets an environment variable for ferryd.
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.envs
            .push((key.as_ref().to_os_string(), value.as_ref().to_os_string()));
        self
    }

    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.args.push(arg.as_ref().to_os_string());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        for a in args {
            self.args.push(a.as_ref().to_os_string());
        }
        self
    }

    fn write_users(&self) {
        if let Some(content) = &self.users {
            fs::write(self.users_path(), content).unwrap();
        }
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(ferryd_bin());
        cmd.arg("--listen")
            .arg(&self.listen)
            .arg("--storage")
            .arg(self.storage())
            .arg("--users")
            .arg(self.users_path());
        if !self.fsync {
            cmd.arg("--no-fsync");
        }
        // No held reply after a failed login: a test about the delay asks
        // for one, and its later option wins.
        cmd.args(["--login-delay", "0"]);
        cmd.args(&self.args);
        cmd.envs(self.envs.iter().map(|(k, v)| (k, v)));
        cmd.current_dir(self.dir.path());
        cmd
    }

    /// Runs ferryd to completion (for runs that must end by themselves, like
    /// `--help` or a bad users file). Panics if it has not exited in time.
    pub fn run_to_exit(self, timeout: Duration) -> RunOutput {
        self.write_users();
        let mut cmd = self.command();
        run_command_to_exit(&mut cmd, timeout)
    }

    /// Spawns ferryd and waits for its listening line.
    pub fn start(self) -> TestServer {
        self.write_users();
        let cmd = self.command();
        self.spawn(cmd)
    }
}

/// Runs a command with piped stdout/stderr until it exits (bounded).
pub fn run_command_to_exit(cmd: &mut Command, timeout: Duration) -> RunOutput {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn ferryd");
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let t_out = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let t_err = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let status = match wait_child(&mut child, timeout) {
        Some(s) => s,
        None => {
            let _ = child.kill();
            let _ = child.wait();
            let stderr = String::from_utf8_lossy(&t_err.join().unwrap()).into_owned();
            panic!("ferryd did not exit within {timeout:?}; stderr:\n{stderr}");
        }
    };
    let stdout = String::from_utf8_lossy(&t_out.join().unwrap()).into_owned();
    let stderr = String::from_utf8_lossy(&t_err.join().unwrap()).into_owned();
    RunOutput {
        status,
        stdout,
        stderr,
    }
}

/// Extracts `127.0.0.1:PORT` from a line containing the listening marker.
pub fn parse_listening_line(line: &str) -> Option<SocketAddr> {
    let idx = line.find(LISTENING_MARKER)?;
    let rest = &line[idx + LISTENING_MARKER.len()..];
    // The address ends the line; stop at anything that cannot be part of it
    // (a stray colour escape or whitespace).
    let addr: String = rest
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
        .collect();
    addr.parse().ok()
}

/// A running `ferryd`; killed (SIGKILL) on drop if still running.
pub struct TestServer {
    dir: TempDir,
    addr: SocketAddr,
    child: Child,
    exit_status: Option<ExitStatus>,
    stderr_lines: Arc<Mutex<Vec<String>>>,
    stderr_reader: Option<JoinHandle<()>>,
}

impl TestServer {
    /// A server with the default users (alice, bob).
    pub fn start() -> TestServer {
        ServerBuilder::new().start()
    }

    pub fn builder() -> ServerBuilder {
        ServerBuilder::new()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    pub fn storage(&self) -> PathBuf {
        self.dir.path().join("storage")
    }

    pub fn user_dir(&self, user: &str) -> PathBuf {
        self.storage().join(user)
    }

    pub fn tmp_dir(&self) -> PathBuf {
        self.storage().join(".ferry").join("tmp")
    }

    /// Files currently in `<storage>/.ferry/tmp` (empty if it does not exist).
    pub fn tmp_entries(&self) -> Vec<PathBuf> {
        dir_entries(&self.tmp_dir())
    }

    /// Asserts that `.ferry/tmp` becomes empty within `timeout`.
    pub fn assert_tmp_empty_within(&self, timeout: Duration) {
        let ok = wait_until(timeout, || self.tmp_entries().is_empty());
        assert!(
            ok,
            "{} still holds {:?} after {timeout:?}",
            self.tmp_dir().display(),
            self.tmp_entries()
        );
    }

    /// Puts `data` into `user`'s directory as `name` straight on disk
    /// (faster than uploading megabytes). Logging in first lets the server
    /// create the directory, as it would for a real user.
    pub fn plant_file(&self, user: &str, name: &str, data: &[u8]) -> PathBuf {
        let password = match user {
            ALICE => ALICE_PW,
            BOB => BOB_PW,
            other => panic!("no password known for {other}"),
        };
        drop(self.login(user, password));
        let path = self.user_dir(user).join(name);
        fs::write(&path, data).unwrap();
        path
    }

    /// Kills ferryd with SIGKILL, so it cleans up nothing, and starts a new
    /// one on the same storage root and users file.
    pub fn crash_and_restart(self) -> TestServer {
        self.signal(Signal::SIGKILL);
        self.restart_with(Vec::<OsString>::new())
    }

    /// Asserts that no temporary upload file is left right now.
    pub fn assert_tmp_empty(&self) {
        let left = self.tmp_entries();
        assert!(left.is_empty(), "temporary files left: {left:?}");
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn signal(&self, sig: Signal) {
        kill(Pid::from_raw(self.pid()), sig).expect("kill");
    }

    /// Waits for the process to exit; `None` if still running after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if let Some(s) = self.exit_status {
            return Some(s);
        }
        let status = wait_child(&mut self.child, timeout)?;
        self.exit_status = Some(status);
        // The child has exited: stderr reaches EOF, so collect the rest.
        if let Some(h) = self.stderr_reader.take() {
            let _ = h.join();
        }
        Some(status)
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        if self.exit_status.is_some() {
            return false;
        }
        match self.child.try_wait().expect("try_wait") {
            Some(s) => {
                self.exit_status = Some(s);
                false
            }
            None => true,
        }
    }

    /// Sends `sig` and asserts that the process exits with status 0 within
    /// `timeout`; returns how long it took.
    pub fn signal_and_expect_clean_exit(&mut self, sig: Signal, timeout: Duration) -> Duration {
        let start = Instant::now();
        self.signal(sig);
        self.expect_clean_exit(start, timeout)
    }

    /// Asserts exit status 0 within `timeout` measured from `since`.
    pub fn expect_clean_exit(&mut self, since: Instant, timeout: Duration) -> Duration {
        let left = timeout.saturating_sub(since.elapsed());
        let status = self.wait_exit(left);
        let took = since.elapsed();
        match status {
            Some(s) => assert_eq!(
                s.code(),
                Some(0),
                "ferryd exited with {s:?}, expected 0; stderr:\n{}",
                self.stderr_text()
            ),
            None => panic!(
                "ferryd still running {timeout:?} after shutdown began; stderr:\n{}",
                self.stderr_text()
            ),
        }
        took
    }

    /// All stderr lines seen so far.
    pub fn stderr_lines(&self) -> Vec<String> {
        self.stderr_lines.lock().unwrap().clone()
    }

    pub fn stderr_text(&self) -> String {
        self.stderr_lines().join("\n")
    }

    /// The log once it holds `needle`, waited for (bounded): another
    /// thread reads ferryd's stderr, and on a loaded machine it can lag
    /// behind the replies that follow a log line.
    #[track_caller]
    pub fn log_containing(&self, needle: &str) -> String {
        let found = wait_until(IO_TIMEOUT, || self.stderr_text().contains(needle));
        let log = self.stderr_text();
        assert!(
            found,
            "no {needle:?} in the log within {IO_TIMEOUT:?}:\n{log}"
        );
        log
    }

    /// Connects and reads the greeting.
    pub fn connect(&self) -> Client {
        Client::connect(self.addr)
    }

    /// Connects and logs in.
    pub fn login(&self, user: &str, password: &str) -> Client {
        let mut c = self.connect();
        c.login(user, password);
        c
    }

    pub fn alice(&self) -> Client {
        self.login(ALICE, ALICE_PW)
    }

    pub fn bob(&self) -> Client {
        self.login(BOB, BOB_PW)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if self.exit_status.is_none() {
            if let Ok(None) = self.child.try_wait() {
                let _ = self.child.kill();
            }
            let _ = self.child.wait();
        }
    }
}

/// What a read yielded when a reply line or the end of the stream was acceptable.
#[derive(Debug, PartialEq, Eq)]
pub enum ReplyOrEof {
    Reply(u16, String),
    /// Orderly EOF or connection reset.
    Eof,
}

/// A protocol client over a blocking `TcpStream` with timeouts.
pub struct Client {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

/// Longest reply line the client accepts (replies are short; this only
/// bounds the damage of a server that never sends CRLF).
const MAX_REPLY_LINE: u64 = 64 * 1024;

impl Client {
    /// Connects without reading the greeting.
    pub fn connect_raw(addr: SocketAddr) -> io::Result<Client> {
        let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        stream.set_nodelay(true)?;
        let reader = BufReader::with_capacity(64 * 1024, stream.try_clone()?);
        Ok(Client {
            reader,
            writer: stream,
        })
    }

    /// Connects and checks the `220 ferry <version> ready; HELP lists the
    /// commands` greeting.
    pub fn connect(addr: SocketAddr) -> Client {
        let mut c = Client::connect_raw(addr).expect("connect");
        let (code, text) = c.read_reply();
        assert_eq!(code, 220, "greeting: {code} {text}");
        assert!(
            text.starts_with("ferry ") && text.ends_with(" ready; HELP lists the commands"),
            "greeting text {text:?} is not `ferry <version> ready; HELP lists the commands`"
        );
        c
    }

    pub fn set_read_timeout(&self, t: Duration) {
        self.writer.set_read_timeout(Some(t)).unwrap();
    }

    pub fn stream(&self) -> &TcpStream {
        &self.writer
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).expect("write to server");
    }

    /// Writes, ignoring errors (for writes racing with a server-side close).
    pub fn try_send_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.writer.write_all(bytes)
    }

    /// Sends `line` followed by LF.
    pub fn send_line(&mut self, line: &str) {
        self.send_line_bytes(line.as_bytes());
    }

    pub fn send_line_bytes(&mut self, line: &[u8]) {
        let mut v = Vec::with_capacity(line.len() + 1);
        v.extend_from_slice(line);
        v.push(b'\n');
        self.send_raw(&v);
    }

    pub fn shutdown_write(&self) {
        self.writer.shutdown(Shutdown::Write).unwrap();
    }

    /// Reads one reply line; `Ok(None)` on EOF before any byte.
    /// Asserts the `NNN text\r\n` shape.
    pub fn try_read_reply(&mut self) -> io::Result<Option<(u16, String)>> {
        let mut buf = Vec::new();
        (&mut self.reader)
            .take(MAX_REPLY_LINE)
            .read_until(b'\n', &mut buf)?;
        if buf.is_empty() {
            return Ok(None);
        }
        assert!(
            buf.ends_with(b"\r\n"),
            "reply line not terminated by CRLF (EOF or overlong?): {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.truncate(buf.len() - 2);
        let line = String::from_utf8(buf).expect("reply line is not UTF-8");
        let bytes = line.as_bytes();
        assert!(
            bytes.len() >= 5 && bytes[..3].iter().all(u8::is_ascii_digit) && bytes[3] == b' ',
            "reply line {line:?} is not `NNN text`"
        );
        let code: u16 = line[..3].parse().unwrap();
        Ok(Some((code, line[4..].to_string())))
    }

    /// Reads one reply line (panics on EOF or timeout).
    pub fn read_reply(&mut self) -> (u16, String) {
        match self.try_read_reply() {
            Ok(Some(r)) => r,
            Ok(None) => panic!("server closed the connection instead of replying"),
            Err(e) => panic!("reading a reply failed: {e}"),
        }
    }

    /// Reads a reply, treating EOF and connection reset alike.
    pub fn read_reply_or_eof(&mut self) -> ReplyOrEof {
        match self.try_read_reply() {
            Ok(Some((c, t))) => ReplyOrEof::Reply(c, t),
            Ok(None) => ReplyOrEof::Eof,
            Err(e) if is_reset(&e) => ReplyOrEof::Eof,
            Err(e) => panic!("reading a reply failed: {e}"),
        }
    }

    /// Reads the reply code only.
    pub fn read_code(&mut self) -> u16 {
        self.read_reply().0
    }

    /// Sends a line and reads the reply.
    pub fn cmd(&mut self, line: &str) -> (u16, String) {
        self.send_line(line);
        self.read_reply()
    }

    pub fn cmd_bytes(&mut self, line: &[u8]) -> (u16, String) {
        self.send_line_bytes(line);
        self.read_reply()
    }

    /// Sends a line and asserts the reply code.
    pub fn expect(&mut self, line: &str, code: u16) -> String {
        let (c, t) = self.cmd(line);
        assert_eq!(c, code, "`{}` answered `{c} {t}`", line.escape_debug());
        t
    }

    pub fn expect_bytes(&mut self, line: &[u8], code: u16) -> String {
        let (c, t) = self.cmd_bytes(line);
        assert_eq!(
            c,
            code,
            "`{}` answered `{c} {t}`",
            String::from_utf8_lossy(line).escape_debug()
        );
        t
    }

    pub fn read_exact_bytes(&mut self, n: usize) -> Vec<u8> {
        let mut v = vec![0u8; n];
        self.reader
            .read_exact(&mut v)
            .unwrap_or_else(|e| panic!("reading {n} data bytes failed: {e}"));
        v
    }

    /// Reads until EOF (or reset); returns the bytes.
    pub fn read_to_eof(&mut self) -> Vec<u8> {
        let mut v = Vec::new();
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            match self.reader.read(&mut chunk) {
                Ok(0) => return v,
                Ok(n) => v.extend_from_slice(&chunk[..n]),
                Err(e) if is_reset(&e) => return v,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => panic!("reading until EOF failed after {} bytes: {e}", v.len()),
            }
        }
    }

    /// Asserts that the server closes the connection without sending more.
    pub fn expect_eof(&mut self) {
        let rest = self.read_to_eof();
        assert!(
            rest.is_empty(),
            "expected the connection to be closed, got {:?}",
            String::from_utf8_lossy(&rest)
        );
    }

    pub fn login(&mut self, user: &str, password: &str) {
        self.expect(&format!("AUTH {user} {password}"), 230);
    }

    /// Parses `150 <n>`, asserting the exact text.
    fn expect_150(&mut self, what: &str) -> usize {
        let (code, text) = self.read_reply();
        assert_eq!(code, 150, "{what} answered `{code} {text}`");
        let n: usize = text
            .parse()
            .unwrap_or_else(|_| panic!("{what}: `150 {text}` is not exactly `150 <n>`"));
        assert_eq!(n.to_string(), text, "{what}: `150 {text}` is not canonical");
        n
    }

    /// Sends a `PUT`, sends the payload if the server answers `150`, and
    /// returns the final reply (the refusal, or the reply after the payload).
    pub fn put_reply(&mut self, name: &[u8], data: &[u8]) -> (u16, String) {
        let mut line = format!("PUT {} ", data.len()).into_bytes();
        line.extend_from_slice(name);
        self.send_line_bytes(&line);
        let (code, text) = self.read_reply();
        if code != 150 {
            return (code, text);
        }
        assert_eq!(
            text,
            data.len().to_string(),
            "PUT answered `150 {text}`, expected exactly `150 {}`",
            data.len()
        );
        self.send_raw(data);
        self.read_reply()
    }

    /// Uploads and asserts `150 <n>` then exactly
    /// `226 stored <n> sha256=<hex>`, with the digest computed here.
    pub fn put(&mut self, name: &str, data: &[u8]) {
        self.put_bytes(name.as_bytes(), data);
    }

    pub fn put_bytes(&mut self, name: &[u8], data: &[u8]) {
        let (code, text) = self.put_reply(name, data);
        assert_eq!(
            (code, text.as_str()),
            (226, stored(data).as_str()),
            "PUT {} {:?}",
            data.len(),
            String::from_utf8_lossy(name)
        );
    }

    /// Sends `PUT <size> <name>` and expects `150 <size>`; the payload is
    /// left to the caller.
    pub fn start_put(&mut self, name: &str, size: usize) {
        self.send_line(&format!("PUT {size} {name}"));
        let n = self.expect_150(&format!("PUT {size} {name}"));
        assert_eq!(n, size);
    }

    /// `GET`/`VIEW`/`LIST` returning either the data or the error reply.
    pub fn data_cmd(&mut self, line: &[u8]) -> Result<Vec<u8>, (u16, String)> {
        self.send_line_bytes(line);
        let (code, text) = self.read_reply();
        if code != 150 {
            return Err((code, text));
        }
        let n: usize = text
            .parse()
            .unwrap_or_else(|_| panic!("`150 {text}` is not exactly `150 <n>`"));
        assert_eq!(n.to_string(), text, "`150 {text}` is not canonical");
        Ok(self.read_exact_bytes(n))
    }

    pub fn get_reply(&mut self, name: &[u8]) -> Result<Vec<u8>, (u16, String)> {
        let mut line = b"GET ".to_vec();
        line.extend_from_slice(name);
        self.data_cmd(&line)
    }

    pub fn view_reply(&mut self, name: &[u8]) -> Result<Vec<u8>, (u16, String)> {
        let mut line = b"VIEW ".to_vec();
        line.extend_from_slice(name);
        self.data_cmd(&line)
    }

    /// Downloads a file (asserting success).
    pub fn get(&mut self, name: &str) -> Vec<u8> {
        self.get_reply(name.as_bytes())
            .unwrap_or_else(|(c, t)| panic!("GET {name:?} answered `{c} {t}`"))
    }

    pub fn view(&mut self, name: &str) -> Vec<u8> {
        self.view_reply(name.as_bytes())
            .unwrap_or_else(|(c, t)| panic!("VIEW {name:?} answered `{c} {t}`"))
    }

    /// Raw LIST data: its blocks, joined.
    pub fn list_raw(&mut self) -> Vec<u8> {
        self.send_line("LIST");
        self.read_list_blocks()
    }

    /// Parsed LIST: (size, mtime, name bytes), sorted by name (the server
    /// sends directory order).
    pub fn list(&mut self) -> Vec<ListEntry> {
        let mut entries = parse_listing(&self.list_raw());
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        entries
    }

    /// Names from LIST, lossily decoded, sorted.
    pub fn list_names(&mut self) -> Vec<String> {
        self.list()
            .into_iter()
            .map(|e| String::from_utf8_lossy(&e.name).into_owned())
            .collect()
    }

    /// NOOP round trip.
    pub fn noop(&mut self) {
        self.expect("NOOP", 200);
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListEntry {
    pub size: u64,
    pub mtime: u64,
    pub name: Vec<u8>,
}

/// Parses a LIST data block, asserting its format.
pub fn parse_listing(data: &[u8]) -> Vec<ListEntry> {
    if data.is_empty() {
        return Vec::new();
    }
    assert!(
        data.ends_with(b"\n"),
        "listing does not end with LF: {:?}",
        String::from_utf8_lossy(data)
    );
    data[..data.len() - 1]
        .split(|&b| b == b'\n')
        .map(|line| {
            let lossy = String::from_utf8_lossy(line);
            assert!(
                !line.ends_with(b"\r"),
                "listing line ends with CR: {lossy:?}"
            );
            let mut parts = line.splitn(3, |&b| b == b' ');
            let size = parts.next().unwrap();
            let mtime = parts
                .next()
                .unwrap_or_else(|| panic!("bad listing line {lossy:?}"));
            let name = parts
                .next()
                .unwrap_or_else(|| panic!("bad listing line {lossy:?}"));
            let num = |b: &[u8]| -> u64 {
                assert!(
                    !b.is_empty() && b.iter().all(u8::is_ascii_digit),
                    "bad number in listing line {lossy:?}"
                );
                std::str::from_utf8(b).unwrap().parse().unwrap()
            };
            ListEntry {
                size: num(size),
                mtime: num(mtime),
                name: name.to_vec(),
            }
        })
        .collect()
}

pub fn is_reset(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::BrokenPipe
    )
}

/// Mode bits (permissions) of a path, without following a final symlink.
pub fn mode_of(path: &Path) -> u32 {
    fs::symlink_metadata(path)
        .unwrap_or_else(|e| panic!("stat {}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

/// Compares two byte strings without dumping megabytes on failure.
#[track_caller]
pub fn assert_same_bytes(got: &[u8], want: &[u8], what: &str) {
    if got == want {
        return;
    }
    let first_diff = got
        .iter()
        .zip(want)
        .position(|(a, b)| a != b)
        .unwrap_or(got.len().min(want.len()));
    panic!(
        "{what}: got {} bytes (sha256 {}), want {} bytes (sha256 {}); first difference at offset {first_diff}",
        got.len(),
        sha256_hex(got),
        want.len(),
        sha256_hex(want)
    );
}

/// Sends `rounds` NOOPs on `client`, each of which must be answered within a
/// second: the server is still serving this session promptly.
pub fn assert_noops_prompt(client: &mut Client, rounds: usize) {
    for _ in 0..rounds {
        let t = Instant::now();
        client.noop();
        assert!(
            t.elapsed() < Duration::from_secs(1),
            "NOOP took {:?}",
            t.elapsed()
        );
    }
}

// ---------------------------------------------------------------------------
// Integrity and resume: HASH, EXPECT, REST, PARTIAL, and the server's records.
// ---------------------------------------------------------------------------

impl ServerBuilder {
    /// Keeps the bytes of interrupted uploads for `secs` seconds
    /// (`--partial-ttl`).
    pub fn partial_ttl(self, secs: &str) -> Self {
        self.args(["--partial-ttl", secs])
    }
}

impl TestServer {
    /// `<storage>/.ferry/users/<user>`: what the server keeps about a user.
    pub fn records_dir(&self, user: &str) -> PathBuf {
        self.storage().join(".ferry").join("users").join(user)
    }

    /// The digest record of `<user>/<name>`.
    pub fn sum_record(&self, user: &str, name: &str) -> PathBuf {
        self.records_dir(user).join("sums").join(name)
    }

    /// Where the bytes of an interrupted upload of `<name>` are held.
    pub fn partial_path(&self, user: &str, name: &str) -> PathBuf {
        self.records_dir(user).join("partial").join(name)
    }

    /// Total size of the files in `.ferry/tmp` (uploads in progress).
    pub fn tmp_bytes(&self) -> u64 {
        self.tmp_entries()
            .iter()
            .map(|p| fs::metadata(p).map(|m| m.len()).unwrap_or(0))
            .sum()
    }

    /// Waits until the uploads in progress hold exactly `n` bytes on disk:
    /// everything the client sent so far has been read by the server.
    #[track_caller]
    pub fn wait_tmp_bytes(&self, n: u64, timeout: Duration) {
        let ok = wait_until(timeout, || self.tmp_bytes() == n);
        assert!(
            ok,
            "uploads in progress hold {} bytes after {timeout:?}, expected {n}",
            self.tmp_bytes()
        );
    }

    /// Starts a new ferryd on the same storage root and users file, with
    /// `args`, once this one has exited (asserted).
    pub fn restart_with<I, S>(mut self, args: I) -> TestServer
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        assert!(
            self.wait_exit(Duration::from_secs(5)).is_some(),
            "restart_with: ferryd is still running"
        );
        let placeholder = tempfile::tempdir().expect("tempdir");
        let dir = std::mem::replace(&mut self.dir, placeholder);
        ServerBuilder {
            dir,
            listen: "127.0.0.1:0".to_string(),
            users: None,
            fsync: false,
            args: Vec::new(),
            envs: Vec::new(),
        }
        .args(args)
        .start()
    }

    /// Stops ferryd with SIGINT (asserting exit status 0) and starts a new
    /// one on the same storage root, with `args`.
    pub fn stop_and_restart_with<I, S>(mut self, args: I) -> TestServer
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.signal_and_expect_clean_exit(Signal::SIGINT, Duration::from_secs(5));
        self.restart_with(args)
    }

    /// [`TestServer::stop_and_restart_with`] without extra arguments.
    pub fn stop_and_restart(self) -> TestServer {
        self.stop_and_restart_with(Vec::<OsString>::new())
    }
}

/// The digest in a record file: its `sha256 <hex>` line (the third, before
/// the `end` line that vouches for the record).
#[track_caller]
pub fn recorded_sha256(record: &Path) -> String {
    let text = fs::read_to_string(record)
        .unwrap_or_else(|e| panic!("cannot read the record {}: {e}", record.display()));
    text.lines()
        .find_map(|line| line.strip_prefix("sha256 "))
        .unwrap_or_else(|| panic!("no sha256 line in {}: {text:?}", record.display()))
        .to_string()
}

/// Replaces the value of a record's `sha256 <hex>` line with `hex`, and
/// its `end` line with the digest of the new lines, so that the server
/// takes the forged record for a whole one; the size stays the same.
pub fn forge_recorded_sha256(record: &Path, hex: &str) {
    let text = fs::read_to_string(record).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines.len() == 4 && lines[2].starts_with("sha256 ") && lines[3].starts_with("end "),
        "not a version 3 record with a digest: {}: {text:?}",
        record.display()
    );
    let body = format!("{}\n{}\nsha256 {hex}\n", lines[0], lines[1]);
    let forged = format!("{body}end {}\n", sha256_hex(body.as_bytes()));
    assert_eq!(forged.len(), text.len(), "the forged record changed size");
    fs::write(record, forged).unwrap();
}

/// Whether `s` is exactly 64 lower-case hexadecimal digits.
pub fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl Client {
    /// `HASH <name>`: asserts exactly `213 sha256=<64 lower-case hex>` and
    /// returns the hex.
    #[track_caller]
    pub fn hash(&mut self, name: &str) -> String {
        let (code, text) = self.cmd(&format!("HASH {name}"));
        assert_eq!(code, 213, "HASH {name:?} answered `{code} {text}`");
        let hex = text
            .strip_prefix("sha256=")
            .filter(|h| is_sha256_hex(h))
            .unwrap_or_else(|| panic!("HASH {name:?}: `213 {text}` is not `213 sha256=<hex>`"));
        hex.to_string()
    }

    /// `PARTIAL <name>`: asserts exactly `213 <n>` and returns `n`.
    #[track_caller]
    pub fn partial(&mut self, name: &str) -> u64 {
        let (code, text) = self.cmd(&format!("PARTIAL {name}"));
        assert_eq!(code, 213, "PARTIAL {name:?} answered `{code} {text}`");
        let n: u64 = text
            .parse()
            .unwrap_or_else(|_| panic!("PARTIAL {name:?}: `213 {text}` is not `213 <n>`"));
        assert_eq!(n.to_string(), text, "PARTIAL {name:?}: `213 {text}`");
        n
    }

    /// Polls `PARTIAL <name>` until it answers `want` (the server notices
    /// a closed connection asynchronously); returns the last answer.
    pub fn wait_partial(&mut self, name: &str, want: u64, timeout: Duration) -> u64 {
        let mut last = 0;
        wait_until(timeout, || {
            last = self.partial(name);
            last == want
        });
        last
    }

    /// `REST <offset>`, asserting `350`.
    #[track_caller]
    pub fn rest(&mut self, offset: u64) {
        self.expect(&format!("REST {offset}"), 350);
    }

    /// `EXPECT sha256=<hex>`, asserting exactly `200 expecting sha256=<hex>`.
    #[track_caller]
    pub fn expect_sha256(&mut self, hex: &str) {
        let reply = self.cmd(&format!("EXPECT sha256={hex}"));
        assert_eq!(
            reply,
            (
                200,
                format!("expecting sha256={}", hex.to_ascii_lowercase())
            ),
            "EXPECT sha256={hex}"
        );
    }

    /// `REST <offset>` then `PUT <data.len()> <name>`: asserts
    /// `150 <len - offset>`, sends the bytes from `offset`, returns the
    /// final reply.
    #[track_caller]
    pub fn resume_put_reply(&mut self, name: &str, data: &[u8], offset: u64) -> (u16, String) {
        self.rest(offset);
        self.send_line(&format!("PUT {} {name}", data.len()));
        let left = data.len() as u64 - offset;
        let (code, text) = self.read_reply();
        assert_eq!(
            (code, text.as_str()),
            (150, left.to_string().as_str()),
            "REST {offset} + PUT {} {name:?}",
            data.len()
        );
        self.send_raw(&data[offset as usize..]);
        self.read_reply()
    }

    /// [`Client::resume_put_reply`], asserting exactly
    /// `226 stored <len> sha256=<digest of all of data>`.
    #[track_caller]
    pub fn resume_put(&mut self, name: &str, data: &[u8], offset: u64) {
        let reply = self.resume_put_reply(name, data, offset);
        assert_eq!(
            (reply.0, reply.1.as_str()),
            (226, stored(data).as_str()),
            "REST {offset} + PUT {} {name:?}",
            data.len()
        );
    }

    /// Closes the connection abortively (RST, as when a client is killed
    /// with bytes in flight): the server may lose what it has not read yet.
    pub fn abort(self) {
        use nix::sys::socket::{setsockopt, sockopt};
        let linger = libc::linger {
            l_onoff: 1,
            l_linger: 0,
        };
        setsockopt(&self.writer, sockopt::Linger, &linger).expect("setsockopt(SO_LINGER)");
        drop(self);
    }
}

/// The content of a [`Canary`].
pub const CANARY: &[u8] =
    b"CANARY-5b1e: outside the storage root; never read, changed or removed\n";

/// A file outside the storage root. Its access time is set well before its
/// modification time, so that any read of it moves the access time
/// (`relatime`, the Linux default): "never read" is checked, not assumed.
pub struct Canary {
    pub path: PathBuf,
    accessed: SystemTime,
    modified: SystemTime,
}

impl Canary {
    pub fn plant(dir: &Path) -> Canary {
        let path = dir.join("canary");
        fs::write(&path, CANARY).unwrap();
        let modified = SystemTime::now() - Duration::from_secs(3600);
        let accessed = modified - Duration::from_secs(3 * 24 * 3600);
        set_times(&path, accessed, modified);
        Canary {
            path,
            accessed,
            modified,
        }
    }

    /// Checks, in this order, that nothing read, changed or removed the
    /// canary. Reading its content here moves its access time, which is
    /// then set back, so the check can be made again later in a test.
    pub fn assert_untouched(&self) {
        let meta = fs::symlink_metadata(&self.path).expect("the canary was removed");
        assert!(meta.file_type().is_file(), "the canary was replaced");
        assert_eq!(
            meta.accessed().unwrap(),
            self.accessed,
            "the canary was read"
        );
        assert_eq!(
            meta.modified().unwrap(),
            self.modified,
            "the canary was changed"
        );
        assert_eq!(
            fs::read(&self.path).unwrap(),
            CANARY,
            "the canary was changed"
        );
        set_times(&self.path, self.accessed, self.modified);
    }
}

fn set_times(path: &Path, accessed: SystemTime, modified: SystemTime) {
    let times = FileTimes::new()
        .set_accessed(accessed)
        .set_modified(modified);
    File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_times(times)
        .unwrap();
}

/// After shutdown began, an interrupted transfer's client sees `421` or EOF,
/// never anything else.
pub fn expect_421_or_eof(c: &mut Client, who: &str) {
    match c.read_reply_or_eof() {
        ReplyOrEof::Reply(421, _) => {
            let rest = c.read_to_eof();
            assert!(rest.is_empty(), "{who}: data after 421: {rest:?}");
        }
        ReplyOrEof::Eof => {}
        ReplyOrEof::Reply(code, text) => {
            panic!("{who}: expected 421 or EOF, got `{code} {text}`")
        }
    }
}

/// What ferryd logs on stderr once its HTTP listener is bound.
pub const HTTP_LISTENING_MARKER: &str = "ferryd HTTP listening on ";
/// What ferryd logs on stderr once its control port is bound.
pub const CONTROL_LISTENING_MARKER: &str = "ferryd control port listening on ";

impl TestServer {
    /// The address ferryd logged for its HTTP listener (`--http-listen`),
    /// waited for (bounded).
    pub fn http_addr(&self) -> SocketAddr {
        self.logged_addr(HTTP_LISTENING_MARKER)
    }

    /// The address ferryd logged for its control port (`--control`),
    /// waited for (bounded).
    pub fn control_addr(&self) -> SocketAddr {
        self.logged_addr(CONTROL_LISTENING_MARKER)
    }

    /// The address after `marker` in ferryd's log, waited for (bounded).
    pub fn logged_addr(&self, marker: &str) -> SocketAddr {
        let mut found = None;
        let logged = wait_until(STARTUP_TIMEOUT, || {
            found = self.stderr_lines().iter().find_map(|line| {
                let at = line.find(marker)?;
                let rest = &line[at + marker.len()..];
                rest.split_whitespace().next()?.parse().ok()
            });
            found.is_some()
        });
        assert!(
            logged,
            "ferryd logged no {marker:?} within {STARTUP_TIMEOUT:?}:\n{}",
            self.stderr_text()
        );
        found.unwrap()
    }
}

impl Client {
    /// Reads the reply to a `LIST` already sent: blocks of `150 <n>` and
    /// `n` bytes of whole lines, until `150 0`; returns the blocks joined.
    pub fn read_list_blocks(&mut self) -> Vec<u8> {
        let mut data = Vec::new();
        loop {
            let (code, text) = self.read_reply();
            assert_eq!(code, 150, "LIST answered `{code} {text}`");
            let n: usize = text
                .parse()
                .unwrap_or_else(|_| panic!("`150 {text}` is not exactly `150 <n>`"));
            assert_eq!(n.to_string(), text, "`150 {text}` is not canonical");
            if n == 0 {
                return data;
            }
            let block = self.read_exact_bytes(n);
            assert!(block.ends_with(b"\n"), "a LIST block of whole lines");
            data.extend_from_slice(&block);
        }
    }
}

/// `user:password` in base64, as HTTP Basic carries it; written out here
/// so that the tests do not share a decoder with the server.
pub fn basic_credentials(user: &str, password: &str) -> String {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let input = format!("{user}:{password}").into_bytes();
    let mut out = String::new();
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(TABLE[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A users-file line for `user` with a PBKDF2 hash of `iterations`, made
/// by the binary's own `hash-password` command (which is under test too).
pub fn hashed_entry(user: &str, password: &str, iterations: u32) -> String {
    let mut child = Command::new(ferryd_bin())
        .args([
            "hash-password",
            "--iterations",
            &iterations.to_string(),
            user,
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let line = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(
        line.starts_with(&format!("{user}:$pbkdf2-sha256$i={iterations},l=32$")),
        "{line}"
    );
    line
}

pub mod http;
pub use http::*;

/// The tests' one corpus of file names (and paths) that are not allowed:
/// ways out of a user's directory, control bytes, invalid UTF-8, names too
/// long. (`a/b` and `/etc/passwd` are paths beneath the user's root since
/// folders came: they are refused as `550 no such folder`, see
/// `tests/it/folders.rs`.) Every
/// file command refuses each (`553` on the line protocol, `400` over
/// HTTP); the path-escape corpora in `faults` add names that may also be
/// taken literally.
pub fn bad_names() -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = [
        &b".."[..],
        b".",
        b"../x",
        b"../canary",
        b"../../canary",
        b"/",
        b"a/",
        b"a//b",
        b"./a",
        b"a/../b",
        b"x\0y",
        b"\0",
        b"\x01a",
        b"a\x7f",
        b"a\rb",
        b"\ra",
        b"a\tb",
        b"\x1b[31mred",
        b"a\x1f",
        b"\xff\xfe",
        b"\xc3",
        b"abc\xc3\x28",
        b"\xed\xa0\x80", // UTF-16 surrogate: not UTF-8
        b"\xc0\xaf",     // overlong encoding of '/'
        b"\xe2\x82",     // truncated 3-byte sequence
        b"..\xc0\xaf..", // overlong '/' between dots
    ]
    .iter()
    .map(|s| s.to_vec())
    .collect();
    v.push(vec![b'n'; 256]);
    // 256 bytes made of 2-byte characters: the limit is in bytes.
    v.push("\u{e9}".repeat(128).into_bytes());
    v
}

/// Puts an empty file under each of `names` in `dir`, as hard links to a
/// few files: what a listing or a count reads is the directory's entries,
/// and linking a name is over ten times faster than allocating an inode
/// for it (on ext4, about 250 µs a file: 25 s for 100,000). A new file is
/// started whenever one has as many links as the file system allows.
pub fn plant_empty_files(dir: &Path, names: impl IntoIterator<Item = String>) {
    let mut target: Option<PathBuf> = None;
    for name in names {
        let path = dir.join(name);
        if let Some(target) = &target {
            match fs::hard_link(target, &path) {
                Ok(()) => continue,
                Err(e) if e.raw_os_error() == Some(libc::EMLINK) => {}
                Err(e) => panic!("cannot link {}: {e}", path.display()),
            }
        }
        File::create(&path).unwrap();
        target = Some(path);
    }
}

/// The two ways [`sha256_hex`] hashes agree, at the size where it
/// switches and on a known value.
#[test]
fn sha256sum_and_the_sha2_crate_agree() {
    use sha2::{Digest, Sha256};
    let data = pseudo_random_bytes(1, SHA256SUM_FROM + 3);
    assert_eq!(sha256_hex(&data), hex::encode(Sha256::digest(&data)));
    assert_eq!(
        sha256sum(b"abc"),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
}

/// The control port's token in the tests.
pub const CONTROL_TOKEN: &str = "s3cret-control-token";

/// A file in `dir` holding [`CONTROL_TOKEN`], with permissions `mode`.
pub fn control_token_file(dir: &Path, mode: u32) -> PathBuf {
    let path = dir.join(format!("token-{mode:o}"));
    fs::write(&path, format!("{CONTROL_TOKEN}\n")).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
    path
}

/// Orders the tests that measure time, CPU or memory against the ones
/// that load the machine: all tests share one harness and its threads.
static MEASURING: std::sync::RwLock<()> = std::sync::RwLock::new(());

/// Held by a test that measures how long something takes, how much CPU or
/// memory the server uses or how often it wakes: while it runs, neither
/// another such test nor a [`cpu_heavy`] one does. Other tests, which keep
/// the machine little busy, still run beside it.
pub fn timing_sensitive() -> std::sync::RwLockWriteGuard<'static, ()> {
    MEASURING
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Held by a test that keeps the CPU busy for seconds (hashing hundreds of
/// MiB, dozens of transfers at once): it waits for a running
/// [`timing_sensitive`] test, and such tests wait for it.
pub fn cpu_heavy() -> std::sync::RwLockReadGuard<'static, ()> {
    MEASURING
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Set in a copy of the test binary started by [`in_a_process_of_its_own`].
const ALONE_VAR: &str = "FERRY_TEST_ALONE";

/// For a test that measures its own process (its resident memory): every
/// test shares the one test binary, so the test named `name` (its path in
/// the binary, `module::function`) runs again in a copy of the binary
/// where it is the only test. Returns `true` in the test that started the
/// copy, once the copy has passed (it panics if the copy failed or ran
/// no test), and `false` in the copy, which then does the work.
pub fn in_a_process_of_its_own(name: &str) -> bool {
    if std::env::var(ALONE_VAR).as_deref() == Ok(name) {
        return false;
    }
    let exe = std::env::current_exe().expect("the test binary's path");
    let out = run_command_to_exit(
        Command::new(exe)
            .args([name, "--exact", "--test-threads", "1"])
            .env(ALONE_VAR, name),
        Duration::from_secs(300),
    );
    assert!(
        out.status.success() && out.stdout.contains("test result: ok. 1 passed"),
        "{name} alone: {}\n{}{}",
        out.status,
        out.stdout,
        out.stderr
    );
    true
}

/// The metrics token the tests' servers with `--metrics-token-file` use.
pub const METRICS_TOKEN: &str = "metrics-token-9f2c41d7";

/// Writes [`METRICS_TOKEN`] to a file in `dir` with `mode`.
pub fn metrics_token_file(dir: &Path, mode: u32) -> PathBuf {
    let path = dir.join(format!("metrics-token-{mode:o}"));
    fs::write(&path, format!("{METRICS_TOKEN}\n")).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
    path
}

/// The `Authorization` header line that `/metrics` on the HTTP listener
/// takes with `--metrics-token-file`.
pub fn metrics_bearer() -> String {
    format!("Authorization: Bearer {METRICS_TOKEN}")
}

impl TestServer {
    /// The address ferryd logged for its metrics listener
    /// (`--metrics-listen`), waited for (bounded).
    pub fn metrics_addr(&self) -> SocketAddr {
        self.logged_addr("ferryd metrics listening on ")
    }
}

/// Set (to anything but `0`) by `.ci/run`, which installs every outside
/// client: a suite whose client is missing then fails instead of skipping.
pub const REQUIRE_CLIENTS_VAR: &str = "FERRY_REQUIRE_CLIENTS";

/// Whether the outside program `program` (litmus, rclone, haproxy,
/// chromium, openssl, ...) can be run. When it cannot, a test that needs
/// it prints why it skips and returns early; under `.ci/run`
/// ([`REQUIRE_CLIENTS_VAR`]) a missing client is a failure, so CI always
/// runs the suites that drive real clients.
pub fn outside_client(program: &str) -> bool {
    let found = std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|dir| {
            let candidate = dir.join(program);
            std::fs::metadata(&candidate)
                .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
        })
    });
    if found {
        return true;
    }
    let required =
        std::env::var(REQUIRE_CLIENTS_VAR).is_ok_and(|value| !value.is_empty() && value != "0");
    assert!(
        !required,
        "{program} is not installed, and {REQUIRE_CLIENTS_VAR} is set: install it (.ci/run does)"
    );
    eprintln!(
        "SKIPPED: {program} is not installed; this test needs it (install it, or see .ci/run)"
    );
    false
}

impl ServerBuilder {
    /// Starts ferryd with its open-file limit, soft and hard, set to
    /// `open_files` by util-linux's `prlimit` (as `LimitNOFILE=` would):
    /// ferryd cannot raise it past that. Callers check
    /// `outside_client("prlimit")` first.
    pub fn start_with_open_files(self, open_files: u64) -> TestServer {
        self.write_users();
        let inner = self.command();
        let mut cmd = Command::new("prlimit");
        cmd.arg(format!("--nofile={open_files}:{open_files}"))
            .arg(inner.get_program())
            .args(inner.get_args())
            .current_dir(self.dir.path());
        for (key, value) in inner.get_envs() {
            match value {
                Some(value) => cmd.env(key, value),
                None => cmd.env_remove(key),
            };
        }
        self.spawn(cmd)
    }

    /// Spawns `cmd` (ferryd, or a program that runs it in its own place)
    /// and waits (bounded) for the listening line, as [`ServerBuilder::start`].
    fn spawn(self, mut cmd: Command) -> TestServer {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn ferryd");
        let stderr = child.stderr.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::<String>::new()));
        let (tx, rx) = mpsc::channel::<String>();
        let lines2 = Arc::clone(&lines);
        let reader = thread::spawn(move || {
            let mut r = BufReader::new(stderr);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match r.read_until(b'\n', &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let line = String::from_utf8_lossy(&buf)
                            .trim_end_matches(['\n', '\r'])
                            .to_string();
                        lines2.lock().unwrap().push(line.clone());
                        let _ = tx.send(line);
                    }
                }
            }
        });
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        let addr = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(addr) = parse_listening_line(&line) {
                        break addr;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "ferryd did not print {LISTENING_MARKER:?} within {STARTUP_TIMEOUT:?}; stderr:\n{}",
                        lines.lock().unwrap().join("\n")
                    );
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let status = wait_child(&mut child, Duration::from_secs(5));
                    panic!(
                        "ferryd closed stderr before listening (status {status:?}); stderr:\n{}",
                        lines.lock().unwrap().join("\n")
                    );
                }
            }
        };
        TestServer {
            dir: self.dir,
            addr,
            child,
            exit_status: None,
            stderr_lines: lines,
            stderr_reader: Some(reader),
        }
    }
}

impl TestServer {
    /// The descriptors ferryd has open now, by number (`/proc/<pid>/fd`).
    pub fn open_descriptors(&self) -> Vec<u32> {
        let mut fds: Vec<u32> = fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .unwrap()
            .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
            .collect();
        fds.sort_unstable();
        fds
    }
}

/// A TCP connection to `to` from the loopback address `from` (127.x.y.z),
/// so that one test can play several client addresses or a proxy.
pub fn tcp_from(from: &str, to: SocketAddr) -> TcpStream {
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, SockaddrIn, bind, connect, socket};
    use std::os::fd::AsRawFd;
    let fd = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .unwrap();
    let src: std::net::SocketAddrV4 = format!("{from}:0").parse().unwrap();
    bind(fd.as_raw_fd(), &SockaddrIn::from(src)).unwrap();
    let SocketAddr::V4(dst) = to else {
        panic!("IPv4 only")
    };
    connect(fd.as_raw_fd(), &SockaddrIn::from(dst)).unwrap();
    let stream = TcpStream::from(fd);
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    stream
}

impl Client {
    /// A client over a stream already connected (and perhaps already
    /// written to), without reading the greeting.
    pub fn from_stream(stream: TcpStream) -> Client {
        stream.set_nodelay(true).unwrap();
        Client {
            reader: BufReader::with_capacity(64 * 1024, stream.try_clone().unwrap()),
            writer: stream,
        }
    }
}

/// `TcpStream::peek`, again when a signal interrupted it (std's
/// `read_exact` does this for reads; `peek` does not).
pub fn peek_retrying(stream: &TcpStream, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match stream.peek(buf) {
            Err(err) if err.kind() == ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}
