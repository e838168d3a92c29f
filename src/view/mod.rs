//! Views over the byte API: sublevels, typed values and keys, ranges from Rust syntax.
//!
//! Views are client-side: they turn keys, values and ranges into bytes and call the store's
//! [`KvStore`](crate::KvStore) methods, so they work the same on a bare engine store, a leader
//! and a follower, and the wire and the engines stay bytes-only.
//!
//! - [`Sublevel`]: a namespace under Level's prefix `!name!` (nested `!a!!b!`);
//! - [`Typed`]: keys of a [`Key`] type, values of a [`Codec`] ([`Json`] by default,
//!   [`MsgPack`], [`Raw`]);
//! - [`IntoRange`]: `"a".."c"` and friends where a range is expected.

mod codec;
pub mod key;
mod methods;
mod range;
mod sublevel;
mod typed;

pub use codec::{Codec, Json, MsgPack, Raw};
pub use key::{AsKey, Key};
pub(crate) use methods::byte_methods;
pub use range::IntoRange;
pub(crate) use range::bounds_range;
pub use sublevel::Sublevel;
pub use typed::{Typed, TypedCasError, TypedChange, TypedEvent};

impl Sublevel {
    byte_methods!(
        "# let db = rave::Rave::open(dir.path(), Default::default())?;\n\
         let db = db.sublevel(\"s\");\n"
    );
}
