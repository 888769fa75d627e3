//! A whole line-protocol `Session`, driven from one input with no socket,
//! over a real storage root in a temporary directory.
//!
//! Input layout: `<client bytes>[SEPARATOR <schedule>]`, split at the last
//! separator. The client bytes are what the client sends, commands and
//! payload alike (seeds start with `AUTH alice pw\n`). Each schedule byte is
//! one step of the driver: take a chunk of client bytes (never more than
//! `read_limit()`), take some output as a socket would, run freely, or an
//! event of the connection's life: end of input, shutdown, end of the drain,
//! lost connection. Without a schedule the driver acts as a patient peer:
//! send everything, read everything, close.
//!
//! The driver reads every byte the session produces and checks it against a
//! model of the protocol: the greeting, then one well-formed reply per
//! command line in order (the commands are recovered from the client bytes
//! with `line::parse`, the same framing the session uses), `150 <n>`
//! followed by exactly `n` bytes that match the model's files, and nothing
//! after the session said goodbye. It also checks the buffer bounds, that the
//! session always finishes, that the logged-in user's directory ends up as
//! the model says, and that nothing else under the temporary directory
//! changes (a canary file outside the root, the other user's directory and
//! records, the server's `.ferry/tmp`).
//!
//! The model covers folders: paths in every command, `LIST <path>`,
//! `TREE`, `STAT`, `MKDIR`, `RMDIR`, `RMTREE`, `FROM`/`REPLACE`/`MOVE`
//! and `COPY`, with the user's tree checked whole at the end (every file a
//! whole version the model holds, every folder one it knows, the symlink
//! never followed), and removed trees emptied from `.ferry/tmp` by the
//! storage's housekeeping before the tree outside is compared.
//!
//! The model covers the integrity and resume commands too: `226` and `213`
//! carry the SHA-256 of the model's bytes (computed here with the `sha2`
//! crate, not with ferry's code), `EXPECT` and `REST` apply to the next
//! transfer only, and every user starts with planted partials (interrupted
//! uploads) that `PARTIAL` reports and `REST` + `PUT` continue. Socket-free
//! work (`has_work`/`work`) is run to its end after every step, so hashing
//! never overlaps another event; with files of at most 64 KiB one step of
//! `work` hashes a whole file anyway.
//!
//! When the input has an odd length, the driver takes download bytes
//! straight from the file, as the reactor's `sendfile` does
//! (`send_files_directly`, `file_output`), for every download however
//! short; otherwise through the session's buffer. The checker sees the
//! same byte stream either way.

#![no_main]
#![forbid(unsafe_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::net::SocketAddr;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

mod common;

use common::{same, short, show};
use ferry::Users;
use ferry::internal::protocol::line::{self, Command, MAX_LINE, ParseError, Parsed, Status};
use ferry::internal::protocol::name::MAX_NAME_LEN;
use ferry::internal::protocol::path::{FilePath, MAX_DEPTH};
use ferry::internal::session::line::{REPLY_BACKLOG, Session};
use ferry::internal::session::{Front, MAX_AUTH_FAILURES, PREVIEW_LEN, Services, TRANSFER_BUFFER};
use ferry::internal::storage::{Options, Storage, Usage, UserDir};
use libfuzzer_sys::fuzz_target;
use sha2::{Digest as _, Sha256};
use tempfile::TempDir;

/// Splits the client bytes from the schedule. `0xff` never occurs in UTF-8,
/// so text seeds never contain it by accident.
const SEPARATOR: &[u8] = b"\xff\xffctl";

/// Small, so that uploads stay fast and `552` is easy to reach.
const MAX_FILE_SIZE: u64 = 64 * 1024;
/// The users, both with a directory of their own. Bob's password is out of
/// reach for the fuzzer (it is compared in constant time, so comparison
/// tracing does not help), so his directory must stay untouched; should the
/// fuzzer log in as bob anyway, the model simply follows him instead.
const USERS: [(&str, &[u8]); 2] = [
    ("alice", b"pw"),
    ("bob", b"8vQz-Kd3r-Wm7x-Lp2n-Ht6c-Yb4s-Jf9g"),
];
/// Every user directory starts with these regular files...
const HELLO: &[u8] = b"hello, world\n";
const BIG_LEN: usize = 3000;
/// ...and a symlink (never opened, never listed, never replaced, never
/// followed) and an empty folder (listed, and the fuzzer's to use).
const LINK: &str = "link";
const SUBDIR: &str = "sub";
const CANARY: &[u8] = b"the canary outside the storage root\n";
/// Every user starts with these interrupted uploads (no saved hash state,
/// so continuing one hashes the bytes held first): one for an existing
/// file, one for a name that has no file.
const PARTIALS: [(&str, &[u8]); 2] = [
    ("hello", b"hello, partial world"),
    ("part", b"0123456789abcdefghijklmnopqrstuvwxyz"),
];
/// The mtime of planted files (November 2023).
const PLANTED_SECS: u64 = 1_700_000_000;

/// Longest reply line the protocol sends, CRLF included. The longest today
/// is `451 checksum mismatch: expected sha256=<64>, received sha256=<64>;
/// upload discarded`, 206 bytes; this leaves room for longer texts without
/// letting a runaway line through.
const MAX_REPLY_LINE: usize = 256;
/// Longest `LIST` or `TREE` line: `<u64 size> <i64 mtime> <path>[/]\n`,
/// the path of at most as many names as a listing enters folders.
const MAX_LISTING_LINE: usize = 20 + 1 + 20 + 1 + MAX_DEPTH * (MAX_NAME_LEN + 1) + 1;
/// Pending output outside a transfer. A command runs only while at most
/// `REPLY_BACKLOG` bytes wait, and adds one reply line (two for `PUT 0`:
/// `150 0` and `226`), or `HELP`'s line and text; shutdown may add `421`.
/// Replies never echo command bytes, so `MAX_LINE` does not enter.
const IDLE_OUTPUT_BOUND: usize = REPLY_BACKLOG
    + max(
        3 * MAX_REPLY_LINE,
        2 * MAX_REPLY_LINE + line::HELP_TEXT.len(),
    );
/// Pending output at any time. A download refills only up to
/// `TRANSFER_BUFFER` pending bytes, but a listing writes whole lines and may
/// pass it by less than one line.
const OUTPUT_BOUND: usize = max(IDLE_OUTPUT_BOUND, TRANSFER_BUFFER + MAX_LISTING_LINE);
/// `read_limit` never asks for more than a line or the rest of an upload.
const READ_LIMIT_BOUND: usize = max(MAX_LINE, MAX_FILE_SIZE as usize);

const fn max(a: usize, b: usize) -> usize {
    if a > b { a } else { b }
}

