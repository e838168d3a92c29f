//! `rave level-serve`: the leader daemon of abstract-level's suite (run-suite.js with
//! `LEADER=daemon`). For each directory on stdin it opens a rave handle there (the first in the
//! directory, so it leads), serves the handle to many-level guests on `<dir>/rave-level.sock`
//! and prints `ready <dir>`. The suite's guests then run every operation through rave.

use std::path::PathBuf;
use std::sync::Arc;

use rave::{Backend, KvStore, Rave, RaveOptions, Role};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio_util::sync::CancellationToken;

use super::CliError;

struct Served<B: Backend> {
    db: Rave<B>,
    server: tokio::task::JoinHandle<()>,
}

/// Serves until stdin ends, then closes every store.
pub async fn run<B: Backend + Clone>(backend: B, options: RaveOptions) -> Result<(), CliError> {
    let shutdown = CancellationToken::new();
    let mut served: Vec<Served<B>> = Vec::new();
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut stdout = tokio::io::stdout();
    let result = loop {
        let line = match lines.next_line().await {
            Ok(Some(line)) => line,
            Ok(None) => break Ok(()),
            Err(e) => break Err(CliError::Rave(rave::Error::io("read stdin", &e))),
        };
        let dir = PathBuf::from(line.trim());
        if dir.as_os_str().is_empty() {
            continue;
        }
        let db = Rave::open_with(backend.clone(), &dir, options.clone())?;
        match db.ready().await? {
            Role::Leader => {}
            other => {
                break Err(CliError::Failed(format!(
                    "{}: this handle is {other}, not the leader (the directory must be fresh)",
                    dir.display()
                )));
            }
        }
        let store: Arc<dyn KvStore> = Arc::new(db.clone());
        let server = rave::level_socket::serve(store, db.path(), shutdown.clone())?;
        served.push(Served { db, server });
        let ready = format!("ready {}\n", dir.display());
        if let Err(e) = async {
            stdout.write_all(ready.as_bytes()).await?;
            stdout.flush().await
        }
        .await
        {
            break Err(CliError::Rave(rave::Error::io("write stdout", &e)));
        }
    };
    shutdown.cancel();
    for s in served {
        let _ = s.server.await;
        let _ = s.db.close().await;
    }
    result
}
