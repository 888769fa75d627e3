//! The web interface's pieces that do not touch a connection: the logins
//! of browsers (cookie sessions held in memory, bounded), the pages as
//! server-made HTML (every name escaped), the content types under which a
//! stored file may be shown, and the assets compiled into the binary.
//! The requests themselves are answered in `session/http/web.rs`.
//!
//! Nothing here runs a user's bytes as the site: pages carry a
//! Content-Security-Policy without inline script, a file is shown inline
//! only as plain text or as a raster image, and the rest is downloaded.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io;
use std::time::{Duration, Instant};

use crate::integrity::Digest;
use crate::protocol::web::url_encode;
use crate::storage::Entry;

/// The script, the style sheet: small, hand-written, in the binary.
pub const APP_JS: &str = include_str!("assets/app.js");
pub const APP_CSS: &str = include_str!("assets/app.css");

/// Browser logins held at once over all users: each is about 200 bytes,
/// so the table stays under a megabyte. Past it the least recently used
/// login is ended.
pub const MAX_SESSIONS: usize = 4096;
/// Browser logins one user may hold: past it their least recently used
/// one is ended, so one user cannot push everyone else out.
pub const MAX_SESSIONS_PER_USER: usize = 32;
/// A login ends this long after it was made, however busy.
pub const MAX_SESSION_AGE: Duration = Duration::from_secs(12 * 3600);
/// Entries a folder page reads and sorts: the page is made in one turn of
/// the loop and sorted in memory, so it is bounded; the JSON listing,
/// streamed, has them all.
pub const MAX_PAGE_ENTRIES: usize = 2000;
/// Bytes of table a folder page holds at most (rows stop there): the page
/// is queued whole, and a row of long names escaped and encoded four times
/// is a few KiB.
pub const MAX_PAGE_BYTES: usize = 1024 * 1024;

/// The policy for the interface's own pages: its script and style only,
/// never inside a frame.
pub const PAGE_CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; \
     frame-ancestors 'none'";
/// The policy for a stored file shown inline: no script, no plugin, in a
/// sandbox (an origin of its own), even if a browser misjudged the type.
pub const FILE_CSP: &str = "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; \
     sandbox; frame-ancestors 'self'";

/// One browser login.
#[derive(Debug, Clone)]
pub struct WebLogin {
    pub user: String,
    /// The token every state-changing request of this login must carry.
    pub csrf: String,
    /// [`crate::auth::Users::fingerprint`] of the user at login: a new
    /// password ends the login.
    pub fingerprint: [u8; 32],
    created: Instant,
    last_used: Instant,
}

/// The browser logins, keyed by the SHA-256 of their cookie, so that the
/// table lookup compares digests, not secrets.
#[derive(Debug, Default)]
pub struct WebSessions {
    logins: HashMap<[u8; 32], WebLogin>,
}

fn random_token() -> io::Result<String> {
    let mut bytes = [0u8; 32];
    crate::sys::random_bytes(&mut bytes)?;
    Ok(hex::encode(bytes))
}

fn key(token: &[u8]) -> [u8; 32] {
    *Digest::of(token).as_bytes()
}

impl WebSessions {
    /// A new login for `user`: its cookie value (kept only as a digest
    /// here), and the login.
    pub fn create(
        &mut self,
        user: &str,
        fingerprint: [u8; 32],
        now: Instant,
        idle: Duration,
    ) -> io::Result<(String, WebLogin)> {
        self.purge(now, idle);
        let mine = self.logins.values().filter(|l| l.user == user).count();
        if mine >= MAX_SESSIONS_PER_USER {
            self.evict_oldest(|login| login.user == user);
        }
        if self.logins.len() >= MAX_SESSIONS {
            self.evict_oldest(|_| true);
        }
        let token = random_token()?;
        let login = WebLogin {
            user: user.to_owned(),
            csrf: random_token()?,
            fingerprint,
            created: now,
            last_used: now,
        };
        self.logins.insert(key(token.as_bytes()), login.clone());
        Ok((token, login))
    }