/// Chunk sizes a schedule byte selects for reading or writing: every small
/// size (to split lines and payloads anywhere), the sizes around powers of
/// two and limits, and "all".
const CHUNKS: [usize; 32] = [
    1,
    2,
    3,
    4,
    5,
    6,
    7,
    8,
    9,
    10,
    11,
    12,
    13,
    14,
    15,
    16,
    17,
    24,
    31,
    32,
    33,
    63,
    64,
    100,
    127,
    128,
    255,
    256,
    1000,
    MAX_LINE - 1,
    MAX_LINE,
    usize::MAX,
];

/// Steps before the driver declares a session that never finishes stuck.
/// Every step moves at least one byte, and a run moves a few hundred KiB.
const MAX_SETTLE_STEPS: usize = 1_000_000;

thread_local! {
    static WORLD: World = World::new();
}

fuzz_target!(|data: &[u8]| {
    WORLD.with(|world| world.run(data));
});

/// The temporary directory, shared by the runs of one process and reset
/// after each: creating a root per run would cost more than the run.
///
/// ```text
/// <tmp>/canary
/// <tmp>/root/.ferry/tmp/          uploads in progress
/// <tmp>/root/.ferry/users/<user>/ digests and partials (see PARTIALS)
/// <tmp>/root/<user>/hello, big    regular files
/// <tmp>/root/<user>/link          symlink to the canary
/// <tmp>/root/<user>/sub/          an empty folder
/// ```
struct World {
    dir: TempDir,
    services: Services,
    /// The mtime of the planted partials: the start of the process, so that
    /// they are the same in every run and do not expire (24 h) meanwhile.
    partials_time: SystemTime,
    /// The whole tree after set-up.
    baseline: Snapshot,
}

impl World {
    fn new() -> World {
        let base = scratch_base();
        remove_stale_dirs(&base);
        let dir = tempfile::Builder::new()
            .prefix(&format!("{DIR_PREFIX}{}-", std::process::id()))
            .tempdir_in(&base)
            .expect("temporary directory");
        fs::write(dir.path().join("canary"), CANARY).unwrap();
        let root = dir.path().join("root");
        let options = Options {
            fsync: false,
            ..Options::default()
        };
        let storage = Storage::open(&root, options).expect("storage root");
        let partials_time = SystemTime::now();
        let mut users = Users::new();
        for (user, password) in USERS {
            users.insert(user, password).unwrap();
            plant_home(&root.join(user), &dir.path().join("canary"));
            plant_records(&records_of(&root, user), partials_time);
        }
        let mut services = Services::new(users, storage, MAX_FILE_SIZE);
        // A failed login's reply would otherwise wait a second for a timer
        // this driver does not run.
        services.policy.login_delay = Duration::ZERO;
        // Failed logins of earlier runs must not lock the next ones out.
        services.policy.lockout_failures = 0;
        let baseline = snapshot(dir.path(), &[]);
        World {
            dir,
            services,
            partials_time,
            baseline,
        }
    }

    fn run(&self, data: &[u8]) {
        // Held through the run, so that the session shares these handles
        // and what its uploads claim against the quota shows on them.
        let storage = &self.services.storage;
        let dirs: Vec<UserDir> = USERS
            .iter()
            .map(|(user, _)| storage.user_dir(user).unwrap())
            .collect();
        let (client, schedule) = split_input(data);
        let mut driver = Driver::new(client, &self.services, data.len() % 2 == 1);
        for &step in schedule {
            driver.step(step);
        }
        driver.finish();
        let model = driver.into_model();
        // Removed trees are emptied in housekeeping, a bounded number of
        // entries a turn, as the reactor runs it.
        for _ in 0..100_000 {
            match storage.next_housekeeping() {
                Some(at) if at <= Instant::now() => storage.housekeeping(Instant::now()),
                _ => break,
            }
        }
        if let Some(at) = USERS.iter().position(|(user, _)| Some(*user) == model.user) {
            self.check_usage(&dirs[at], &model);
        }
        drop(dirs);
        self.check_and_reset(&model);
    }

    /// With the session gone, every upload gave back what it claimed: the
    /// usage the quota counts is exactly the files and partials on disk.
    fn check_usage(&self, dir: &UserDir, model: &Model) {
        let user = model.user.unwrap();
        let partials = self
            .dir
            .path()
            .join(records_of(Path::new("root"), user))
            .join("partial");
        let held: u64 = fs::read_dir(partials)
            .unwrap()
            .map(|entry| entry.unwrap().metadata().unwrap().len())
            .sum();
        let stored: u64 = model
            .files
            .values()
            .map(|content| content.len() as u64)
            .sum();
        let want = Usage {
            bytes: stored + held,
            files: model.files.len() as u64,
        };
        same(
            self.services.storage.usage(dir).unwrap(),
            want,
            "usage after the session",
        );
    }

    /// After the session is gone: its user's directory holds what the model
    /// says, and everything else is as it was.
    fn check_and_reset(&self, model: &Model) {
        let home = model.user.map(|user| Path::new("root").join(user));
        let records = model.user.map(|user| records_of(Path::new("root"), user));
        let skip: Vec<PathBuf> = home.iter().chain(&records).cloned().collect();
        let now = snapshot(self.dir.path(), &skip);
        let outside_home = |path: &&PathBuf| !skip.iter().any(|skip| path.starts_with(skip));
        let before = self.baseline.iter().filter(|(path, _)| outside_home(path));
        if !now.iter().eq(before) {
            let changed: Vec<_> = now
                .keys()
                .chain(self.baseline.keys().filter(outside_home))
                .filter(|path| now.get(*path) != self.baseline.get(*path))
                .collect();
            panic!("changed outside the logged-in user's directory: {changed:?}");
        }
        if let Some(home) = home {
            let home = self.dir.path().join(home);
            check_home(&home, model, &self.dir.path().join("canary"));
            // Planting again is the slowest part of a run: only when needed.
            if model.changed {
                fs::remove_dir_all(&home).unwrap();
                plant_home(&home, &self.dir.path().join("canary"));
            }
        }
        // Digests recorded and partials used or left: back to the start.
        if let Some(records) = records {
            let records = self.dir.path().join(records);
            fs::remove_dir_all(&records).unwrap();
            plant_records(&records, self.partials_time);
        }
        // All of that happened behind the server's back: its running
        // counts of the user's usage no longer hold.
        if let Some(user) = model.user {
            self.services.storage.recount(user);
        }
    }
}

/// Where the server keeps a user's digests and partials.
fn records_of(root: &Path, user: &str) -> PathBuf {
    root.join(".ferry").join("users").join(user)
}

