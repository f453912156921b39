//! Client paths: parsing and validation live in the core ([`vserv_core::paths`]), pure
//! string processing shared with the fuzz crate; re-exported here under their old path.

pub use vserv_core::paths::{
    MAX_PATH_BYTES, MAX_PATH_DEPTH, PathError, RESERVED_PREFIX, Target, UserPath, check_name,
    is_reserved, resolve,
};