    fn evict_oldest(&mut self, which: impl Fn(&WebLogin) -> bool) {
        let oldest = self
            .logins
            .iter()
            .filter(|(_, login)| which(login))
            .min_by_key(|(_, login)| login.last_used)
            .map(|(key, _)| *key);
        if let Some(key) = oldest {
            self.logins.remove(&key);
        }
    }

    /// The login whose cookie is `token`, if it has not expired; using it
    /// moves its idle expiry on.
    pub fn get(&mut self, token: &[u8], now: Instant, idle: Duration) -> Option<WebLogin> {
        let key = key(token);
        let login = self.logins.get_mut(&key)?;
        if expired(login, now, idle) {
            self.logins.remove(&key);
            return None;
        }
        login.last_used = now;
        Some(login.clone())
    }

    pub fn remove(&mut self, token: &[u8]) {
        self.logins.remove(&key(token));
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.logins.len()
    }

    fn purge(&mut self, now: Instant, idle: Duration) {
        self.logins.retain(|_, login| !expired(login, now, idle));
    }
}

fn expired(login: &WebLogin, now: Instant, idle: Duration) -> bool {
    now.duration_since(login.last_used) >= idle
        || now.duration_since(login.created) >= MAX_SESSION_AGE
}

/// The text with `&`, `<`, `>`, `"` and `'` as character references: safe
/// in an element and in a quoted attribute.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `999 B`, `1.5 KiB`, `20 MiB`: three significant figures at most.
pub fn human_size(size: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if size < 1024 {
        return format!("{size} B");
    }
    let mut value = size as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if value < 10.0 {
        format!("{value:.1} {}", UNITS[unit])
    } else {
        format!("{value:.0} {}", UNITS[unit])
    }
}

/// Seconds since the epoch as `(2026-11-30T01:20:00Z, 2026-11-30 01:20 UTC)`:
/// the machine form for `<time datetime>`, the text shown without script.
pub fn utc(mtime: i64) -> (String, String) {
    let secs = mtime.rem_euclid(86_400);
    let (year, month, day) = crate::protocol::civil_from_days(mtime.div_euclid(86_400));
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    (
        format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}Z"),
        format!("{year:04}-{month:02}-{day:02} {h:02}:{m:02} UTC"),
    )
}

/// How a stored file may be shown in the browser.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shown {
    /// As plain text (text of any kind, HTML, SVG and XML included: shown
    /// as their source, never rendered).
    Text,
    /// As a raster image of this type.
    Image(&'static str),
    /// Not inline: downloaded.
    Download,
}

/// What a file name's extension allows it to be shown as.
pub fn shown_as(name: &str) -> Shown {
    let ext = name
        .rsplit_once('.')
        .map(|(_, ext)| ext.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "png" => Shown::Image("image/png"),
        "jpg" | "jpeg" => Shown::Image("image/jpeg"),
        "gif" => Shown::Image("image/gif"),
        "webp" => Shown::Image("image/webp"),
        "bmp" => Shown::Image("image/bmp"),
        "txt" | "text" | "md" | "log" | "csv" | "tsv" | "json" | "rs" | "py" | "c" | "h"
        | "cpp" | "go" | "java" | "sh" | "toml" | "yaml" | "yml" | "ini" | "conf" | "cfg"
        | "js" | "ts" | "css" | "html" | "htm" | "xhtml" | "svg" | "xml" | "diff" | "patch" => {
            Shown::Text
        }
        _ => Shown::Download,
    }
}