/// The record directories of a user as the server creates them, with the
/// planted partials.
fn plant_records(records: &Path, mtime: SystemTime) {
    use std::os::unix::fs::DirBuilderExt;
    let mut builder = fs::DirBuilder::new();
    builder.mode(0o700);
    builder.create(records).unwrap();
    for sub in ["sums", "partial", "partial-sums", "props"] {
        builder.create(records.join(sub)).unwrap();
    }
    for (name, content) in PARTIALS {
        let path = records.join("partial").join(name);
        fs::write(&path, content).unwrap();
        let file = fs::File::options().write(true).open(&path).unwrap();
        file.set_modified(mtime).unwrap();
    }
}

const DIR_PREFIX: &str = "ferry-fuzz-session-";

/// Where the temporary directory goes: a run is mostly file-system calls,
/// and they are several times faster on tmpfs than on a disk.
fn scratch_base() -> PathBuf {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}

/// libFuzzer ends the process with `exit`, so a `TempDir` in a thread-local
/// is never dropped: remove what earlier processes left behind.
fn remove_stale_dirs(base: &Path) {
    let Ok(entries) = fs::read_dir(base) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|name| name.strip_prefix(DIR_PREFIX))
            .and_then(|rest| rest.split('-').next())
        else {
            continue;
        };
        if !Path::new("/proc").join(pid).exists() {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

fn big_content() -> Vec<u8> {
    (0..BIG_LEN).map(|i| b'a' + (i % 26) as u8).collect()
}

/// Plants a user directory. The files get a fixed mtime, so that a planted
/// directory is identical to the baseline snapshot.
fn plant_home(home: &Path, canary: &Path) {
    fs::create_dir(home).unwrap();
    for (name, content) in [("hello", HELLO.to_vec()), ("big", big_content())] {
        let path = home.join(name);
        fs::write(&path, content).unwrap();
        let file = fs::File::options().write(true).open(&path).unwrap();
        file.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(PLANTED_SECS))
            .unwrap();
    }
    std::os::unix::fs::symlink(canary, home.join(LINK)).unwrap();
    fs::create_dir(home.join(SUBDIR)).unwrap();
}

/// The directory of the user who logged in holds exactly the model's
/// regular files and folders, and the symlink untouched.
fn check_home(home: &Path, model: &Model, canary: &Path) {
    let (mut regular, mut folders) = (0, 0);
    let mut stack = vec![(home.to_path_buf(), String::new())];
    while let Some((dir, prefix)) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name().into_string().expect("UTF-8 name");
            let rel = format!("{prefix}{name}");
            let path = entry.path();
            let kind = fs::symlink_metadata(&path).unwrap().file_type();
            if rel == LINK {
                assert!(kind.is_symlink());
                assert_eq!(fs::read_link(&path).unwrap(), canary);
            } else if kind.is_dir() {
                assert!(
                    model.folders.contains(&rel),
                    "a folder {rel:?} the model lacks"
                );
                folders += 1;
                stack.push((path, format!("{rel}/")));
            } else {
                assert!(kind.is_file(), "{path:?}");
                let content = fs::read(&path).unwrap();
                let want = model.files.get(&rel);
                assert!(
                    want == Some(&content),
                    "{rel:?} holds {}, the model says {}",
                    show(&content),
                    want.map_or("nothing".to_owned(), |want| show(want))
                );
                regular += 1;
            }
        }
    }
    assert_eq!(regular, model.files.len(), "files {:?}", model.files.keys());
    assert_eq!(folders, model.folders.len(), "folders {:?}", model.folders);
}

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Dir,
    File {
        content: Vec<u8>,
        modified: SystemTime,
    },
    Symlink(PathBuf),
    Other,
}

type Snapshot = BTreeMap<PathBuf, Node>;

/// Everything under `base` by relative path, except the subtrees `skip`.
fn snapshot(base: &Path, skip: &[PathBuf]) -> Snapshot {
    let mut nodes = Snapshot::new();
    let mut pending = vec![PathBuf::new()];
    while let Some(dir) = pending.pop() {
        for entry in fs::read_dir(base.join(&dir)).unwrap() {
            let entry = entry.unwrap();
            let relative = dir.join(entry.file_name());
            if skip.contains(&relative) {
                continue;
            }
            let meta = fs::symlink_metadata(entry.path()).unwrap();
            let node = if meta.is_dir() {
                pending.push(relative.clone());
                Node::Dir
            } else if meta.is_file() {
                Node::File {
                    content: fs::read(entry.path()).unwrap(),
                    modified: meta.modified().unwrap(),
                }
            } else if meta.is_symlink() {
                Node::Symlink(fs::read_link(entry.path()).unwrap())
            } else {
                Node::Other
            };
            nodes.insert(relative, node);
        }
    }
    nodes
}

fn split_input(data: &[u8]) -> (&[u8], &[u8]) {
    let found = data
        .windows(SEPARATOR.len())
        .rposition(|window| window == SEPARATOR);
    match found {
        Some(at) => (&data[..at], &data[at + SEPARATOR.len()..]),
        None => (data, &[]),
    }
}

/// Plays the reactor and the client.
struct Driver<'a> {
    session: Session,
    services: &'a Services,
    client: &'a [u8],
    /// Client bytes handed to the session so far.
    fed: usize,
    /// How many bytes of `session.output()` the checker has seen.
    seen: usize,
    eof: bool,
    shutdown: bool,
    drain_ended: bool,
    lost: bool,
    checker: Checker,
}

