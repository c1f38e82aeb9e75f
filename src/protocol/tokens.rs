//! The one line splitter and tokenizer of the text and meta protocols, as memcached's
//! `try_read_command_ascii` and `tokenize_command` cut a command line.
//!
//! A line ends at "\n" with at most one "\r" before it (a lone "\r" stays, to be refused as a
//! one-byte command), and an embedded NUL ends it early because memcached works on a C string.
//! Tokens are separated by spaces only (a tab is part of a token, where the number rules of
//! [`crate::numbers`] then read it as white space). Nothing here allocates.

/// The first command line of `input`: the line without its "\n" (nor one "\r" before it, nor
/// anything from an embedded NUL on) and the number of bytes it occupies including the "\n".
/// `None` while no "\n" has arrived.
#[inline]
pub fn split_line(input: &[u8]) -> Option<(&[u8], usize)> {
    let nl = memchr::memchr(b'\n', input)?;
    let mut end = nl;
    if end > 1 && input[end - 1] == b'\r' {
        end -= 1;
    }
    let mut line = &input[..end];
    if let Some(nul) = memchr::memchr(0, line) {
        line = &line[..nul];
    }
    Some((line, nl + 1))
}

/// The first `N` space-separated tokens of a line, kept as offsets into it. memcached's
/// tokenizer stops after a fixed number of tokens; text and meta use different caps, which are
/// visible (the token count and the "last token" differ on very long lines), hence `N`.
pub struct Tokens<'a, const N: usize> {
    line: &'a [u8],
    spans: [(u32, u32); N],
    len: usize,
}

impl<'a, const N: usize> Tokens<'a, N> {
    #[inline]
    pub fn new(line: &'a [u8]) -> Self {
        let mut t = Tokens {
            line,
            spans: [(0, 0); N],
            len: 0,
        };
        // Lines are bounded by the read buffer long before 4 GiB; a longer one is cut there.
        let line = &line[..line.len().min(u32::MAX as usize)];
        let mut pos = 0;
        while t.len < N {
            while pos < line.len() && line[pos] == b' ' {
                pos += 1;
            }
            if pos == line.len() {
                break;
            }
            let end = memchr::memchr(b' ', &line[pos..]).map_or(line.len(), |e| pos + e);
            t.spans[t.len] = (pos as u32, end as u32);
            t.len += 1;
            pos = end;
        }
        t
    }

    /// Token `i`, if there is one.
    #[inline]
    pub fn get(&self, i: usize) -> Option<&'a [u8]> {
        if i < self.len {
            let (s, e) = self.spans[i];
            Some(&self.line[s as usize..e as usize])
        } else {
            None
        }
    }

    /// Token `i`, or empty (memcached would read its terminal token, an empty string).
    #[inline]
    pub fn at(&self, i: usize) -> &'a [u8] {
        self.get(i).unwrap_or(&[])
    }

    /// memcached's token count, which includes its terminal (empty) token.
    #[inline]
    pub fn ntokens(&self) -> usize {
        self.len + 1
    }

    /// The last token tokenized (memcached's `tokens[ntokens - 2]`).
    #[inline]
    pub fn last(&self) -> &'a [u8] {
        self.len.checked_sub(1).map_or(&[], |i| self.at(i))
    }

    /// memcached's set_noreply_maybe: the last token is exactly "noreply".
    #[inline]
    pub fn noreply(&self) -> bool {
        self.last() == b"noreply"
    }

    /// Everything from the start of token `i` to the end of the line (empty if no such token).
    #[inline]
    pub fn from(&self, i: usize) -> &'a [u8] {
        if i < self.len {
            &self.line[self.spans[i].0 as usize..]
        } else {
            &[]
        }
    }

    /// The part of the line after its first `n` tokens, with the spaces that follow them.
    #[inline]
    pub fn after(&self, n: usize) -> &'a [u8] {
        match n.checked_sub(1) {
            None => self.line,
            Some(i) if i < self.len => &self.line[self.spans[i].1 as usize..],
            Some(_) => &self.line[self.line.len()..],
        }
    }
}

/// The keys of a get/gets/gat/gats key list (space separated, empty pieces skipped).
#[inline]
pub fn keys(raw: &[u8]) -> impl Iterator<Item = &[u8]> {
    raw.split(|b| *b == b' ').filter(|k| !k.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::type_complexity)]
    fn lines_like_memcached() {
        let cases: &[(&[u8], Option<(&[u8], usize)>)] = &[
            (b"get a\r\n", Some((b"get a", 7))),
            (b"get a\n", Some((b"get a", 6))),
            (b"\r\n", Some((b"\r", 2))),
            (b"\n", Some((b"", 1))),
            (b"a\r\r\n", Some((b"a\r", 4))),
            (b"get a\0b\r\nrest", Some((b"get a", 9))),
            (b"get a", None),
            (b"", None),
        ];
        for (input, want) in cases {
            assert_eq!(split_line(input), *want, "{input:?}");
        }
    }

    #[test]
    fn tokens_split_on_spaces_only() {
        let t = Tokens::<4>::new(b"  set\tx  k  0 ");
        assert_eq!(t.ntokens(), 4);
        assert_eq!(t.get(0), Some(&b"set\tx"[..]));
        assert_eq!(t.at(2), b"0");
        assert_eq!(t.at(3), b"");
        assert_eq!(t.last(), b"0");
        assert_eq!(t.from(1), b"k  0 ");
        assert_eq!(t.after(1), b"  k  0 ");
        assert_eq!(t.after(0), b"  set\tx  k  0 ");
        assert_eq!(t.after(9), b"");
        // The cap: the rest of the line stays unsplit and uncounted.
        let t = Tokens::<2>::new(b"a b c noreply");
        assert_eq!((t.ntokens(), t.last(), t.noreply()), (3, &b"b"[..], false));
        assert!(Tokens::<8>::new(b"delete a noreply").noreply());
        assert_eq!(Tokens::<3>::new(b"").ntokens(), 1);
        assert_eq!(keys(b" a  b ").collect::<Vec<_>>(), [&b"a"[..], b"b"]);
    }
}
