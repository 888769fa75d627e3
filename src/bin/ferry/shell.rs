//! `ferry shell`: the same commands, one per line, on one session.
//!
//! On a terminal it is a line editor (`rustyline`) with history kept in
//! `$XDG_STATE_HOME/ferry/history` (else `~/.local/state/ferry/history`)
//! and tab completion of commands, remote names and local paths. From a
//! pipe it reads lines quietly, so scripts can drive it.

use std::cell::RefCell;
use std::ffi::OsString;
use std::io::{self, BufRead, IsTerminal};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use signal_hook::consts::SIGINT;

use rustyline::completion::{Completer, FilenameCompleter, Pair};
use rustyline::error::ReadlineError;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::history::DefaultHistory;
use rustyline::validate::Validator;
use rustyline::{Context, Editor, Helper};

use crate::args::{self, Options, Parsed, Verb};
use crate::commands::{self, EXIT_LOCAL, EXIT_USAGE, Remote, Status};
use crate::progress::INTERRUPTED;
use crate::settings;

const HELP: &str = "\
commands:
  put FILE...  [-o NAME]      upload
  get NAME...  [-o PATH | -d DIR]
                              download
  put -r DIR...               upload folders
  get -r PATH... [-d DIR]     download folders
  ls [-h] [-R] [PATH]         list (a folder's name ends with /)
  view NAME [--raw]           the first 1024 bytes
  rm [-r] NAME...             delete (-r: folders and everything in them)
  hash NAME...                the server's SHA-256
  mkdir [-p] PATH...          create folders
  rmdir PATH...               remove empty folders
  mv FROM TO, cp FROM TO      move, copy on the server (--force: replace TO)
  cd PATH, cd .., cd /        change the remote folder; pwd shows it
  lcd DIR, lls                change, list the local directory
  help                        this text
  quit, exit                  leave (so does end of input)
--json, --quiet, --no-resume and --limit-rate work per command. Quote names with spaces:
  get 'my file.txt'";

/// Words that start a shell line, for completion.
const WORDS: [&str; 17] = [
    "put", "get", "ls", "view", "rm", "hash", "mkdir", "rmdir", "mv", "cp", "cd", "pwd", "lcd",
    "lls", "help", "quit", "exit",
];

enum Flow {
    Continue,
    Quit,
}

/// Runs the shell. `defaults` are the options given on the command line
/// (`--json`, `--quiet`, `--no-resume`), applied to every command.
pub fn run(remote: &mut Remote, defaults: &Options, status: &mut Status) {
    // A session the server closed while the user was away is opened again.
    remote.set_min_retries(1);
    // Log in now, so that a wrong password shows before the first command.
    if let Err(err) = remote.connect() {
        eprintln!("ferry: {err}");
        status.fail(commands::exit_code(err.kind()));
        return;
    }
    // The remote folder that relative paths start from ("": the root).
    let mut cwd = String::new();
    if io::stdin().is_terminal() {
        interactive(remote, defaults, &mut cwd, status);
    } else {
        for line in io::stdin().lock().lines() {
            let Ok(line) = line else {
                eprintln!("ferry: cannot read the commands: not UTF-8 text");
                status.fail(EXIT_USAGE);
                break;
            };
            if let Flow::Quit = execute(remote, &line, defaults, &mut cwd, status) {
                break;
            }
        }
    }
}

fn interactive(remote: &mut Remote, defaults: &Options, cwd: &mut String, status: &mut Status) {
    let names = Rc::new(RefCell::new(Vec::new()));
    let mut editor: Editor<ShellHelper, DefaultHistory> = match Editor::new() {
        Ok(editor) => editor,
        Err(err) => {
            eprintln!("ferry: cannot start the line editor: {err}");
            status.fail(EXIT_LOCAL);
            return;
        }
    };
    let folder = Rc::new(RefCell::new(String::new()));
    editor.set_helper(Some(ShellHelper {
        names: Rc::clone(&names),
        files: FilenameCompleter::new(),
        cwd: Rc::clone(&folder),
        lister: RefCell::new(remote.new_session().ok()),
    }));
    let history = history_path();
    if let Some(path) = &history {
        let _ = editor.load_history(path);
    }
    if let Err(err) = signal_hook::flag::register(SIGINT, Arc::clone(&INTERRUPTED)) {
        eprintln!("ferry: Ctrl-C will end the shell: {err}");
    }
    println!("{}; type help for the commands", remote_banner(remote));
    let mut stale = true;
    loop {
        if stale {
            // For completion; a failure here shows when a command fails.
            let folder = (!cwd.is_empty()).then_some(cwd.as_str());
            if let Ok(list) = remote.run(|conn, _| conn.list_folder(folder)) {
                // A folder completes with its `/`, ready for the next name.
                *names.borrow_mut() = list
                    .into_iter()
                    .map(|e| {
                        if e.folder {
                            format!("{}/", e.name)
                        } else {
                            e.name
                        }
                    })
                    .collect();
            }
            stale = false;
        }
        folder.borrow_mut().clone_from(cwd);
        let prompt = format!("ferry:/{cwd}> ");
        let line = match editor.readline(&prompt) {
            Ok(line) => line,
            Err(ReadlineError::Interrupted) => continue,
            Err(ReadlineError::Eof) => break,
            Err(err) => {
                eprintln!("ferry: {err}");
                status.fail(EXIT_LOCAL);
                break;
            }
        };
        if !line.trim().is_empty() {
            let _ = editor.add_history_entry(line.as_str());
            if let Some(path) = &history {
                if let Some(dir) = path.parent() {
                    let _ = std::fs::create_dir_all(dir);
                }
                let _ = editor.save_history(path);
            }
        }
        // Ctrl-C while a command runs stops its transfer, not the shell
        // (at the prompt the line editor reads it as a key).
        INTERRUPTED.store(false, Ordering::Relaxed);
        let flow = execute(remote, &line, defaults, cwd, status);
        if INTERRUPTED.swap(false, Ordering::Relaxed) {
            println!();
        }
        match flow {
            Flow::Quit => break,
            Flow::Continue => {
                let first = line.split_whitespace().next().unwrap_or("");
                stale = matches!(
                    first,
                    "put" | "rm" | "ls" | "cd" | "mkdir" | "rmdir" | "mv" | "cp"
                );
            }
        }
    }
}

fn remote_banner(remote: &mut Remote) -> String {
    match remote.connect() {
        Ok(conn) => conn.greeting().text.clone(),
        Err(err) => err.to_string(),
    }
}

/// `path` as seen from the remote folder `cwd`: a path with a leading `/`
/// starts at the root.
fn remote_path(cwd: &str, path: &str) -> String {
    match path.strip_prefix('/') {
        Some(absolute) => absolute.to_string(),
        None if cwd.is_empty() => path.to_string(),
        None => format!("{cwd}/{path}"),
    }
}

/// `cd`: `..` goes up, `/` to the root, anything else must be a folder.
fn change_folder(remote: &mut Remote, cwd: &mut String, to: &str, status: &mut Status) {
    let target = match to {
        "/" => String::new(),
        ".." => cwd
            .rsplit_once('/')
            .map_or(String::new(), |(up, _)| up.to_string()),
        _ => remote_path(cwd, to.trim_end_matches('/')),
    };
    if target.is_empty() {
        cwd.clear();
        return;
    }
    match remote.run(|conn, _| conn.stat(&target)) {
        Ok(stat) if stat.folder => *cwd = target,
        Ok(_) => {
            eprintln!("ferry: cd: {target}: not a folder");
            status.fail(commands::exit_code(ferry::client::ErrorKind::Remote));
        }
        Err(err) => {
            eprintln!("ferry: cd: {err}");
            status.fail(commands::exit_code(err.kind()));
        }
    }
}

/// Runs one shell line.
fn execute(
    remote: &mut Remote,
    line: &str,
    defaults: &Options,
    cwd: &mut String,
    status: &mut Status,
) -> Flow {
    let Some(words) = shlex::split(line) else {
        eprintln!("ferry: unbalanced quotes in: {line}");
        status.fail(EXIT_USAGE);
        return Flow::Continue;
    };
    let Some(first) = words.first() else {
        return Flow::Continue;
    };
    match first.as_str() {
        "quit" | "exit" => return Flow::Quit,
        "help" | "?" => {
            println!("{HELP}");
            return Flow::Continue;
        }
        "pwd" => {
            println!("/{cwd}");
            return Flow::Continue;
        }
        "cd" => {
            match words.as_slice() {
                [_] => cwd.clear(),
                [_, to] => change_folder(remote, cwd, to, status),
                _ => {
                    eprintln!("ferry: cd takes one folder");
                    status.fail(EXIT_USAGE);
                }
            }
            return Flow::Continue;
        }
        "lls" => {
            let dir = words.get(1).map_or(".", String::as_str);
            match std::fs::read_dir(dir) {
                Ok(read) => {
                    let mut names: Vec<String> = read
                        .filter_map(Result::ok)
                        .map(|e| {
                            let dir = e.file_type().is_ok_and(|t| t.is_dir());
                            let name = e.file_name().to_string_lossy().into_owned();
                            if dir { format!("{name}/") } else { name }
                        })
                        .collect();
                    names.sort();
                    for name in names {
                        println!("{name}");
                    }
                }
                Err(err) => {
                    eprintln!("ferry: lls: {dir}: {err}");
                    status.fail(EXIT_LOCAL);
                }
            }
            return Flow::Continue;
        }
        "lcd" => {
            match words.as_slice() {
                [_, dir] => {
                    if let Err(err) = std::env::set_current_dir(dir) {
                        eprintln!("ferry: lcd: {dir}: {err}");
                        status.fail(EXIT_LOCAL);
                    }
                }
                _ => {
                    eprintln!("ferry: lcd takes one directory");
                    status.fail(EXIT_USAGE);
                }
            }
            return Flow::Continue;
        }
        _ => {}
    }
    let args = words.into_iter().map(OsString::from).collect();
    match args::parse(args, true) {
        Ok(Parsed::Run(mut command)) => {
            debug_assert_ne!(command.verb, Verb::Shell);
            command.options.json |= defaults.json;
            command.options.quiet |= defaults.quiet;
            command.options.no_resume |= defaults.no_resume;
            command.options.limit_rate = command.options.limit_rate.or(defaults.limit_rate);
            // Remote paths are relative to the remote folder; put's
            // operands (and get's -o, -d) are local.
            if !cwd.is_empty() {
                if command.verb != Verb::Put {
                    for operand in &mut command.operands {
                        let text = operand.to_string_lossy().into_owned();
                        *operand = OsString::from(remote_path(cwd, &text));
                    }
                }
                if command.verb == Verb::Ls && command.operands.is_empty() {
                    command.operands.push(OsString::from(cwd.as_str()));
                }
                if command.verb == Verb::Put {
                    match command.options.output.take() {
                        Some(name) => {
                            let text = name.to_string_lossy().into_owned();
                            command.options.output = Some(remote_path(cwd, &text).into());
                        }
                        // Each file under its own name, in the folder.
                        None => {
                            for local in command.operands.clone() {
                                let mut one = args::Command {
                                    verb: Verb::Put,
                                    operands: vec![local.clone()],
                                    options: command.options.clone(),
                                    connect: command.connect.clone(),
                                };
                                let name = std::path::Path::new(&local)
                                    .file_name()
                                    .map(|n| n.to_string_lossy().into_owned())
                                    .unwrap_or_default();
                                one.options.output = Some(remote_path(cwd, &name).into());
                                commands::run(remote, &one, status);
                            }
                            return Flow::Continue;
                        }
                    }
                }
            }
            commands::run(remote, &command, status);
        }
        Ok(Parsed::Help) => println!("{HELP}"),
        Ok(Parsed::Version | Parsed::Generate(_)) => {}
        Err(message) => {
            eprintln!("ferry: {message} (type help for the commands)");
            status.fail(EXIT_USAGE);
        }
    }
    Flow::Continue
}

fn history_path() -> Option<PathBuf> {
    Some(settings::xdg_dir("XDG_STATE_HOME", ".local/state")?.join("history"))
}

/// Completion: the command word, then remote names (from the last listing)
/// or local paths, depending on the command.
struct ShellHelper {
    names: Rc<RefCell<Vec<String>>>,
    files: FilenameCompleter,
    /// The shell's remote folder.
    cwd: Rc<RefCell<String>>,
    /// A session of its own for listing the folders a word goes into
    /// (the commands' session is the shell's), opened at start.
    lister: RefCell<Option<crate::commands::Connection>>,
}

impl ShellHelper {
    /// The names in the remote folder `folder` (relative to the shell's
    /// folder), a folder's with its `/`; none when it cannot be listed.
    fn names_in(&self, folder: &str) -> Vec<String> {
        let mut lister = self.lister.borrow_mut();
        let Some(conn) = lister.as_mut() else {
            return Vec::new();
        };
        let path = remote_path(&self.cwd.borrow(), folder);
        let listed = conn.list_folder((!path.is_empty()).then_some(path.as_str()));
        listed
            .map(|entries| {
                entries
                    .into_iter()
                    .map(|e| {
                        if e.folder {
                            format!("{}/", e.name)
                        } else {
                            e.name
                        }
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Completer for ShellHelper {
    type Candidate = Pair;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        ctx: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        let before = &line[..pos];
        let start = word_start(before);
        let word = unquote(&before[start..]);
        let candidates = |words: &mut dyn Iterator<Item = &str>| -> Vec<Pair> {
            words
                .filter(|w| w.starts_with(&word))
                .map(|w| Pair {
                    display: w.to_string(),
                    // A whole word is followed by a space, as in a shell,
                    // so the next word can be typed at once; a folder by
                    // nothing, so that its names can be completed next.
                    replacement: shlex::try_quote(w)
                        .map(|q| q.into_owned())
                        .unwrap_or_else(|_| w.to_string())
                        + if w.ends_with('/') { "" } else { " " },
                })
                .collect()
        };
        match before[..start].split_whitespace().next() {
            None => Ok((start, candidates(&mut WORDS.iter().copied()))),
            Some("put" | "lcd") => self.files.complete(line, pos, ctx),
            Some(
                "get" | "view" | "rm" | "hash" | "cd" | "ls" | "mkdir" | "rmdir" | "mv" | "cp",
            ) => {
                // Folder by folder: a word with a `/` completes in the
                // folder before its last `/`.
                if let Some((folder, _)) = word.rsplit_once('/') {
                    // `/x`: in the root.
                    let listed = if folder.is_empty() { "/" } else { folder };
                    let names: Vec<String> = self
                        .names_in(listed)
                        .into_iter()
                        .map(|name| format!("{folder}/{name}"))
                        .collect();
                    return Ok((start, candidates(&mut names.iter().map(String::as_str))));
                }
                let names = self.names.borrow();
                Ok((start, candidates(&mut names.iter().map(String::as_str))))
            }
            Some(_) => Ok((start, Vec::new())),
        }
    }
}

/// Where the word under the cursor starts: after the last space that is
/// not escaped or inside quotes.
fn word_start(before: &str) -> usize {
    let mut start = 0;
    let mut quote = None;
    let mut escaped = false;
    for (i, c) in before.char_indices() {
        match (quote, c) {
            _ if escaped => escaped = false,
            (None | Some('"'), '\\') => escaped = true,
            (None, '\'' | '"') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, ' ') => start = i + 1,
            _ => {}
        }
    }
    start
}

/// The text of a partly typed word: quotes and escapes taken off.
fn unquote(word: &str) -> String {
    let mut out = String::new();
    let mut escaped = false;
    for c in word.chars() {
        match c {
            _ if escaped => {
                out.push(c);
                escaped = false;
            }
            '\\' => escaped = true,
            '\'' | '"' => {}
            _ => out.push(c),
        }
    }
    out
}

impl Hinter for ShellHelper {
    type Hint = String;
}

impl Highlighter for ShellHelper {}

impl Validator for ShellHelper {}

impl Helper for ShellHelper {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_word_under_the_cursor_respects_quotes_and_escapes() {
        assert_eq!(word_start("get my"), 4);
        assert_eq!(word_start("get 'my fi"), 4);
        assert_eq!(word_start("get my\\ fi"), 4);
        assert_eq!(word_start("get a b"), 6);
        assert_eq!(unquote("'my fi"), "my fi");
        assert_eq!(unquote("my\\ fi"), "my fi");
    }
}