/// The `Content-Type` and extra fields of a download of `name`, by what
/// the query asks: `inline` shows it when [`shown_as`] allows (else it is
/// downloaded), `download` asks for a save dialog; neither leaves the
/// response as scripts have always had it.
pub fn download_fields(query: Option<&[u8]>, name: &str) -> (&'static str, Vec<(String, String)>) {
    use crate::protocol::http::query_has;
    let inline = query_has(query, b"inline");
    if !inline && !query_has(query, b"download") {
        return ("application/octet-stream", Vec::new());
    }
    let shown = if inline {
        shown_as(name)
    } else {
        Shown::Download
    };
    let ascii: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let file_name = format!(
        "filename=\"{ascii}\"; filename*=UTF-8''{}",
        url_encode(name)
    );
    let (content_type, disposition) = match shown {
        Shown::Text => ("text/plain; charset=utf-8", format!("inline; {file_name}")),
        Shown::Image(image) => (image, format!("inline; {file_name}")),
        Shown::Download => (
            "application/octet-stream",
            format!("attachment; {file_name}"),
        ),
    };
    let fields = vec![
        ("Content-Disposition".to_owned(), disposition),
        ("Content-Security-Policy".to_owned(), FILE_CSP.to_owned()),
    ];
    (content_type, fields)
}

/// The column a folder page is sorted by, from `?sort=` and `?order=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sort {
    pub key: SortKey,
    pub descending: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    Name,
    Size,
    Modified,
}

impl SortKey {
    fn as_str(self) -> &'static str {
        match self {
            SortKey::Name => "name",
            SortKey::Size => "size",
            SortKey::Modified => "modified",
        }
    }
}

impl Sort {
    pub fn from_query(query: Option<&[u8]>) -> Sort {
        use crate::protocol::http::query_value;
        let key = match query_value(query, b"sort") {
            Some(b"size") => SortKey::Size,
            Some(b"modified") => SortKey::Modified,
            _ => SortKey::Name,
        };
        let descending = query_value(query, b"order") == Some(b"desc");
        Sort { key, descending }
    }

    /// Sorts folders before files, each by the column.
    pub fn apply(self, entries: &mut [Entry]) {
        entries.sort_by(|a, b| {
            if a.folder != b.folder {
                return b.folder.cmp(&a.folder);
            }
            let order = match self.key {
                SortKey::Name => a.name.cmp(&b.name),
                SortKey::Size => a.size.cmp(&b.size).then_with(|| a.name.cmp(&b.name)),
                SortKey::Modified => a.mtime.cmp(&b.mtime).then_with(|| a.name.cmp(&b.name)),
            };
            if self.descending {
                order.reverse()
            } else {
                order
            }
        });
    }
}

/// A whole page: the head with the interface's style and script, `body`
/// inside `<main>`, and a header with the user and a logout button once
/// logged in.
fn page(title: &str, who: Option<(&str, &str)>, body: &str) -> String {
    let mut out = String::with_capacity(body.len() + 1024);
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{} · ferry</title>\n<link rel=\"stylesheet\" href=\"/web/app.css\">\n\
         <script src=\"/web/app.js\" defer></script>\n",
        escape(title)
    );
    if let Some((_, csrf)) = who {
        let _ = writeln!(
            out,
            "<meta name=\"csrf-token\" content=\"{}\">",
            escape(csrf)
        );
    }
    out.push_str("</head>\n<body>\n<header>\n<a class=\"brand\" href=\"/\">ferry</a>\n");
    if let Some((user, csrf)) = who {
        let _ = write!(
            out,
            "<span class=\"user\">{}</span>\n<form method=\"post\" action=\"/web/logout\" \
             class=\"logout\"><input type=\"hidden\" name=\"csrf\" value=\"{}\">\
             <button type=\"submit\">Log out</button></form>\n",
            escape(user),
            escape(csrf)
        );
    }
    out.push_str("</header>\n<main>\n");
    out.push_str(body);
    out.push_str("</main>\n</body>\n</html>\n");
    out
}

/// The login form, with a message after a failed attempt.
pub fn login_page(message: Option<&str>) -> String {
    let mut body = String::from("<h1>Log in</h1>\n");
    if let Some(message) = message {
        let _ = writeln!(
            body,
            "<p class=\"error\" role=\"alert\">{}</p>",
            escape(message)
        );
    }
    body.push_str(
        "<form method=\"post\" action=\"/web/login\" class=\"login\">\n\
         <label for=\"user\">User name</label>\n\
         <input id=\"user\" name=\"user\" autocomplete=\"username\" required autofocus>\n\
         <label for=\"password\">Password</label>\n\
         <input id=\"password\" name=\"password\" type=\"password\" \
         autocomplete=\"current-password\" required>\n\
         <button type=\"submit\">Log in</button>\n</form>\n",
    );
    page("Log in", None, &body)
}

