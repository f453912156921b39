//! Client paths: parsing and validation, without touching any file system.
//!
//! A client path names a file or directory inside a user's home (protocol.md §13.4). It is
//! resolved against the session's working directory into a [`Target`]: whose home, and a
//! [`UserPath`] of validated names from that home's root. Nothing here ever resolves `..`:
//! it is refused, like every other name a home could be escaped or confused with.

use crate::commands::MAX_FILE_NAME;

use crate::names::UserName;

/// The longest client path, in bytes, as sent and once joined to the working directory.
pub const MAX_PATH_BYTES: usize = 4096;

/// The most names a path may have below a home's root.
pub const MAX_PATH_DEPTH: usize = 64;

/// Names starting with this prefix (ASCII case-insensitive) are the server's own (kept
/// versions, partial uploads): clients can neither see nor address them.
pub const RESERVED_PREFIX: &str = ".vserv-";

/// Why a client path was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// The path is empty.
    #[error("a path cannot be empty")]
    Empty,
    /// Longer than [`MAX_PATH_BYTES`].
    #[error("a path has at most {MAX_PATH_BYTES} bytes")]
    TooLong,
    /// Deeper than [`MAX_PATH_DEPTH`].
    #[error("a path has at most {MAX_PATH_DEPTH} levels")]
    TooDeep,
    /// A `..` component.
    #[error("'..' is not allowed in a path")]
    DotDot,
    /// A name longer than [`MAX_FILE_NAME`] bytes.
    #[error("a name has at most {MAX_FILE_NAME} bytes")]
    NameTooLong,
    /// A control character (U+0000-U+001F, U+007F-U+009F).
    #[error("a name cannot contain control characters")]
    ControlCharacter,
    /// A backslash.
    #[error("a name cannot contain '\\'; the separator is '/'")]
    Backslash,
    /// A colon (Windows drive letters and alternate streams).
    #[error("a name cannot contain ':'")]
    Colon,
    /// A bidirectional text control (U+061C, U+200E, U+200F, U+202A-U+202E, U+2066-U+2069).
    #[error("a name cannot contain bidirectional text controls")]
    Bidi,
    /// A name ending in a space or a dot.
    #[error("a name cannot end with a space or '.'")]
    TrailingDotOrSpace,
    /// A Windows device name (`CON`, `NUL`, `COM1`, ... also with an extension).
    #[error("'{0}' is a reserved device name")]
    DeviceName(String),
    /// A name starting with [`RESERVED_PREFIX`].
    #[error("names starting with '{RESERVED_PREFIX}' are reserved for the server")]
    Reserved,
    /// A `/` inside one name (client paths are split at `/`; a name taken whole, such as an
    /// inbox folder or a record name, never holds one).
    #[error("a name cannot contain '/'")]
    Separator,
    /// `~NAME` with a NAME that is not a valid user name.
    #[error("'~{0}' does not name a user")]
    BadHome(String),
}

/// A validated path from a home's root: zero names (the root itself) to
/// [`MAX_PATH_DEPTH`] names, each accepted by [`check_name`].
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Default, Hash)]
pub struct UserPath(Vec<String>);

impl UserPath {
    /// The home's root.
    pub fn root() -> UserPath {
        UserPath(Vec::new())
    }

    /// The names from the root.
    pub fn names(&self) -> &[String] {
        &self.0
    }

    /// Whether this is the root.
    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// The last name (`None` for the root).
    pub fn file_name(&self) -> Option<&str> {
        self.0.last().map(String::as_str)
    }

    /// The directory holding this path (`None` for the root).
    pub fn parent(&self) -> Option<UserPath> {
        self.0
            .split_last()
            .map(|(_, parent)| UserPath(parent.to_vec()))
    }

    /// This path with `name` (already checked) appended.
    pub fn child(&self, name: &str) -> Result<UserPath, PathError> {
        check_name(name)?;
        let mut names = self.0.clone();
        names.push(name.to_owned());
        UserPath::from_names(names)
    }

    /// Whether `self` is `other` or inside it.
    pub fn starts_with(&self, other: &UserPath) -> bool {
        self.0.starts_with(&other.0)
    }

