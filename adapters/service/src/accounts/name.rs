//! User names: the rules and the normal form live in the core ([`vserv_core::names`]), pure
//! string processing shared with the fuzz crate; re-exported here under their old path.

pub use vserv_core::names::{MAX_NAME_LEN, NameError, UserName};