/// The link to a file's page.
fn file_href(path: &str) -> String {
    format!("/web/file?name={}", url_encode(path))
}

/// The link to a folder's page (`""`: the user's root).
pub fn folder_href(path: &str) -> String {
    if path.is_empty() {
        "/".to_owned()
    } else {
        format!("/?dir={}", url_encode(path))
    }
}

/// The URL of a stored file, with `query` (`download`, `inline`): each
/// name of the path encoded, the `/` between them kept.
fn raw_href(path: &str, query: &str) -> String {
    let encoded: Vec<String> = path.split('/').map(url_encode).collect();
    format!("/files/{}?{query}", encoded.join("/"))
}

/// `a/b` joined with `c` (`c` alone at the root).
pub fn join(folder: &str, name: &str) -> String {
    if folder.is_empty() {
        name.to_owned()
    } else {
        format!("{folder}/{name}")
    }
}

/// The folder `path` is in (`""` at the root).
pub fn parent(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(parent, _)| parent)
}

/// Links to the user's root and each folder down to `path`; the last
/// (the page's own) is not a link.
fn breadcrumbs(path: &str, last_is_page: bool) -> String {
    let mut out = String::from("<nav class=\"crumbs\" aria-label=\"Folders\"><ol>");
    let names: Vec<&str> = if path.is_empty() {
        Vec::new()
    } else {
        path.split('/').collect()
    };
    let count = names.len();
    let mut at = String::new();
    let current = |is_last: bool| is_last && last_is_page;
    if current(count == 0) {
        out.push_str("<li aria-current=\"page\">Files</li>");
    } else {
        out.push_str("<li><a href=\"/\">Files</a></li>");
    }
    for (i, name) in names.iter().enumerate() {
        at = join(&at, name);
        if current(i + 1 == count) {
            let _ = write!(out, "<li aria-current=\"page\">{}</li>", escape(name));
        } else {
            let _ = write!(
                out,
                "<li><a href=\"{}\">{}</a></li>",
                escape(&folder_href(&at)),
                escape(name)
            );
        }
    }
    out.push_str("</ol></nav>\n");
    out
}

fn delete_form(path: &str, csrf: &str) -> String {
    let name = path.rsplit('/').next().unwrap_or(path);
    format!(
        "<form method=\"post\" action=\"/web/delete\" class=\"delete\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
         <input type=\"hidden\" name=\"name\" value=\"{}\">\
         <button type=\"submit\" aria-label=\"Delete {}\">Delete</button></form>",
        escape(csrf),
        escape(path),
        escape(name)
    )
}

