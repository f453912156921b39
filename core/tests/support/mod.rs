//! Helpers shared by the core's integration tests. Each test binary uses only some of them.
#![allow(dead_code)]

pub mod feeds;
pub mod link_pair;
pub mod pair;
pub mod vector_file;
