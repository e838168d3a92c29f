//! `rave status` and `rave stats`: who leads, at which epoch and sequence, and what the store
//! holds.

use std::io::Write;

use clap::Args;
use rave::{Backend, KvStore, Range, Rave, Role};

use super::CliError;
use super::codec::stdout_error;

/// `rave stats`'s flags.
#[derive(Args, Debug)]
pub struct StatsArgs {
    /// Count the keys and bytes with a scan of the whole store (or of the `--sublevel`): it
    /// reads every entry, so it takes as long as an export. The lines say `(counted)`.
    #[arg(long)]
    pub count: bool,
}

/// Who leads, as this process sees it.
struct Leader {
    role: Role,
    /// The leader's pid and epoch, when known (not for a Node leader or a shared store).
    record: Option<(u32, u64)>,
    /// The last commit that applied writes; `None` when the leader keeps no sequence (Node).
    sequence: Option<u64>,
}

async fn leader<B: Backend>(db: &Rave<B>) -> Result<Leader, CliError> {
    let role = db.ready().await?;
    let record = if role == Role::Direct {
        None
    } else {
        // A follower without an epoch follows a Node (rave-level) leader, which keeps no
        // record: the one in the directory is an earlier rave leader's.
        db.leader_record()?
            .filter(|_| role != Role::Follower || db.epoch().is_some())
            .map(|record| {
                let pid = if role == Role::Leader {
                    std::process::id()
                } else {
                    record.pid
                };
                (pid, record.epoch)
            })
    };
    // A Node (rave-level) leader keeps no commit sequence.
    let sequence = match db.sequence().await {
        Ok(sequence) => Some(sequence),
        Err(rave::Error::Unsupported { .. }) => None,
        Err(e) => return Err(e.into()),
    };
    Ok(Leader {
        role,
        record,
        sequence,
    })
}

fn print(out: &mut impl Write, field: &str, value: impl std::fmt::Display) -> Result<(), CliError> {
    writeln!(out, "{field}\t{value}").map_err(stdout_error)
}

/// `rave status`: role, leader pid and epoch, socket, sequence.
pub async fn status<B: Backend>(db: &Rave<B>, out: &mut impl Write) -> Result<(), CliError> {
    let leader = leader(db).await?;
    print(out, "role", leader.role)?;
    if leader.role == Role::Direct {
        // A shared store: no leader, no socket.
        return print(out, "sequence", sequence_text(leader.sequence));
    }
    match leader.record {
        Some((pid, epoch)) => {
            print(out, "leader_pid", pid)?;
            print(out, "epoch", epoch)?;
        }
        None => print(out, "leader_pid", "unknown")?,
    }
    print(out, "socket", db.socket_path()?.display())?;
    print(out, "sequence", sequence_text(leader.sequence))
}

/// `rave stats`: engine, role, leader pid and epoch, followers, sequence, keys and bytes of
/// `store` (the handle or a sublevel of it).
pub async fn stats<B: Backend, S: KvStore + ?Sized>(
    db: &Rave<B>,
    store: &S,
    engine: &str,
    args: &StatsArgs,
    out: &mut impl Write,
) -> Result<(), CliError> {
    let leader = leader(db).await?;
    print(out, "engine", engine)?;
    print(out, "role", leader.role)?;
    let (pid, epoch) = match (leader.role, leader.record) {
        (Role::Direct, _) => ("none".to_string(), "none".to_string()),
        (_, Some((pid, epoch))) => (pid.to_string(), epoch.to_string()),
        (_, None) => ("unknown".to_string(), "unknown".to_string()),
    };
    print(out, "leader_pid", pid)?;
    print(out, "epoch", epoch)?;
    // Counted by the leader's server; when this process follows, its own connection is one.
    let followers = match db.connected_followers().await? {
        Some(n) => n.to_string(),
        None => "none".to_string(),
    };
    print(out, "followers", followers)?;
    print(out, "sequence", sequence_text(leader.sequence))?;
    if args.count {
        let (keys, bytes) = count(store).await?;
        print(out, "keys", format!("{keys} (counted)"))?;
        print(out, "bytes", format!("{bytes} (counted)"))
    } else {
        // No engine reports its size cheaply; `--count` scans.
        print(out, "keys", "unknown")?;
        print(out, "bytes", "unknown")
    }
}

fn sequence_text(sequence: Option<u64>) -> String {
    sequence.map_or_else(|| "none".to_string(), |s| s.to_string())
}

/// The number of entries of `store` and the bytes of their keys and values, by a scan.
async fn count<S: KvStore + ?Sized>(store: &S) -> Result<(u64, u64), CliError> {
    let mut iter = store.iterator(Range::all()).await?;
    let (mut keys, mut bytes) = (0u64, 0u64);
    loop {
        let chunk = iter.next_chunk(rave::DEFAULT_CHUNK).await?;
        if chunk.is_empty() {
            return Ok((keys, bytes));
        }
        keys += chunk.len() as u64;
        bytes += chunk
            .iter()
            .map(|e| (e.key.len() + e.value.len()) as u64)
            .sum::<u64>();
    }
}