impl<'a> Driver<'a> {
    fn new(client: &'a [u8], services: &'a Services, direct: bool) -> Driver<'a> {
        let peer: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let mut session = Session::new(peer, services);
        if direct {
            session.send_files_directly(0);
        }
        let mut driver = Driver {
            session,
            services,
            client,
            fed: 0,
            seen: 0,
            eof: false,
            shutdown: false,
            drain_ended: false,
            lost: false,
            checker: Checker::new(),
        };
        driver.sync(0, false);
        driver
    }

    /// One schedule byte: the top three bits pick the action, the low five
    /// its size or event.
    fn step(&mut self, step: u8) {
        let arg = usize::from(step & 0x1f);
        match step >> 5 {
            0..=2 => {
                self.feed(CHUNKS[arg]);
            }
            3 | 4 => {
                self.write(CHUNKS[arg]);
            }
            5 => {
                self.write(usize::MAX);
            }
            6 => self.settle(),
            _ => match arg % 4 {
                0 => self.eof(),
                1 => self.begin_shutdown(),
                2 => self.end_drain(),
                _ => self.connection_lost(),
            },
        }
    }

    /// The client sends all it has and reads all it gets, then closes its
    /// side; the session must then finish.
    fn finish(&mut self) {
        self.settle();
        self.eof();
        self.settle();
        assert!(
            self.session.is_done(),
            "the session neither sends, reads nor finishes"
        );
        self.checker
            .finish(&self.client[..self.fed], self.lost || self.drain_ended);
    }

    fn into_model(self) -> Model {
        drop(self.session);
        self.checker.model
    }

    fn settle(&mut self) {
        for _ in 0..MAX_SETTLE_STEPS {
            let wrote = self.write(usize::MAX);
            let fed = self.feed(usize::MAX);
            if !wrote && !fed {
                return;
            }
        }
        panic!("the session keeps producing output");
    }

    /// Hands up to `n` client bytes to the session, as a read would.
    fn feed(&mut self, n: usize) -> bool {
        let limit = self.session.read_limit();
        let n = n.min(limit).min(self.client.len() - self.fed);
        if n == 0 || self.eof {
            return false;
        }
        let chunk = &self.client[self.fed..self.fed + n];
        self.fed += n;
        self.session.receive(chunk, self.services);
        self.sync(self.seen, false);
        true
    }

    /// Takes up to `n` bytes of output, as a socket write would, or of the
    /// file the session offers once its output is all sent.
    fn write(&mut self, n: usize) -> bool {
        if self.session.output().is_empty() {
            return self.write_file(n);
        }
        let n = n.min(self.session.output().len());
        if n == 0 {
            return false;
        }
        self.session.output_written(n, self.services);
        self.sync(self.seen - n, false);
        true
    }

    /// Sends up to `n` bytes of the file the session offers, as the
    /// reactor's `sendfile` would: straight from the file, at the offset
    /// given, to the client.
    fn write_file(&mut self, n: usize) -> bool {
        let Some(file) = self.session.file_output() else {
            return false;
        };
        let n = n.min(usize::try_from(file.len).unwrap_or(usize::MAX));
        assert!(n > 0, "a file output of no bytes");
        let mut bytes = vec![0; n];
        file.file
            .read_exact_at(&mut bytes, file.offset)
            .expect("the file holds the bytes offered");
        self.session.file_output_written(n as u64, self.services);
        self.checker.feed(&bytes, &self.client[..self.fed]);
        // Nothing was pending before; whatever is now came after the file.
        self.sync(0, false);
        true
    }

    /// The reactor reports end of input only from a read, which it makes
    /// only while the session takes bytes. The client sends nothing after.
    fn eof(&mut self) {
        if self.eof || self.session.read_limit() == 0 {
            return;
        }
        self.eof = true;
        self.session.receive_eof(self.services);
        self.sync(self.seen, true);
    }

    fn begin_shutdown(&mut self) {
        if self.shutdown || self.session.is_done() {
            return;
        }
        self.shutdown = true;
        self.checker.shutdown_requested = true;
        self.session.begin_shutdown(self.services);
        self.sync(self.seen, true);
    }

    /// The reactor ends the drain only after starting it, once.
    fn end_drain(&mut self) {
        self.begin_shutdown();
        if self.drain_ended || self.session.is_done() {
            return;
        }
        self.drain_ended = true;
        self.session.end_drain(self.services);
        self.sync(self.seen, true);
        assert_eq!(
            self.session.read_limit(),
            0,
            "nothing is read after the drain"
        );
    }

    fn connection_lost(&mut self) {
        if self.session.is_done() {
            return;
        }
        self.lost = true;
        self.session.connection_lost("fuzzed", self.services);
        self.sync(self.seen, true);
        assert!(self.session.is_done(), "a lost connection is finished");
    }

    /// Passes the bytes the last call added to the checker and checks the
    /// bounds. `kept` is how many already seen bytes should still be
    /// pending; fewer means the session dropped its output, which only a
    /// lost connection, an aborted upload or a cut download may do.
    fn sync(&mut self, kept: usize, may_drop: bool) {
        // Socket-free work, as the reactor runs it: a step at a time, until
        // there is none. Each step must do something, or report nothing
        // done while the session waits for a check slot.
        let mut steps = 0;
        while self.session.has_work() {
            self.session.work(self.services);
            steps += 1;
            assert!(steps < MAX_SETTLE_STEPS, "the session keeps working");
        }
        let output = self.session.output();
        if output.len() < kept {
            assert!(may_drop, "pending output shrank by itself");
            assert!(output.is_empty(), "output dropped only in part");
            assert!(self.session.is_done(), "output dropped, yet not finished");
        } else {
            self.checker.feed(&output[kept..], &self.client[..self.fed]);
        }
        self.seen = output.len();

        assert!(
            output.len() <= OUTPUT_BOUND,
            "{} bytes pending",
            output.len()
        );
        if !self.session.is_transferring() {
            assert!(
                output.len() <= IDLE_OUTPUT_BOUND,
                "{} bytes pending outside a transfer",
                output.len()
            );
        }
        let limit = self.session.read_limit();
        assert!(limit <= READ_LIMIT_BOUND, "read_limit {limit}");
        if !self.session.is_transferring() {
            assert!(limit <= MAX_LINE, "read_limit {limit} outside an upload");
        }
        if self.eof || self.session.is_done() {
            assert_eq!(limit, 0, "reading after the end");
        }
    }
}

/// What the client knows: who is logged in and which files they have.
#[derive(Debug)]
struct Model {
    user: Option<&'static str>,
    failures: u8,
    /// By path.
    files: BTreeMap<String, Vec<u8>>,
    /// The folders, by path.
    folders: BTreeSet<String>,
    /// `FROM` and `REPLACE` for the next `MOVE` or `COPY`.
    from: Option<String>,
    replace: bool,
    /// Bytes held of interrupted uploads, by name.
    partials: BTreeMap<String, Vec<u8>>,
    /// `REST` for the next `GET` or `PUT`.
    rest: Option<u64>,
    /// `EXPECT` for the next `PUT`.
    expect: Option<[u8; 32]>,
    /// A file was stored or deleted.
    changed: bool,
}

enum Lookup<'m> {
    File(&'m [u8]),
    Folder,
    /// The symlink, or a path through it; a path through a file or a
    /// missing folder.
    NotRegular,
    NoFolder,
    Missing,
}

impl Model {
    fn new() -> Model {
        let mut files = BTreeMap::new();
        files.insert("hello".to_owned(), HELLO.to_vec());
        files.insert("big".to_owned(), big_content());
        let partials = PARTIALS
            .iter()
            .map(|(name, content)| (name.to_string(), content.to_vec()))
            .collect();
        Model {
            user: None,
            failures: 0,
            files,
            folders: BTreeSet::from([SUBDIR.to_owned()]),
            from: None,
            replace: false,
            partials,
            rest: None,
            expect: None,
            changed: false,
        }
    }

