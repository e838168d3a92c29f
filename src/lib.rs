//! rave: one embedded key-value database directory, opened from many processes at once.
pub use rave_api::*;
