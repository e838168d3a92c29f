//! Point requests: get, getMany, put, del, batch, clear.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use rave_api::{BatchOp, Error, KvStore};

use crate::codec::Request;
use crate::codes;
use crate::frame::Outgoing;
use crate::messages::{self as m, reply};
use crate::range::to_range;

/// One running request: resolves to its answer.
pub(super) type Answer = Pin<Box<dyn Future<Output = Outgoing> + Send>>;

/// An answer known already.
pub(super) fn ready(answer: Outgoing) -> Answer {
    Box::pin(std::future::ready(answer))
}

fn callback(id: u32, result: Result<Option<Vec<u8>>, &'static str>) -> Outgoing {
    let (error, value) = match result {
        Ok(value) => (None, value),
        Err(code) => (Some(code.to_string()), None),
    };
    Outgoing::new(reply::CALLBACK, &m::Callback { id, error, value })
}

fn done(id: u32, result: rave_api::Result<()>) -> Outgoing {
    callback(id, result.map(|()| None).map_err(|e| codes::code_of(&e)))
}

/// The batch operations of a request, or `None` when one is malformed.
fn batch_ops(ops: Vec<m::Operation>) -> Option<Vec<BatchOp>> {
    ops.into_iter()
        .map(|op| match (op.r#type.as_str(), op.value) {
            ("put", Some(value)) => Some(BatchOp::Put { key: op.key, value }),
            ("del", _) => Some(BatchOp::Del { key: op.key }),
            _ => None,
        })
        .collect()
}

/// Runs a point request on `store` (iterator messages are not point requests).
pub(super) fn run(store: Arc<dyn KvStore>, req: Request) -> Answer {
    Box::pin(async move {
        match req {
            Request::Get(get) => {
                let got = (*store).get(&get.key).await;
                callback(
                    get.id,
                    match got {
                        Ok(Some(value)) => Ok(Some(value)),
                        Ok(None) => Err(codes::NOT_FOUND),
                        Err(e) => Err(codes::code_of(&e)),
                    },
                )
            }
            Request::GetMany(many) => {
                let (error, values) = match (*store).get_many(&many.keys).await {
                    Ok(values) => (
                        None,
                        values.into_iter().map(|value| m::Value { value }).collect(),
                    ),
                    Err(e) => (Some(codes::code_of(&e).to_string()), Vec::new()),
                };
                Outgoing::new(
                    reply::GET_MANY_CALLBACK,
                    &m::GetManyCallback {
                        id: many.id,
                        error,
                        values,
                    },
                )
            }
            Request::Put(put) => match put.value {
                Some(value) => done(put.id, (*store).put(&put.key, &value).await),
                None => callback(put.id, Err(codes::INVALID_VALUE)),
            },
            Request::Delete(del) => done(del.id, (*store).del(&del.key).await),
            Request::Batch(batch) => match batch_ops(batch.ops) {
                Some(ops) if ops.is_empty() => done(batch.id, Ok(())),
                Some(ops) => done(batch.id, (*store).batch(ops).await),
                None => callback(batch.id, Err(codes::INVALID_VALUE)),
            },
            Request::Clear(clear) => {
                // Absent options mean every default: limit 0, nothing removed.
                let range = to_range(&clear.options.unwrap_or_default());
                if range.limit == Some(0) {
                    return done(clear.id, Ok(()));
                }
                done(clear.id, (*store).clear(range).await)
            }
            other => {
                let err = Error::protocol(format!("not a point request: {other:?}"));
                callback(0, Err(codes::code_of(&err)))
            }
        }
    })
}
