//! Following a server's pages without trusting it to end them: a listing stops with a
//! [`PagingError`] when the server's `next` does not move on, or after [`MAX_PAGES`] pages.

use std::collections::HashSet;

/// The most pages one command follows (at the largest page sizes, tens of millions of
/// entries): a bound a server cannot push a client past, however it picks its tokens.
pub const MAX_PAGES: usize = 100_000;

/// Why a command stopped following a server's pages.
#[derive(Debug, thiserror::Error)]
pub enum PagingError {
    /// An opaque page token (a name) came back a second time: the listing would loop.
    #[error(
        "`vserv {command}` stopped: the server sent the page token '{token}' a second time \
         (its pages would loop)"
    )]
    Repeated {
        /// The command following the pages.
        command: &'static str,
        /// The repeated token, as the server sent it.
        token: String,
    },
    /// A seq-based page's `next` is not past the seq it started from.
    #[error(
        "`vserv {command}` stopped: the server's next page starts at seq {next}, which is not \
         past seq {from} (its pages would not advance)"
    )]
    NotAdvancing {
        /// The command following the pages.
        command: &'static str,
        /// Where the page started.
        from: u64,
        /// Where the server said the next one starts.
        next: u64,
    },
    /// More than [`MAX_PAGES`] pages.
    #[error("`vserv {command}` stopped after {max} pages from the server")]
    TooManyPages {
        /// The command following the pages.
        command: &'static str,
        /// The bound.
        max: usize,
    },
}

/// The opaque tokens (names) of one listing's pages: each must be new.
pub struct Tokens {
    command: &'static str,
    seen: HashSet<String>,
}

impl Tokens {
    /// No page followed yet, for `vserv command`.
    pub fn new(command: &'static str) -> Tokens {
        Tokens {
            command,
            seen: HashSet::new(),
        }
    }

    /// Accepts `next` as the token of the following page, or fails if it was seen before or
    /// the listing has reached [`MAX_PAGES`].
    pub fn follow(&mut self, next: &str) -> Result<(), PagingError> {
        if self.seen.len() + 1 >= MAX_PAGES {
            return Err(PagingError::TooManyPages {
                command: self.command,
                max: MAX_PAGES,
            });
        }
        if !self.seen.insert(next.to_owned()) {
            return Err(PagingError::Repeated {
                command: self.command,
                token: next.to_owned(),
            });
        }
        Ok(())
    }
}

/// The seqs of one seq-based listing's pages: each must start after the one before.
pub struct Seqs {
    command: &'static str,
    pages: usize,
}

impl Seqs {
    /// No page followed yet, for `vserv command`.
    pub fn new(command: &'static str) -> Seqs {
        Seqs { command, pages: 0 }
    }

    /// Accepts `next` as the start of the page after the one that started at `from`, or
    /// fails if it is not past `from` or the listing has reached [`MAX_PAGES`].
    pub fn follow(&mut self, from: u64, next: u64) -> Result<(), PagingError> {
        if next <= from {
            return Err(PagingError::NotAdvancing {
                command: self.command,
                from,
                next,
            });
        }
        self.pages += 1;
        if self.pages + 1 >= MAX_PAGES {
            return Err(PagingError::TooManyPages {
                command: self.command,
                max: MAX_PAGES,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_token_stops_the_listing() {
        let mut tokens = Tokens::new("ls");
        tokens.follow("b").unwrap();
        tokens.follow("c").unwrap();
        let err = tokens.follow("b").unwrap_err();
        assert!(
            matches!(err, PagingError::Repeated { command: "ls", .. }),
            "{err}"
        );
    }

    #[test]
    fn seqs_must_advance() {
        let mut seqs = Seqs::new("rlist");
        seqs.follow(1, 101).unwrap();
        assert!(matches!(
            seqs.follow(101, 101),
            Err(PagingError::NotAdvancing {
                from: 101,
                next: 101,
                ..
            })
        ));
        assert!(seqs.follow(101, 50).is_err());
    }

    #[test]
    fn pages_are_bounded() {
        let mut seqs = Seqs::new("rlist");
        let stopped = (1..=MAX_PAGES as u64).find_map(|from| seqs.follow(from, from + 1).err());
        assert!(matches!(stopped, Some(PagingError::TooManyPages { .. })));
    }
}