/// The user's files as a table sortable by column, with the upload area
/// the script brings to life.
pub fn files_page(
    user: &str,
    csrf: &str,
    folder: &str,
    entries: &[Entry],
    sort: Sort,
    truncated: bool,
) -> String {
    let mut body = String::with_capacity(256 * entries.len() + 2048);
    body.push_str(&breadcrumbs(folder, true));
    let title = if folder.is_empty() {
        "Files"
    } else {
        folder.rsplit('/').next().unwrap_or(folder)
    };
    let _ = write!(
        body,
        "<h1>{}</h1>\n<section id=\"upload\" class=\"upload\" data-dir=\"{}\" hidden>\n\
         <label for=\"files\">Upload files</label>\n\
         <input id=\"files\" type=\"file\" multiple>\n\
         <p class=\"drop\" id=\"drop\">…or drop files here</p>\n\
         <ul id=\"uploads\" class=\"uploads\" aria-live=\"polite\"></ul>\n</section>\n\
         <noscript><p>Uploading needs JavaScript; \
         <code>curl -T FILE -u USER URL/files/PATH</code> works without.</p></noscript>\n\
         <form method=\"post\" action=\"/web/mkdir\" class=\"mkdir\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
         <input type=\"hidden\" name=\"dir\" value=\"{}\">\
         <label for=\"folder-name\">New folder</label> \
         <input id=\"folder-name\" name=\"name\" required> \
         <button type=\"submit\">Create</button></form>\n",
        escape(title),
        escape(folder),
        escape(csrf),
        escape(folder)
    );
    if entries.is_empty() {
        body.push_str("<p class=\"empty\">No files yet.</p>\n");
        return page(title, Some((user, csrf)), &body);
    }
    body.push_str("<table class=\"files\">\n<thead><tr>");
    for (key, label, class) in [
        (SortKey::Name, "Name", "name"),
        (SortKey::Size, "Size", "size"),
        (SortKey::Modified, "Modified", "date"),
    ] {
        let current = sort.key == key;
        let descending = current && !sort.descending;
        let aria = match (current, sort.descending) {
            (false, _) => "none",
            (true, false) => "ascending",
            (true, true) => "descending",
        };
        let arrow = match (current, sort.descending) {
            (false, _) => "",
            (true, false) => " ▲",
            (true, true) => " ▼",
        };
        let dir = if folder.is_empty() {
            String::new()
        } else {
            format!("dir={}&amp;", url_encode(folder))
        };
        let _ = write!(
            body,
            "<th scope=\"col\" class=\"{class}\" aria-sort=\"{aria}\">\
             <a href=\"/?{dir}sort={}{}\">{label}{arrow}</a></th>",
            key.as_str(),
            if descending { "&amp;order=desc" } else { "" }
        );
    }
    body.push_str("<th scope=\"col\" class=\"actions\">Actions</th></tr></thead>\n<tbody>\n");
    let mut shown_rows = 0;
    for entry in entries {
        if body.len() > MAX_PAGE_BYTES {
            break;
        }
        shown_rows += 1;
        let (iso, shown) = utc(entry.mtime);
        let path = join(folder, &entry.name);
        if entry.folder {
            let _ = writeln!(
                body,
                "<tr class=\"folder\"><td class=\"name\"><a href=\"{}\">{}/</a></td>\
                 <td class=\"size\">—</td>\
                 <td class=\"date\"><time datetime=\"{iso}\">{shown}</time></td>\
                 <td class=\"actions\">{}</td></tr>",
                escape(&folder_href(&path)),
                escape(&entry.name),
                delete_form(&path, csrf),
            );
            continue;
        }
        let _ = writeln!(
            body,
            "<tr><td class=\"name\"><a href=\"{}\">{}</a></td>\
             <td class=\"size\" data-bytes=\"{}\">{}</td>\
             <td class=\"date\"><time datetime=\"{iso}\">{shown}</time></td>\
             <td class=\"actions\"><a href=\"{}\" download>Download</a> {}</td></tr>",
            escape(&file_href(&path)),
            escape(&entry.name),
            entry.size,
            human_size(entry.size),
            escape(&raw_href(&path, "download")),
            delete_form(&path, csrf),
        );
    }
    body.push_str("</tbody>\n</table>\n");
    if truncated || shown_rows < entries.len() {
        let json = if folder.is_empty() {
            "/files/?json".to_owned()
        } else {
            let encoded: Vec<String> = folder.split('/').map(url_encode).collect();
            format!("/files/{}/?json", encoded.join("/"))
        };
        let _ = writeln!(
            body,
            "<p class=\"note\">Only {shown_rows} entries of this folder are shown; \
             <a href=\"{}\">the JSON listing</a> has them all.</p>",
            escape(&json)
        );
    }
    page(title, Some((user, csrf)), &body)
}

/// What the file page says about one file.
pub struct FileFacts<'a> {
    /// The file's path.
    pub name: &'a str,
    pub size: u64,
    pub mtime: i64,
    pub sha256: Option<Digest>,
    /// The first bytes of the file (at most 1024).
    pub head: &'a [u8],
}