    fn lookup(&self, name: &str) -> Lookup<'_> {
        if name == LINK || name.starts_with(&format!("{LINK}/")) {
            return Lookup::NotRegular;
        }
        if let Some((parent, _)) = name.rsplit_once('/')
            && !self.folders.contains(parent)
        {
            return Lookup::NoFolder;
        }
        match self.files.get(name) {
            Some(content) => Lookup::File(content),
            None if self.folders.contains(name) => Lookup::Folder,
            None => Lookup::Missing,
        }
    }

    /// What `LIST` (or with `tree`, `TREE`) of the folder `folder` (the
    /// root for "") lists: `(name, size)`, a folder's name with a `/`.
    fn listing(&self, folder: &str, tree: bool) -> Vec<(String, u64)> {
        let prefix = if folder.is_empty() {
            String::new()
        } else {
            format!("{folder}/")
        };
        let under = |path: &str| -> Option<String> {
            let rest = path.strip_prefix(&prefix)?;
            (tree || !rest.contains('/')).then(|| rest.to_owned())
        };
        let mut entries: Vec<(String, u64)> = self
            .files
            .iter()
            .filter_map(|(path, content)| under(path).map(|name| (name, content.len() as u64)))
            .chain(
                self.folders
                    .iter()
                    .filter_map(|path| under(path).map(|name| (format!("{name}/"), 0))),
            )
            .collect();
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        entries
    }

    /// Moves `from` (a file or folder) and everything beneath it to `to`.
    fn rename(&mut self, from: &str, to: &str) {
        let moved = |path: &str| -> Option<String> {
            if path == from {
                Some(to.to_owned())
            } else {
                path.strip_prefix(&format!("{from}/"))
                    .map(|rest| format!("{to}/{rest}"))
            }
        };
        let files: Vec<String> = self
            .files
            .keys()
            .filter(|p| moved(p).is_some())
            .cloned()
            .collect();
        for path in files {
            let content = self.files.remove(&path).unwrap();
            self.files.insert(moved(&path).unwrap(), content);
        }
        let folders: Vec<String> = self
            .folders
            .iter()
            .filter(|p| moved(p).is_some())
            .cloned()
            .collect();
        for path in folders {
            self.folders.remove(&path);
            self.folders.insert(moved(&path).unwrap());
        }
    }

    /// Removes `path` and everything beneath it.
    fn remove_tree(&mut self, path: &str) {
        let beneath = format!("{path}/");
        self.files
            .retain(|p, _| p != path && !p.starts_with(&beneath));
        self.folders
            .retain(|p| p != path && !p.starts_with(&beneath));
    }
}

/// Where the reply stream is.
#[derive(Debug)]
enum Phase {
    Greeting,
    Replies,
    /// After `150 <n>` for a download: `left` raw bytes to come.
    Data {
        left: usize,
        expect: Expect,
    },
    /// After `150 <n>` for `PUT`: the payload is the client's `size` (`n`)
    /// bytes at `payload_at`, behind the `prefix` a resumed upload kept; the
    /// result (`226`, or `451` for a digest other than `expect`) is the next
    /// reply.
    Upload {
        name: String,
        prefix: Vec<u8>,
        size: usize,
        payload_at: usize,
        expect: Option<[u8; 32]>,
    },
    /// Between the blocks of a `LIST`: the next reply is `150 <n>`, another
    /// block, or `150 0`, the end; `got` holds the blocks so far.
    ListBlocks {
        got: Vec<u8>,
        files: Vec<(String, u64)>,
    },
    /// After `221`, `421` or the last failed login: nothing may follow.
    Closed,
}

#[derive(Debug)]
enum Expect {
    /// The exact bytes, consumed from the front as they arrive.
    Bytes(Vec<u8>),
    /// A listing of these `(name, size)`, checked when complete.
    Listing {
        got: Vec<u8>,
        files: Vec<(String, u64)>,
    },
}

/// Reads the reply stream as a client would, against the model.
struct Checker {
    phase: Phase,
    /// Produced bytes not yet taken (an incomplete reply line).
    pending: Vec<u8>,
    model: Model,
    /// How far the client bytes are accounted for: commands that got their
    /// reply, and upload payloads.
    cursor: usize,
    /// A too-long line was answered: skip to its LF before the next command.
    discarding: bool,
    shutdown_requested: bool,
}

impl Checker {
    fn new() -> Checker {
        Checker {
            phase: Phase::Greeting,
            pending: Vec::new(),
            model: Model::new(),
            cursor: 0,
            discarding: false,
            shutdown_requested: false,
        }
    }

    /// `bytes` were just produced; `client` is every byte the session got.
    fn feed(&mut self, bytes: &[u8], client: &[u8]) {
        self.pending.extend_from_slice(bytes);
        let mut at = 0;
        loop {
            let rest = &self.pending[at..];
            match &mut self.phase {
                Phase::Closed => {
                    assert!(
                        rest.is_empty(),
                        "bytes after the last reply: {}",
                        show(rest)
                    );
                    break;
                }
                Phase::Data { left, expect } => {
                    let n = (*left).min(rest.len());
                    match expect {
                        Expect::Bytes(want) => {
                            assert!(
                                rest[..n] == want[..n],
                                "downloaded bytes\n  got: {}\n want: {}",
                                show(&rest[..n]),
                                show(&want[..n])
                            );
                            want.drain(..n);
                        }
                        Expect::Listing { got, .. } => got.extend_from_slice(&rest[..n]),
                    }
                    *left -= n;
                    at += n;
                    if *left > 0 {
                        break;
                    }
                    let Phase::Data { expect, .. } =
                        std::mem::replace(&mut self.phase, Phase::Replies)
                    else {
                        unreachable!()
                    };
                    match expect {
                        Expect::Listing { got, files } => {
                            assert!(
                                got.ends_with(b"\n"),
                                "a block of whole lines: {}",
                                show(&got)
                            );
                            self.phase = Phase::ListBlocks { got, files };
                        }
                        expect => check_download(expect),
                    }
                }
                Phase::Greeting
                | Phase::Replies
                | Phase::Upload { .. }
                | Phase::ListBlocks { .. } => {
                    let Some(lf) = rest.iter().position(|&b| b == b'\n') else {
                        assert!(rest.len() < MAX_REPLY_LINE, "runaway reply {}", show(rest));
                        break;
                    };
                    let reply = rest[..=lf].to_vec();
                    at += lf + 1;
                    let (code, text) = parse_reply(&reply);
                    self.reply(code, text, client);
                }
            }
        }
        self.pending.drain(..at);
    }

