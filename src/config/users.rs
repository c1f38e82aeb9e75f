//! Client credentials: the users of SASL PLAIN (`-S`, a `MEMCACHED_SASL_PWDB` file) and of
//! memcached's ascii authentication (`-Y`, an auth file), their two file formats, and the
//! constant-time check. Nothing here ever prints a password: `Debug` shows a count, and a bad
//! file is reported by its line number only.

use subtle::{Choice, ConstantTimeEq};

/// memcached's authfile.c reads each line into a 256-byte buffer (`MAX_ENTRY_LEN`): a longer
/// line is cut in pieces that it then reads as further entries.
pub const AUTH_FILE_MAX_LINE: usize = 255;
/// memcached's authfile.c keeps only this many entries (`MAX_ENTRIES`) and silently drops the
/// rest; repcached keeps them all and says so when it loads the file.
pub const AUTH_FILE_MEMCACHED_ENTRIES: usize = 8;

/// A set of `user:password` pairs. Its `Debug` never shows a credential.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Users {
    users: Vec<(Vec<u8>, Vec<u8>)>,
}

impl std::fmt::Debug for Users {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Users({} users)", self.users.len())
    }
}

/// Why an auth file (`-Y`) was refused: the 1-based line and what is wrong with it, never the
/// line itself (it may hold a password).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFileError {
    /// A line without `:` (memcached: "malformed entry"); an empty line is one too.
    Malformed(usize),
    /// A line longer than memcached reads in one piece.
    TooLong(usize),
    /// No entry at all: nobody could ever authenticate.
    Empty,
}

impl std::fmt::Display for AuthFileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AuthFileError::Malformed(line) => {
                write!(f, "line {line}: malformed entry, expected user:password")
            }
            AuthFileError::TooLong(line) => write!(
                f,
                "line {line}: longer than {AUTH_FILE_MAX_LINE} bytes, which memcached cannot read"
            ),
            AuthFileError::Empty => write!(f, "has no user:password entry"),
        }
    }
}

impl Users {
    /// Parses a SASL password file (`MEMCACHED_SASL_PWDB` format). Empty lines are skipped; a
    /// line without `:` or with an empty user name is refused by its number.
    pub fn parse_sasl_pwdb(text: &[u8]) -> Result<Users, usize> {
        let mut users = Vec::new();
        for (i, line) in text.split(|&b| b == b'\n').enumerate() {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.is_empty() {
                continue;
            }
            let at = line.iter().position(|&b| b == b':').ok_or(i + 1)?;
            let (user, password) = (&line[..at], &line[at + 1..]);
            if user.is_empty() {
                return Err(i + 1);
            }
            users.push((user.to_vec(), password.to_vec()));
        }
        Ok(Users { users })
    }

    /// Parses a `-Y` auth file as memcached 1.6's authfile.c reads it: one `user:password`
    /// per line; the user ends at the first `:`, the password at the first `\r` or `\n`.
    /// Every line needs a `:` (an empty line is malformed, as in memcached); a file without a
    /// final newline is fine. Stricter than memcached where it would misread the file: a line
    /// over 255 bytes (memcached cuts it in pieces), a NUL byte (memcached stops reading there)
    /// and a file with no entry are refused.
    pub fn parse_auth_file(text: &[u8]) -> Result<Users, AuthFileError> {
        let mut users = Vec::new();
        let text = text.strip_suffix(b"\n").unwrap_or(text);
        if text.is_empty() {
            return Err(AuthFileError::Empty);
        }
        for (i, line) in text.split(|&b| b == b'\n').enumerate() {
            // fgets keeps the newline inside its 256 bytes: 254 characters and "\n" fit, and
            // so does a last line of 255 without one; count the newline for simplicity.
            if line.len() + 1 > AUTH_FILE_MAX_LINE {
                return Err(AuthFileError::TooLong(i + 1));
            }
            let at = line
                .iter()
                .position(|&b| b == b':')
                .ok_or(AuthFileError::Malformed(i + 1))?;
            // memcached reads a NUL as the end of the file; a file holding one is refused.
            if line.contains(&0) {
                return Err(AuthFileError::Malformed(i + 1));
            }
            let rest = &line[at + 1..];
            let end = rest.iter().position(|&b| b == b'\r').unwrap_or(rest.len());
            users.push((line[..at].to_vec(), rest[..end].to_vec()));
        }
        Ok(Users { users })
    }

    /// Whether `user` and `password` are a pair of the file. Every entry is compared, each in
    /// constant time for its length, so the time taken says neither which user exists nor
    /// how much of a password was right.
    pub fn check(&self, user: &[u8], password: &[u8]) -> bool {
        let found = self.users.iter().fold(Choice::from(0), |ok, (u, p)| {
            ok | (u.as_slice().ct_eq(user) & p.as_slice().ct_eq(password))
        });
        found.into()
    }

    pub fn len(&self) -> usize {
        self.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_file_as_memcached_reads_it() {
        let u =
            Users::parse_auth_file(b"foo:bar\nbaaaz:quux\r\n:empty\nx:pw:colon\ny:cr\rz").unwrap();
        assert_eq!(u.len(), 5);
        assert!(u.check(b"foo", b"bar"));
        assert!(u.check(b"baaaz", b"quux"));
        assert!(!u.check(b"baaaz", b"quux\r"));
        assert!(u.check(b"", b"empty"));
        assert!(u.check(b"x", b"pw:colon"));
        assert!(u.check(b"y", b"cr"));
        assert!(!u.check(b"foo", b"ba"));
        assert!(!u.check(b"fo", b"bar"));
        assert!(!u.check(b"foo", b"bar "));
        // No final newline, or one.
        assert!(Users::parse_auth_file(b"a:b").unwrap().check(b"a", b"b"));
        assert!(Users::parse_auth_file(b"a:b\n").unwrap().check(b"a", b"b"));
        // More than memcached's 8 entries: all kept.
        let many: Vec<u8> = (0..20)
            .flat_map(|i| format!("u{i}:p{i}\n").into_bytes())
            .collect();
        let u = Users::parse_auth_file(&many).unwrap();
        assert!(u.check(b"u19", b"p19"));
    }

    #[test]
    fn auth_file_refusals_name_the_line_only() {
        use AuthFileError::*;
        assert_eq!(Users::parse_auth_file(b""), Err(Empty));
        assert_eq!(Users::parse_auth_file(b"\n"), Err(Empty));
        assert_eq!(Users::parse_auth_file(b"a:b\n\nc:d\n"), Err(Malformed(2)));
        assert_eq!(Users::parse_auth_file(b"a:b\nsecret\n"), Err(Malformed(2)));
        assert_eq!(Users::parse_auth_file(b"a\0:b\n"), Err(Malformed(1)));
        assert_eq!(Users::parse_auth_file(b"a:b\nc:d\0\n"), Err(Malformed(2)));
        let long = [b"u:".as_slice(), &[b'p'; 300]].concat();
        assert_eq!(Users::parse_auth_file(&long), Err(TooLong(1)));
        let e = Malformed(2).to_string();
        assert!(e.contains("line 2") && !e.contains("secret"), "{e}");
        assert!(
            !format!("{:?}", Users::parse_auth_file(b"a:hunter2").unwrap()).contains("hunter2")
        );
    }
}