/// The first bytes as text when they are text (UTF-8 without control
/// characters other than tab and line ends), else as a hex dump.
fn head_view(head: &[u8], size: u64) -> String {
    let text = std::str::from_utf8(head).ok().filter(|text| {
        !text
            .chars()
            .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
    });
    let view = match text {
        Some(text) => escape(text),
        None => {
            let mut dump = String::new();
            for (i, line) in head.chunks(16).enumerate() {
                let hex: Vec<String> = line.iter().map(|b| format!("{b:02x}")).collect();
                let ascii: String = line
                    .iter()
                    .map(|&b| {
                        if b.is_ascii_graphic() || b == b' ' {
                            char::from(b)
                        } else {
                            '.'
                        }
                    })
                    .collect();
                let _ = writeln!(
                    dump,
                    "{:08x}  {:<47}  {}",
                    i * 16,
                    hex.join(" "),
                    escape(&ascii)
                );
            }
            dump
        }
    };
    format!(
        "<h2>The first {} bytes</h2>\n<pre class=\"head\">{view}</pre>\n",
        head.len().min(usize::try_from(size).unwrap_or(usize::MAX))
    )
}

/// One file: its facts, SHA-256, download, inline view and delete, and a
/// preview (an image, or the first bytes).
pub fn file_page(user: &str, csrf: &str, facts: &FileFacts<'_>) -> String {
    let path = facts.name;
    let name = path.rsplit('/').next().unwrap_or(path);
    let (iso, shown) = utc(facts.mtime);
    let sha256 = match &facts.sha256 {
        Some(digest) => format!("<code class=\"sha256\">{digest}</code>"),
        None => "not recorded (<code>ferry hash</code> computes it)".to_owned(),
    };
    let mut body = format!(
        "{}<h1 class=\"filename\">{}</h1>\n<dl class=\"facts\">\
         <dt>Size</dt><dd>{} ({} bytes)</dd>\
         <dt>Modified</dt><dd><time datetime=\"{iso}\">{shown}</time></dd>\
         <dt>SHA-256</dt><dd>{sha256}</dd></dl>\n<div class=\"actions\">\
         <a href=\"{}\" download>Download</a> ",
        breadcrumbs(path, false),
        escape(name),
        human_size(facts.size),
        facts.size,
        escape(&raw_href(path, "download")),
    );
    let shown_as = shown_as(name);
    if shown_as != Shown::Download {
        let _ = write!(
            body,
            "<a href=\"{}\">Open in the browser</a> ",
            escape(&raw_href(path, "inline"))
        );
    }
    body.push_str(&delete_form(path, csrf));
    body.push_str("</div>\n");
    let _ = writeln!(
        body,
        "<form method=\"post\" action=\"/web/move\" class=\"move\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
         <input type=\"hidden\" name=\"from\" value=\"{}\">\
         <label for=\"move-to\">Rename or move to</label> \
         <input id=\"move-to\" name=\"to\" value=\"{}\" required> \
         <button type=\"submit\">Move</button></form>",
        escape(csrf),
        escape(path),
        escape(path)
    );
    if let Shown::Image(_) = shown_as {
        let _ = writeln!(
            body,
            "<figure><img class=\"preview\" src=\"{}\" alt=\"{}\"></figure>",
            escape(&raw_href(path, "inline")),
            escape(name)
        );
    }
    body.push_str(&head_view(facts.head, facts.size));
    page(name, Some((user, csrf)), &body)
}