    fn reply(&mut self, code: u16, text: &str, client: &[u8]) {
        match std::mem::replace(&mut self.phase, Phase::Replies) {
            Phase::Greeting => assert_eq!(code, 220, "greeting"),
            Phase::Upload {
                name,
                prefix,
                size,
                payload_at,
                expect,
            } => match code {
                226 | 451 => {
                    let payload = client
                        .get(payload_at..payload_at + size)
                        .unwrap_or_else(|| panic!("{code} before the whole payload arrived"));
                    let mut content = prefix;
                    content.extend_from_slice(payload);
                    let digest = sha256(&content);
                    match expect {
                        Some(expected) if expected != digest => {
                            // protocol.md, "Integrity": the upload is
                            // discarded, the old file stays.
                            assert_eq!(
                                text,
                                format!(
                                    "checksum mismatch: expected sha256={}, \
                                     received sha256={}; upload discarded",
                                    hex(&expected),
                                    hex(&digest)
                                )
                            );
                        }
                        _ => {
                            assert_eq!(code, 226, "upload of {name:?} answered {text:?}");
                            assert_eq!(
                                text,
                                format!("stored {} sha256={}", content.len(), hex(&digest))
                            );
                            // A completed upload supersedes its partial.
                            self.model.partials.remove(&name);
                            self.model.files.insert(name, content);
                            self.model.changed = true;
                        }
                    }
                }
                421 => {
                    assert!(self.shutdown_requested, "421 without a shutdown");
                    self.phase = Phase::Closed;
                }
                _ => panic!("upload ended with {code} {text}"),
            },
            Phase::Replies if code == 421 => {
                assert!(self.shutdown_requested, "421 without a shutdown");
                self.phase = Phase::Closed;
            }
            Phase::Replies => {
                // A LIST taken before the shutdown but not yet answered is
                // answered 421 (above), so nothing else may come now.
                assert!(
                    !self.shutdown_requested,
                    "a command ran after the shutdown began: {code} {text:?} answered {}",
                    show(client.get(self.cursor..).unwrap_or_default())
                );
                let (command, consumed) = self.next_command(client);
                self.cursor += consumed;
                self.answer(command, code, text);
            }
            Phase::ListBlocks { got, files } => list_block(&mut self.phase, code, text, got, files),
            Phase::Data { .. } | Phase::Closed => unreachable!(),
        }
    }

