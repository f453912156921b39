//! The cases of the suite, one module a topic. Each case is a function generic over the
//! [`Runtime`](crate::Runtime) it runs on; [`suite!`](crate::suite) instantiates them all.

pub mod accounts;
pub mod channel;
pub mod file_versions;
pub mod files;
pub mod ledger;
pub mod limits;
pub mod messages;
pub mod peers;
pub mod tables;
pub mod transit;
pub mod two_factor;
pub mod udp;