/// Asks before deleting, for a delete sent without the script's question
/// (a folder goes with everything in it).
pub fn confirm_delete_page(user: &str, csrf: &str, name: &str, folder: bool) -> String {
    let what = if folder {
        "the folder {} and everything in it"
    } else {
        "{}"
    };
    let what = what.replace("{}", &escape(name));
    let body = format!(
        "<h1>Delete {what}?</h1>\n<form method=\"post\" action=\"/web/delete\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
         <input type=\"hidden\" name=\"name\" value=\"{}\">\
         <input type=\"hidden\" name=\"confirm\" value=\"yes\">\
         <button type=\"submit\">Delete</button> <a href=\"{}\">Cancel</a></form>\n",
        escape(csrf),
        escape(name),
        escape(&folder_href(parent(name)))
    );
    page("Delete", Some((user, csrf)), &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hostile_name_is_text_everywhere_it_appears() {
        let name = "<img src=x onerror=alert(1)>.html";
        let entries = [Entry {
            name: name.to_owned(),
            folder: false,
            size: 5,
            mtime: 0,
            version: Default::default(),
        }];
        let sort = Sort::from_query(None);
        let pages = [
            files_page("u", "t", "", &entries, sort, false),
            files_page("u", "t", name, &entries, sort, false),
            file_page(
                "u",
                "t",
                &FileFacts {
                    name,
                    size: 5,
                    mtime: 0,
                    sha256: None,
                    head: b"<script>alert(2)</script>",
                },
            ),
            confirm_delete_page("u", "t", name, false),
        ];
        for page in pages {
            assert!(!page.contains("<img src=x"), "{page}");
            assert!(!page.contains("<script>alert"), "{page}");
            assert!(page.contains("&lt;img src=x onerror=alert(1)&gt;.html"));
        }
    }

    #[test]
    fn a_folder_page_is_bounded_whatever_its_names() {
        let entries: Vec<Entry> = (0..MAX_PAGE_ENTRIES)
            .map(|i| Entry {
                name: format!("{i:04}{}", "<&\"é".repeat(50)),
                folder: false,
                size: 1,
                mtime: 0,
                version: Default::default(),
            })
            .collect();
        let sort = Sort::from_query(None);
        let page = files_page("u", "t", "a b", &entries, sort, true);
        assert!(page.len() < MAX_PAGE_BYTES + 64 * 1024, "{}", page.len());
        assert!(page.contains("entries of this folder are shown"));
        assert!(page.contains("href=\"/files/a%20b/?json\""));
    }

    #[test]
    fn sizes_and_dates_for_people() {
        assert_eq!(human_size(0), "0 B");
        assert_eq!(human_size(1023), "1023 B");
        assert_eq!(human_size(1536), "1.5 KiB");
        assert_eq!(human_size(20 * 1024 * 1024), "20 MiB");
        assert_eq!(utc(0).0, "1970-01-01T00:00:00Z");
        assert_eq!(utc(1_763_700_000).1, "2025-11-21 04:40 UTC");
        assert_eq!(utc(951_782_400).0, "2000-02-29T00:00:00Z");
    }

    #[test]
    fn markup_is_never_shown_inline_as_markup() {
        for name in ["a.html", "a.HTM", "a.svg", "a.xml", "a.xhtml"] {
            assert_eq!(shown_as(name), Shown::Text, "{name}");
        }
        assert_eq!(shown_as("a.png"), Shown::Image("image/png"));
        assert_eq!(shown_as("a.pdf"), Shown::Download);
        assert_eq!(shown_as("noext"), Shown::Download);
        let (kind, fields) = download_fields(Some(b"inline"), "x.svg");
        assert_eq!(kind, "text/plain; charset=utf-8");
        assert!(fields[0].1.starts_with("inline;"));
        let (kind, fields) = download_fields(Some(b"inline"), "x.bin");
        assert_eq!(kind, "application/octet-stream");
        assert!(fields[0].1.starts_with("attachment;"));
        assert_eq!(download_fields(None, "x.txt").1.len(), 0);
    }

    #[test]
    fn logins_expire_and_are_bounded_per_user() {
        let mut sessions = WebSessions::default();
        let now = Instant::now();
        let idle = Duration::from_secs(60);
        let (token, _) = sessions.create("a", [0; 32], now, idle).unwrap();
        assert_eq!(sessions.get(token.as_bytes(), now, idle).unwrap().user, "a");
        let later = now + Duration::from_secs(61);
        assert!(sessions.get(token.as_bytes(), later, idle).is_none());
        for _ in 0..MAX_SESSIONS_PER_USER + 5 {
            sessions.create("b", [0; 32], now, idle).unwrap();
        }
        assert_eq!(sessions.len(), MAX_SESSIONS_PER_USER);
    }
}
