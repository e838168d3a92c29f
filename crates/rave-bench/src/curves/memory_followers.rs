//! C5: the leader's resident memory against the number of connected followers, beside Redis's
//! with as many idle clients.
//!
//! A follower is a `rave::Rave` handle with its own connection to the leader: a thousand
//! follower processes would need ~15 GB, so the followers are spread over a few worker
//! processes that each open many handles on the directory (each handle opened where a leader
//! already exists follows it over a connection of its own; the leader's own count of the
//! connections it serves is checked at every point). The followers are added point by point;
//! the leader and Redis hold P8's data set.

use std::time::Duration;

use rave::{Error, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

use super::worker;
use super::{Curve, CurveSizes, Series, kill_all, spawn_workers};
use crate::child::{Helper, SHORT, field, temp_dir};
use crate::cli::Sizes;
use crate::engines::EngineName;
use crate::machine::rss_bytes;
use crate::redis::{self, Redis};

/// How long the processes idle before memory is read (as P8).
const SETTLE: Duration = Duration::from_millis(500);

const MIB: f64 = 1024.0 * 1024.0;

/// Measures C5 for `engine` (`sizes` gives P8's data set).
pub async fn measure(engine: EngineName, sizes: &Sizes, cs: &CurveSizes) -> Result<Curve> {
    let points = cs.followers.len();
    let mut rave = Series::new(
        format!("rave leader ({engine})"),
        format!(
            "VmRSS of the leader process (a rave-bench helper holding {} keys of {} B) with N \
             follower handles connected, spread over {} worker processes, each handle having \
             done one get",
            sizes.keys, sizes.value_size, cs.follower_processes
        ),
        points,
    );
    let mut baseline = Series::new(
        "Redis",
        "VmRSS of redis-server holding the same keys and values, with N idle clients \
         connected over its unix socket (each sent one PING)",
        points,
    )
    .baseline();
    let redis_missing = redis::missing();
    if let Some(why) = &redis_missing {
        eprintln!("rave-bench: C5: skipping the Redis baseline: {why}");
        baseline.skipped = Some(why.clone());
    }
    let most = cs.followers.iter().copied().max().unwrap_or(0);
    // The leader and Redis each hold a descriptor per follower; the processes inherit this.
    raise_fd_limit(most as u64 + 256)?;
    let mut counted = vec![0u64; points];
    for _run in 0..cs.runs {
        let tmp = temp_dir()?;
        let dir = tmp.path().join("db");
        let mut leader = Helper::leader(engine, &dir, &sizes.point_data())?;
        leader.expect("ready", SHORT).await?;
        let processes = cs.follower_processes.max(1);
        let mut workers = spawn_workers("follower host", processes, |i| {
            worker::args("rave", Some(engine), &dir, i, 0, &[])
        })
        .await?;
        let redis = match redis_missing {
            None => {
                let redis = Redis::start(tmp.path()).await?;
                redis.populate(sizes.keys, sizes.value_size).await?;
                Some(redis)
            }
            Some(_) => None,
        };
        let mut handles = vec![0usize; processes];
        let mut clients = Vec::new();
        for (i, &n) in cs.followers.iter().enumerate() {
            // Spread n handles as evenly as the processes allow; open only the new ones.
            let mut asked = Vec::new();
            for (w, have) in handles.iter_mut().enumerate() {
                let want = n / processes + usize::from(w < n % processes);
                if want > *have {
                    workers[w].send(&format!("open {}", want - *have)).await?;
                    asked.push(w);
                    *have = want;
                }
            }
            for w in asked {
                workers[w].expect("opened", SHORT).await?;
            }
            if n > 0 {
                workers[0].send("count").await?;
                let words = workers[0].expect("count", SHORT).await?;
                counted[i] = field(&words, 0, "a connection count")?;
            }
            if let Some(r) = &redis {
                while clients.len() < n {
                    clients.push(idle_client(r).await?);
                }
            }
            tokio::time::sleep(SETTLE).await;
            rave.runs[i].push(rss_mib(leader.pid())?);
            if let Some(r) = &redis {
                baseline.runs[i].push(rss_mib(r.pid())?);
            }
        }
        drop(clients);
        kill_all(workers).await;
        if let Some(r) = redis {
            r.stop().await;
        }
        leader.stop().await;
    }

    let mut curve = Curve::new(
        "C5",
        "leader resident memory against connected followers",
        "connected followers (Redis: idle clients)",
        cs.followers.iter().map(|&n| n as f64).collect(),
        cs.followers.iter().map(|n| n.to_string()).collect(),
        "MiB",
    );
    let counts: Vec<String> = counted.iter().map(u64::to_string).collect();
    curve.note = format!(
        "Followers added point by point to one leader per run, {} run(s); memory read after {} \
         ms idle. The leader counted {} follower connections at the points (last run).",
        cs.runs,
        SETTLE.as_millis(),
        counts.join(", ")
    );
    curve.series = vec![rave, baseline];
    Ok(curve)
}

/// A connection to Redis that has done one PING and then stays idle.
async fn idle_client(redis: &Redis) -> Result<UnixStream> {
    let mut s = UnixStream::connect(redis.socket())
        .await
        .map_err(|e| Error::io("connect to redis", &e))?;
    s.write_all(b"PING\r\n")
        .await
        .map_err(|e| Error::io("write to redis", &e))?;
    let mut reply = [0u8; 7];
    tokio::time::timeout(SHORT, s.read_exact(&mut reply))
        .await
        .map_err(|_| Error::Timeout { waited: SHORT })?
        .map_err(|e| Error::io("read from redis", &e))?;
    if &reply != b"+PONG\r\n" {
        return Err(Error::protocol("redis did not answer +PONG"));
    }
    Ok(s)
}

/// The resident memory of process `pid`, in MiB.
fn rss_mib(pid: Option<u32>) -> Result<f64> {
    let pid = pid.ok_or_else(|| Error::other("a process exited before its memory was read"))?;
    rss_bytes(pid)
        .map(|b| b as f64 / MIB)
        .ok_or_else(|| Error::other(format!("cannot read VmRSS of process {pid}")))
}

/// Raises this process's soft limit on open descriptors to at least `want` (within the hard
/// limit): the common default of 1024 is too few for a leader serving 1 000 followers.
fn raise_fd_limit(want: u64) -> Result<()> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into `limit`, a valid rlimit that outlives the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(Error::io(
            "read the open-file limit",
            &std::io::Error::last_os_error(),
        ));
    }
    if limit.rlim_cur >= want {
        return Ok(());
    }
    if limit.rlim_max < want {
        return Err(Error::other(format!(
            "C5 needs {want} open files, but the hard limit is {} (raise `ulimit -Hn`)",
            limit.rlim_max
        )));
    }
    limit.rlim_cur = want;
    // SAFETY: setrlimit reads `limit`, a valid rlimit that outlives the call.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
        return Err(Error::io(
            "raise the open-file limit",
            &std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}