    /// Builds a path from names, checking each and the depth and length limits.
    pub fn from_names(names: Vec<String>) -> Result<UserPath, PathError> {
        for name in &names {
            check_name(name)?;
        }
        if names.len() > MAX_PATH_DEPTH {
            return Err(PathError::TooDeep);
        }
        let path = UserPath(names);
        if path.to_string().len() > MAX_PATH_BYTES {
            return Err(PathError::TooLong);
        }
        Ok(path)
    }
}

impl std::fmt::Display for UserPath {
    /// `/` and the names joined by `/` (`/` alone for the root).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.is_empty() {
            return f.write_str("/");
        }
        for name in &self.0 {
            write!(f, "/{name}")?;
        }
        Ok(())
    }
}

/// A resolved client path: whose home, and where in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The home's owner.
    pub owner: UserName,
    /// The path from that home's root.
    pub path: UserPath,
}

impl Target {
    /// How the client sees it, from the point of view of `me`: the path, prefixed with
    /// `~owner` when the home is not `me`'s.
    pub fn display_for(&self, me: &UserName) -> String {
        if &self.owner == me {
            self.path.to_string()
        } else if self.path.is_root() {
            format!("~{}", self.owner)
        } else {
            format!("~{}{}", self.owner, self.path)
        }
    }
}

/// Resolves the client path `input` for user `me` whose working directory is `cwd`.
///
/// - `~` alone or `~/...` is `me`'s own home; `~NAME` or `~NAME/...` is NAME's home (the
///   caller decides whether `me` may enter it); the rest is from that home's root.
/// - A leading `/` is the root of the working directory's home (never the server's file
///   system root).
/// - Anything else is relative to `cwd`.
///
/// Empty names (repeated or trailing slashes) and `.` are skipped; every other name must
/// pass [`check_name`]. The raw input and the joined result are limited to
/// [`MAX_PATH_BYTES`] and [`MAX_PATH_DEPTH`].
pub fn resolve(me: &UserName, cwd: &Target, input: &str) -> Result<Target, PathError> {
    if input.is_empty() {
        return Err(PathError::Empty);
    }
    if input.len() > MAX_PATH_BYTES {
        return Err(PathError::TooLong);
    }
    let (owner, mut names, rest) = if let Some(after) = input.strip_prefix('~') {
        let (home, rest) = after.split_once('/').unwrap_or((after, ""));
        let owner = if home.is_empty() {
            me.clone()
        } else {
            UserName::parse(home).map_err(|_| PathError::BadHome(home.to_owned()))?
        };
        (owner, Vec::new(), rest)
    } else if let Some(rest) = input.strip_prefix('/') {
        (cwd.owner.clone(), Vec::new(), rest)
    } else {
        (cwd.owner.clone(), cwd.path.0.clone(), input)
    };
    for name in rest.split('/') {
        match name {
            "" | "." => {}
            ".." => return Err(PathError::DotDot),
            name => {
                check_name(name)?;
                names.push(name.to_owned());
                if names.len() > MAX_PATH_DEPTH {
                    return Err(PathError::TooDeep);
                }
            }
        }
    }
    Ok(Target {
        owner,
        path: UserPath::from_names(names)?,
    })
}

/// Windows device names, refused whatever their case and extension.
const DEVICE_NAMES: &[&str] = &[
    "con", "prn", "aux", "nul", "conin$", "conout$", "clock$", "com0", "com1", "com2", "com3",
    "com4", "com5", "com6", "com7", "com8", "com9", "com¹", "com²", "com³", "lpt0", "lpt1", "lpt2",
    "lpt3", "lpt4", "lpt5", "lpt6", "lpt7", "lpt8", "lpt9", "lpt¹", "lpt²", "lpt³",
];

fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Checks one name (a path component) against the rules of protocol.md §13.4. `.` and
/// `..` are refused here (a path skips `.` before asking).
pub fn check_name(name: &str) -> Result<(), PathError> {
    if name.is_empty() {
        return Err(PathError::Empty);
    }
    if name == ".." {
        return Err(PathError::DotDot);
    }
    if name.len() > MAX_FILE_NAME {
        return Err(PathError::NameTooLong);
    }
    for c in name.chars() {
        if c.is_control() {
            return Err(PathError::ControlCharacter);
        }
        if c == '\\' {
            return Err(PathError::Backslash);
        }
        if c == '/' {
            // One name never holds a separator: a name the server takes whole (an inbox
            // folder, a record name) could otherwise reach another directory.
            return Err(PathError::Separator);
        }
        if c == ':' {
            return Err(PathError::Colon);
        }
        if is_bidi_control(c) {
            return Err(PathError::Bidi);
        }
    }
    if name.ends_with(' ') || name.ends_with('.') {
        return Err(PathError::TrailingDotOrSpace);
    }
    let stem = name.split('.').next().unwrap_or(name).trim_end_matches(' ');
    let stem = stem.to_lowercase();
    if DEVICE_NAMES.contains(&stem.as_str()) {
        return Err(PathError::DeviceName(name.to_owned()));
    }
    if is_reserved(name) {
        return Err(PathError::Reserved);
    }
    Ok(())
}

/// Whether `name` starts with [`RESERVED_PREFIX`] (ASCII case-insensitive).
pub fn is_reserved(name: &str) -> bool {
    name.as_bytes()
        .get(..RESERVED_PREFIX.len())
        .is_some_and(|p| p.eq_ignore_ascii_case(RESERVED_PREFIX.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn me() -> UserName {
        UserName::parse("alice").unwrap_or_else(|e| unreachable!("{e}"))
    }

    fn at(path: &[&str]) -> Target {
        Target {
            owner: me(),
            path: UserPath(path.iter().map(|s| s.to_string()).collect()),
        }
    }

    #[test]
    fn relative_absolute_and_home_paths() {
        let cwd = at(&["a", "b"]);
        let r = |s: &str| resolve(&me(), &cwd, s);
        assert_eq!(
            r("c//d/./").map(|t| t.path.to_string()),
            Ok("/a/b/c/d".into())
        );
        assert_eq!(r("/x").map(|t| t.path.to_string()), Ok("/x".into()));
        assert_eq!(r("/").map(|t| t.path), Ok(UserPath::root()));
        assert_eq!(r(".").map(|t| t.path), Ok(cwd.path.clone()));
        assert_eq!(r("~").map(|t| t.path), Ok(UserPath::root()));
        let bob = r("~Bob/x").unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(bob.owner.as_str(), "bob");
        assert_eq!(bob.display_for(&me()), "~bob/x");
        assert_eq!(
            r("a/~b").map(|t| t.path.to_string()),
            Ok("/a/b/a/~b".into())
        );
        assert_eq!(r("~bad name"), Err(PathError::BadHome("bad name".into())));
    }

    #[test]
    fn a_name_never_holds_a_separator() {
        for name in ["/", "a/b", "../x", "../../alice/inbox", "x/"] {
            assert_eq!(check_name(name), Err(PathError::Separator), "{name}");
        }
        assert_eq!(
            UserPath::from_names(vec!["inbox".into(), "../bob".into()]),
            Err(PathError::Separator)
        );
    }

    #[test]
    fn names_are_checked() {
        assert_eq!(
            check_name("com1.txt"),
            Err(PathError::DeviceName("com1.txt".into()))
        );
        assert_eq!(
            check_name("Nul .x"),
            Err(PathError::DeviceName("Nul .x".into()))
        );
        assert_eq!(check_name("console"), Ok(()));
        assert_eq!(check_name(".VSERV-x"), Err(PathError::Reserved));
        assert_eq!(check_name(".vserv"), Ok(()));
        assert_eq!(check_name("a\u{202E}b"), Err(PathError::Bidi));
        assert_eq!(check_name("a\u{85}b"), Err(PathError::ControlCharacter));
        assert_eq!(check_name(&"é".repeat(128)), Err(PathError::NameTooLong));
        assert_eq!(check_name(&"é".repeat(127)), Ok(()));
    }

    #[test]
    fn depth_and_length_are_limited() {
        let cwd = at(&[]);
        let deep = vec!["d"; MAX_PATH_DEPTH].join("/");
        assert!(resolve(&me(), &cwd, &deep).is_ok());
        assert_eq!(
            resolve(&me(), &cwd, &format!("{deep}/e")),
            Err(PathError::TooDeep)
        );
        let name = "x".repeat(255);
        let long = at(&[name.as_str(); 16]);
        assert_eq!(resolve(&me(), &long, "y"), Err(PathError::TooLong));
    }
}
