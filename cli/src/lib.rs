//! The `plexus` command-line tool.
#![forbid(unsafe_code)]

pub mod convert;
pub mod crds;
pub mod inject;