    /// The command line the next reply answers, and how many client bytes
    /// it took.
    fn next_command<'c>(&mut self, client: &'c [u8]) -> (Result<Command<'c>, ParseError>, usize) {
        if self.discarding {
            let rest = client.get(self.cursor..).unwrap_or_default();
            let end = line::skip_line(rest).expect("a reply before the long line ended");
            self.cursor += end;
            self.discarding = false;
        }
        let rest = client.get(self.cursor..).unwrap_or_default();
        match line::parse(rest) {
            Status::Complete(Parsed { command, consumed }) => {
                if command == Err(ParseError::LineTooLong) {
                    self.discarding = true;
                }
                (command, consumed)
            }
            Status::Partial => panic!("a reply without a complete command line: {}", show(rest)),
        }
    }

    /// Checks the reply to one command against the model and updates it.
    fn answer(&mut self, command: Result<Command<'_>, ParseError>, code: u16, text: &str) {
        let logged_in = self.model.user.is_some();
        let command = match command {
            Err(err) => {
                let want = match err {
                    _ if !logged_in && err.verb().is_some_and(|verb| verb.needs_login()) => 530,
                    ParseError::EmptyLine | ParseError::UnknownCommand => 500,
                    ParseError::LineTooLong => 500,
                    ParseError::BadArguments(_) => 501,
                    ParseError::NameNotAllowed(_) => 553,
                };
                assert_eq!(code, want, "{err:?} answered {text:?}");
                return;
            }
            Ok(command) if command.verb().needs_login() && !logged_in => {
                assert_eq!(code, 530, "{} before login: {text:?}", short(&command));
                return;
            }
            Ok(command) => command,
        };
        let context = format!("{} answered {code} {text:?}", short(&command));
        match command {
            Command::Noop => assert_eq!(code, 200, "{context}"),
            // Nobody breaks the storage or stops the server in a run.
            Command::Health => assert_eq!((code, text), (200, "healthy"), "{context}"),
            Command::Help => {
                let left = data_size(code, text, &context);
                assert_eq!(left, line::HELP_TEXT.len(), "{context}");
                self.phase = Phase::Data {
                    left,
                    expect: Expect::Bytes(line::HELP_TEXT.as_bytes().to_vec()),
                };
            }
            Command::Quit => {
                assert_eq!(code, 221, "{context}");
                self.phase = Phase::Closed;
            }
            Command::Auth { .. } if logged_in => assert_eq!(code, 503, "{context}"),
            // No password and no client certificate (no TLS here): a usage
            // error, not a failed login.
            Command::Auth { password: [], .. } => assert_eq!(code, 501, "{context}"),
            Command::Auth { user, password } => {
                let known = USERS
                    .iter()
                    .find(|(name, secret)| name.as_bytes() == user && *secret == password);
                if let Some((name, _)) = known {
                    assert_eq!(code, 230, "{context}");
                    self.model.user = Some(*name);
                } else {
                    assert_eq!(code, 530, "{context}");
                    self.model.failures += 1;
                    if self.model.failures >= MAX_AUTH_FAILURES {
                        self.phase = Phase::Closed;
                    }
                }
            }
            Command::List { path } | Command::Tree { path } => {
                let tree = matches!(command, Command::Tree { .. });
                let folder = path.map_or("", |p| p.as_str());
                if !folder.is_empty() && !matches!(self.model.lookup(folder), Lookup::Folder) {
                    assert_eq!(code, 550, "{context}");
                    return;
                }
                let files = self.model.listing(folder, tree);
                assert_eq!(code, 150, "{context}");
                list_block(&mut self.phase, code, text, Vec::new(), files);
            }
            Command::Stat { name } => match self.model.lookup(name.as_str()) {
                Lookup::File(content) => {
                    assert_eq!(code, 213, "{context}");
                    let want = format!("type=file size={} mtime=", content.len());
                    assert!(text.starts_with(&want), "{context}");
                    if let Some((_, digest)) = text.split_once(" sha256=") {
                        assert_eq!(digest, hex(&sha256(content)), "{context}");
                    }
                }
                Lookup::Folder => {
                    assert_eq!(code, 213, "{context}");
                    assert!(text.starts_with("type=folder mtime="), "{context}");
                }
                _ => assert_eq!(code, 550, "{context}"),
            },
            Command::Mkdir { name } => match self.model.lookup(name.as_str()) {
                Lookup::Missing => {
                    assert_eq!((code, text), (257, "created"), "{context}");
                    self.model.folders.insert(name.as_str().to_owned());
                    self.model.changed = true;
                }
                _ => assert_eq!(code, 550, "{context}"),
            },
            Command::Rmdir { name } => match self.model.lookup(name.as_str()) {
                Lookup::Folder if self.model.listing(name.as_str(), false).is_empty() => {
                    assert_eq!((code, text), (250, "removed"), "{context}");
                    self.model.folders.remove(name.as_str());
                    self.model.changed = true;
                }
                _ => assert_eq!(code, 550, "{context}"),
            },
            Command::Rmtree { name } => match self.model.lookup(name.as_str()) {
                Lookup::File(_) | Lookup::Folder => {
                    assert_eq!((code, text), (250, "removed"), "{context}");
                    self.model.remove_tree(name.as_str());
                    self.model.changed = true;
                }
                _ => assert_eq!(code, 550, "{context}"),
            },
            Command::From { name } => {
                assert_eq!((code, text), (350, "ready for MOVE or COPY"), "{context}");
                self.model.from = Some(name.as_str().to_owned());
            }
            Command::Replace => {
                assert_eq!((code, text), (200, "replacing"), "{context}");
                self.model.replace = true;
            }
            Command::Move { name } | Command::Copy { name } => {
                let copy = matches!(command, Command::Copy { .. });
                self.answer_move(name, copy, code, text, &context);
            }
            Command::View { name } | Command::Get { name } => {
                let preview = matches!(command, Command::View { .. });
                // REST is GET's (and PUT's) only, used up whatever the
                // outcome; VIEW leaves it. REST 0 is the same as none.
                let offset = if preview {
                    0
                } else {
                    self.model.rest.take().unwrap_or(0)
                };
                match self.model.lookup(name.as_str()) {
                    Lookup::File(content) if offset > content.len() as u64 => {
                        assert_eq!(code, 501, "{context}");
                        let want = format!(
                            "offset {offset} is past the end of the file ({} bytes)",
                            content.len()
                        );
                        assert_eq!(text, want, "{context}");
                    }
                    Lookup::File(content) => {
                        let content = &content[offset as usize..];
                        let shown = if preview {
                            content.len().min(PREVIEW_LEN as usize)
                        } else {
                            content.len()
                        };
                        let want = content[..shown].to_vec();
                        let left = data_size(code, text, &context);
                        assert_eq!(left, shown, "{context}");
                        self.phase = Phase::Data {
                            left,
                            expect: Expect::Bytes(want),
                        };
                    }
                    _ => assert_eq!(code, 550, "{context}"),
                }
            }
            Command::Put { size, name } => {
                self.answer_put(size, name.as_str(), code, text, &context)
            }
            Command::Hash { name } => match self.model.lookup(name.as_str()) {
                Lookup::File(content) => {
                    assert_eq!(code, 213, "{context}");
                    assert_eq!(
                        text,
                        format!("sha256={}", hex(&sha256(content))),
                        "{context}"
                    );
                }
                _ => assert_eq!(code, 550, "{context}"),
            },
            Command::Partial { name } => {
                let held = self.model.partials.get(name.as_str()).map_or(0, Vec::len);
                assert_eq!(code, 213, "{context}");
                assert_eq!(text, held.to_string(), "{context}");
            }
            Command::Rest { offset } => {
                assert_eq!(code, 350, "{context}");
                assert_eq!(text, format!("restarting at {offset}"), "{context}");
                self.model.rest = Some(offset);
            }
            Command::Expect { sha256 } => {
                assert_eq!(code, 200, "{context}");
                let digest = *sha256.as_bytes();
                assert_eq!(
                    text,
                    format!("expecting sha256={}", hex(&digest)),
                    "{context}"
                );
                self.model.expect = Some(digest);
            }
            Command::Del { name } => match self.model.lookup(name.as_str()) {
                Lookup::File(_) => {
                    assert_eq!(code, 250, "{context}");
                    self.model.files.remove(name.as_str());
                    self.model.changed = true;
                }
                _ => assert_eq!(code, 550, "{context}"),
            },
        }
    }

    /// `MOVE` and `COPY`, in the order of checks of `storage/folders.rs`:
    /// a `FROM` first, the same path (and for a move, into itself), the
    /// source, the destination's folder, an existing destination.
    fn answer_move(&mut self, to: FilePath<'_>, copy: bool, code: u16, text: &str, context: &str) {
        let (from, replace) = (
            self.model.from.take(),
            std::mem::take(&mut self.model.replace),
        );
        let Some(from) = from else {
            assert_eq!((code, text), (503, "send FROM first"), "{context}");
            return;
        };
        let to = to.as_str();
        let into_itself = to.starts_with(&format!("{from}/"));
        let folder = matches!(self.model.lookup(&from), Lookup::Folder);
        if from == to || (into_itself && (!copy || folder)) {
            assert_eq!(code, 553, "{context}");
            return;
        }
        let source = match self.model.lookup(&from) {
            Lookup::File(content) => Some(content.to_vec()),
            Lookup::Folder => None,
            _ => {
                assert_eq!(code, 550, "{context}");
                return;
            }
        };
        if copy && source.is_none() {
            // A folder is copied to a new folder, never over anything.
            if !matches!(self.model.lookup(to), Lookup::Missing) {
                assert_eq!(code, 550, "{context}");
                return;
            }
            assert_eq!(code, 250, "{context}");
            let prefix = format!("{from}/");
            let files: Vec<(String, Vec<u8>)> = self
                .model
                .files
                .iter()
                .filter_map(|(p, c)| {
                    p.strip_prefix(&prefix)
                        .map(|rest| (rest.to_owned(), c.clone()))
                })
                .collect();
            let folders: Vec<String> = self
                .model
                .folders
                .iter()
                .filter_map(|p| p.strip_prefix(&prefix).map(str::to_owned))
                .collect();
            let bytes: usize = files.iter().map(|(_, c)| c.len()).sum();
            assert_eq!(
                text,
                format!("copied {} files, {bytes} bytes", files.len()),
                "{context}"
            );
            self.model.folders.insert(to.to_owned());
            for rest in folders {
                self.model.folders.insert(format!("{to}/{rest}"));
            }
            for (rest, content) in files {
                let path = format!("{to}/{rest}");
                self.model.partials.remove(&path);
                self.model.files.insert(path, content);
            }
            self.model.changed = true;
            return;
        }
        let fits = match self.model.lookup(to) {
            Lookup::NoFolder | Lookup::NotRegular => false,
            Lookup::Missing => true,
            _ if !replace => false,
            Lookup::File(_) => source.is_some(),
            Lookup::Folder => source.is_none() && self.model.listing(to, false).is_empty(),
        };
        if !fits {
            assert_eq!(code, 550, "{context}");
            return;
        }
        assert_eq!(code, 250, "{context}");
        self.model.remove_tree(to);
        self.model.changed = true;
        match source {
            Some(content) if copy => {
                let want = format!("copied {} sha256={}", content.len(), hex(&sha256(&content)));
                assert_eq!(text, want, "{context}");
                // Put in place like an upload: its partial is superseded.
                self.model.partials.remove(to);
                self.model.files.insert(to.to_owned(), content);
            }
            _ => {
                assert_eq!(text, "moved", "{context}");
                self.model.rename(&from, to);
            }
        }
    }

    /// `PUT`, in the order of checks of protocol.md ("Resume"): the size,
    /// the `REST` offset against the size, the target, the offset against
    /// the bytes held. `REST` and `EXPECT` are used up whatever the outcome.
    fn answer_put(&mut self, size: u64, name: &str, code: u16, text: &str, context: &str) {
        let rest = self.model.rest.take();
        let expect = self.model.expect.take();
        if size > MAX_FILE_SIZE {
            assert_eq!(code, 552, "{context}");
            let want = format!("file too large (maximum {MAX_FILE_SIZE} bytes)");
            assert_eq!(text, want, "{context}");
            return;
        }
        if let Some(offset) = rest
            && offset > size
        {
            assert_eq!(code, 501, "{context}");
            let want = format!("offset {offset} is past the end of the file ({size} bytes)");
            assert_eq!(text, want, "{context}");
            return;
        }
        if let Lookup::NotRegular | Lookup::Folder | Lookup::NoFolder = self.model.lookup(name) {
            assert_eq!(code, 550, "{context}");
            return;
        }
        let offset = rest.unwrap_or(0);
        let prefix = if rest.is_some() {
            let held = self.model.partials.get(name).map_or(0, Vec::len) as u64;
            if offset > held {
                assert_eq!(code, 501, "{context}");
                let want = format!("offset {offset} is past the {held} bytes held for this upload");
                assert_eq!(text, want, "{context}");
                return;
            }
            // Continued: the partial is taken (it is no longer reported)
            // and cut to the offset.
            self.model
                .partials
                .remove(name)
                .map(|bytes| bytes[..offset as usize].to_vec())
                .unwrap_or_default()
        } else {
            // A fresh upload leaves a partial of the name alone until it
            // completes.
            Vec::new()
        };
        let left = data_size(code, text, context);
        assert_eq!(left as u64, size - offset, "{context}");
        self.phase = Phase::Upload {
            name: name.to_owned(),
            prefix,
            size: left,
            payload_at: self.cursor,
            expect,
        };
        self.cursor += left;
    }

    /// The session is finished. `client` is every byte it got; `aborted`
    /// says whether a transfer may have been cut short.
    fn finish(&mut self, client: &[u8], aborted: bool) {
        assert!(
            self.pending.is_empty(),
            "half a reply: {}",
            show(&self.pending)
        );
        match &self.phase {
            Phase::Greeting => panic!("no greeting"),
            Phase::Closed => {}
            Phase::Data { left, .. } => {
                assert!(aborted, "download ended {left} bytes short");
            }
            Phase::ListBlocks { .. } => assert!(aborted, "a LIST without its `150 0`"),
            Phase::Upload {
                size, payload_at, ..
            } => {
                let (size, payload_at) = (*size, *payload_at);
                assert!(
                    client.len() < payload_at + size,
                    "the whole payload arrived, but no 226"
                );
            }
            Phase::Replies if aborted => {}
            Phase::Replies => {
                // The client closed: every complete line still got its reply.
                let mut rest = client.get(self.cursor..).unwrap_or_default();
                if self.discarding {
                    let Some(end) = line::skip_line(rest) else {
                        return;
                    };
                    rest = &rest[end..];
                }
                assert_eq!(
                    line::parse(rest),
                    Status::Partial,
                    "a complete line was not answered"
                );
            }
        }
    }
}

