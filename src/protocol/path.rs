//! Paths: names joined by `/`, each following the name rules of
//! [`super::name`].
//!
//! Like a name, a path is accepted or refused as it is: a leading `/`
//! (the user's root) is the only thing dropped, nothing is normalised, and
//! a `.`, `..` or empty component is refused rather than resolved, so the
//! path a client sends is the path that is stored.

use super::name::{self, FileName};

/// Longest path in bytes (without a leading `/`): Linux's `PATH_MAX`, so
/// that any accepted path can be named to the kernel in one piece.
pub const MAX_PATH_LEN: usize = 4096;
/// Most names in a path: deep enough for any real tree, shallow enough
/// that a walk of one (a component-by-component open, a recursive
/// listing's stack of open folders) stays small.
pub const MAX_DEPTH: usize = 64;

/// A path that passed [`validate`]: one or more valid names joined by
/// single `/`, without a leading `/`. Storage takes only these.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FilePath<'a>(&'a str);

/// The owned form of [`FilePath`], for what outlives the bytes it was
/// parsed from (a pending `FROM`, a job).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FilePathBuf(String);

impl<'a> FilePath<'a> {
    /// The path without a leading `/`: `a/b/c`.
    pub fn as_str(&self) -> &'a str {
        self.0
    }

    /// The names of the path, first to last; each is a valid name.
    pub fn names(&self) -> impl DoubleEndedIterator<Item = FileName<'a>> + 'a {
        self.0
            .split('/')
            .map(|part| name::validate(part.as_bytes()).expect("a checked path"))
    }

    /// The last name.
    pub fn leaf(&self) -> FileName<'a> {
        let last = self.0.rsplit('/').next().unwrap_or(self.0);
        name::validate(last.as_bytes()).expect("a checked path")
    }

    /// The folder the path is in, `None` for a name at the root.
    pub fn parent(&self) -> Option<FilePath<'a>> {
        self.0.rfind('/').map(|slash| FilePath(&self.0[..slash]))
    }

    /// How many names the path has.
    pub fn depth(&self) -> usize {
        self.0.split('/').count()
    }

    /// Whether `self` is `other` or beneath it, name by name (`a/bc` is
    /// not beneath `a/b`).
    pub fn is_within(&self, other: FilePath<'_>) -> bool {
        match self.0.strip_prefix(other.0) {
            Some(rest) => rest.is_empty() || rest.starts_with('/'),
            None => false,
        }
    }

    pub fn to_owned(&self) -> FilePathBuf {
        FilePathBuf(self.0.to_owned())
    }

    /// The path as one single name, when it is one.
    pub fn single(&self) -> Option<FileName<'a>> {
        (!self.0.contains('/')).then(|| self.leaf())
    }
}

impl FilePathBuf {
    pub fn as_path(&self) -> FilePath<'_> {
        FilePath(&self.0)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'a> From<FileName<'a>> for FilePath<'a> {
    /// A single name is a path of one name.
    fn from(name: FileName<'a>) -> FilePath<'a> {
        FilePath(name.as_str())
    }
}

impl std::fmt::Debug for FilePath<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.0, f)
    }
}

impl std::fmt::Display for FilePath<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Names hold no control characters, so a path is safe in a log line.
        f.write_str(self.0)
    }
}

impl std::fmt::Debug for FilePathBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&self.0, f)
    }
}

/// Checks a path against the rules in `protocol.md`: an optional leading
/// `/`, then 1 to [`MAX_DEPTH`] valid names joined by single `/`, at most
/// [`MAX_PATH_LEN`] bytes without the leading `/`.
pub fn validate(raw: &[u8]) -> Option<FilePath<'_>> {
    let raw = raw.strip_prefix(b"/").unwrap_or(raw);
    if raw.is_empty() || raw.len() > MAX_PATH_LEN {
        return None;
    }
    let mut depth = 0;
    for part in raw.split(|&b| b == b'/') {
        depth += 1;
        if depth > MAX_DEPTH || name::validate(part).is_none() {
            return None;
        }
    }
    // Every part is valid UTF-8, and so is the whole.
    std::str::from_utf8(raw).ok().map(FilePath)
}

/// True when `path` passes [`validate`].
pub fn is_valid(path: &str) -> bool {
    validate(path.as_bytes()).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(raw: &str) -> FilePath<'_> {
        validate(raw.as_bytes()).unwrap()
    }

    #[test]
    fn accepts_names_joined_by_slashes() {
        for (raw, stored) in [
            ("a", "a"),
            ("/a", "a"),
            ("a/b c/ d", "a/b c/ d"),
            ("/.hidden/...", ".hidden/..."),
            ("ünï/cödé", "ünï/cödé"),
        ] {
            assert_eq!(path(raw).as_str(), stored, "{raw:?}");
        }
        let deepest = vec!["x"; MAX_DEPTH].join("/");
        assert!(is_valid(&deepest));
        let mut names = vec!["a".repeat(255); 15];
        names.extend(["b".repeat(200), "c".repeat(55)]);
        let longest = names.join("/");
        assert!(longest.len() == MAX_PATH_LEN && is_valid(&longest));
        assert!(is_valid(&format!("/{longest}")));
    }

    #[test]
    fn refuses_escapes_empty_parts_and_excess() {
        let too_deep = vec!["x"; MAX_DEPTH + 1].join("/");
        let name_too_long = "x".repeat(256);
        let too_long = vec!["x".repeat(255); 17].join("/");
        assert!(too_long.len() > MAX_PATH_LEN);
        for bad in [
            "",
            "/",
            "//",
            "a//b",
            "a/",
            "/a/",
            "..",
            "a/..",
            "../a",
            "a/./b",
            ".",
            "a/.",
            "/..",
            "a\0b",
            "a/\tb",
            &too_deep,
            &name_too_long,
            &too_long,
        ] {
            assert_eq!(validate(bad.as_bytes()), None, "{bad:?}");
        }
        assert_eq!(validate(b"a/\xff"), None);
    }

    #[test]
    fn parts_parent_and_containment() {
        let p = path("a/b/c");
        assert_eq!(p.leaf().as_str(), "c");
        assert_eq!(p.parent().map(|p| p.as_str()), Some("a/b"));
        assert_eq!(path("a").parent(), None);
        assert_eq!(p.depth(), 3);
        let names: Vec<_> = p.names().map(|n| n.as_str()).collect();
        assert_eq!(names, ["a", "b", "c"]);
        assert!(p.is_within(path("a")));
        assert!(p.is_within(path("a/b/c")));
        assert!(!path("a/bc").is_within(path("a/b")));
        assert!(!path("a").is_within(path("a/b")));
        assert_eq!(path("x").single().map(|n| n.as_str()), Some("x"));
        assert_eq!(p.single(), None);
    }
}