/// Checks the form of one reply line, `NNN text\r\n`, and splits it.
fn parse_reply(reply: &[u8]) -> (u16, &str) {
    assert!(reply.len() <= MAX_REPLY_LINE, "long reply {}", show(reply));
    let body = reply
        .strip_suffix(b"\r\n")
        .unwrap_or_else(|| panic!("reply without CRLF: {}", show(reply)));
    let well_formed = body.len() > 4
        && matches!(body[0], b'1'..=b'5')
        && body[1].is_ascii_digit()
        && body[2].is_ascii_digit()
        && body[3] == b' '
        && body[4..].iter().all(|&b| (0x20..0x7f).contains(&b));
    assert!(well_formed, "malformed reply {}", show(reply));
    let code = u16::from(body[0] - b'0') * 100
        + u16::from(body[1] - b'0') * 10
        + u16::from(body[2] - b'0');
    let text = std::str::from_utf8(&body[4..]).unwrap();
    (code, text)
}

/// The `n` of `150 <n>`, written without leading zeros.
fn data_size(code: u16, text: &str, context: &str) -> usize {
    assert_eq!(code, 150, "{context}");
    let n: u64 = text
        .parse()
        .unwrap_or_else(|_| panic!("150 without a size: {context}"));
    assert_eq!(n.to_string(), text, "{context}");
    usize::try_from(n).unwrap()
}

/// A `150 <n>` of a `LIST`: the next block of `n` bytes, or with `0` the
/// end, when the blocks so far must list every file exactly once.
fn list_block(phase: &mut Phase, code: u16, text: &str, got: Vec<u8>, files: Vec<(String, u64)>) {
    let n = data_size(code, text, "a LIST block");
    if n > 0 {
        *phase = Phase::Data {
            left: n,
            expect: Expect::Listing { got, files },
        };
    } else {
        check_download(Expect::Listing { got, files });
    }
}

fn check_download(expect: Expect) {
    match expect {
        Expect::Bytes(want) => assert!(want.is_empty()),
        Expect::Listing { got, files } => {
            let text = std::str::from_utf8(&got).expect("listing is UTF-8");
            // In directory order: compared by name.
            let mut lines: Vec<&str> = text.split_terminator('\n').collect();
            lines.sort_by_key(|line| line.splitn(3, ' ').nth(2));
            assert!(text.is_empty() || text.ends_with('\n'), "{text:?}");
            assert_eq!(lines.len(), files.len(), "{text:?} vs {files:?}");
            for (line, (name, size)) in lines.iter().zip(&files) {
                let mut parts = line.splitn(3, ' ');
                let listed_size = parts.next().unwrap();
                let mtime = parts.next().expect("mtime");
                let listed_name = parts.next().expect("name");
                assert_eq!(listed_size, size.to_string(), "{line:?}");
                assert!(mtime.parse::<i64>().is_ok(), "{line:?}");
                assert_eq!(listed_name, name, "{line:?}");
            }
        }
    }
}

/// The SHA-256 of `bytes`, computed independently of ferry.
fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Lower-case hex, as `protocol.md` gives digests.
fn hex(digest: &[u8; 32]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}
