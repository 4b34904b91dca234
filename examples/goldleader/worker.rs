//! A worker process: its tasks go round and round — want the critical section, go
//! in (recording the entry), hold it a while, come out, rest — until the leader
//! closes the worker's stdin, or Ctrl-C. Every step is reported as an [`Event`] on
//! stdout. A lost lock ends only the round it happened in: it is reported, logged
//! at warn, and the task starts a fresh round (the Pool gives a fresh connection,
//! the Locker opens a new session). Any other error ends the worker.
//!
//! How a round takes the lock is [`round`]'s business alone; the loop around it
//! only sees what the round came to, so another way of leading (a `Leadership`
//! term) can be added there without touching the loop.

use std::io::Read;
use std::sync::Arc;
use std::time::{Duration, Instant};

use deadpool_postgres::Pool;
use pglock::{advisory_locked, AdvisoryLock, Electorate, Leadership, Locker, Term};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::cli::{Cli, Mode};
use crate::entries;
use crate::event::Event;
use crate::fault::{self, AppError, EndRefused};
use crate::server::LOCK;

/// How often a follower campaigns in `--mode lead`.
const CAMPAIGN_EVERY: Duration = Duration::from_millis(300);

/// What a worker's tasks share.
struct Worker {
    run: u32,
    id: u32,
    /// Where entries are recorded: the service's own connections, not the lock's.
    entries: Pool,
    /// The `application_name` of the worker's lock sessions, which must hold the
    /// lock when an entry's end is recorded; `None` in `--mode none`.
    holder: Option<String>,
    hold: Duration,
    stop: watch::Receiver<bool>,
}

/// What one round came to.
#[derive(Default)]
enum Round {
    /// The critical section ran.
    Entered,
    /// The lock was busy, and `skip` returned the default without running the body.
    #[default]
    Skipped,
    /// The lock came after the worker was told to stop: nothing was done with it.
    Stopped,
}

/// Where the lock comes from: a session of its own from the pool (one task per
/// worker), or the worker's Locker (shared by its tasks).
#[derive(Clone)]
enum Source {
    Pool(Pool),
    Locker(Locker),
}

pub async fn run(cli: &Cli, id: u32, run: u32) -> Result<(), AppError> {
    let url = cli
        .database_url
        .as_deref()
        .ok_or("a worker needs --database-url")?;
    let tasks = cli.tasks_per_worker();
    let lock_name = entries::application_name(run, id);
    let lock_pool = pool(url, &lock_name, tasks as usize + 2)?;
    let source = match cli.tasks {
        None => Source::Pool(lock_pool),
        Some(_) => Source::Locker(Locker::new(lock_pool)),
    };
    let worker = Arc::new(Worker {
        run,
        id,
        entries: pool(url, &entries::recorder_name(run), tasks as usize + 1)?,
        holder: (cli.mode != Mode::None).then_some(lock_name),
        hold: Duration::from_millis(cli.hold_ms),
        stop: stop_signal(),
    });
    drop(worker.entries.get().await?);
    Event::Ready.report();
    let mut tasks: JoinSet<_> = (0..tasks)
        .map(|task| go_round(worker.clone(), source.clone(), cli.mode, task))
        .collect();
    // The first task to fail ends the worker (the others are dropped with the set).
    while let Some(task) = tasks.join_next().await {
        task??;
    }
    Ok(())
}

/// A pool on `url` whose connections are named `application_name`.
fn pool(url: &str, application_name: &str, max_size: usize) -> Result<Pool, AppError> {
    let mut config: tokio_postgres::Config = url.parse()?;
    config.application_name(application_name);
    let manager = deadpool_postgres::Manager::new(config, tokio_postgres::NoTls);
    Ok(Pool::builder(manager).max_size(max_size).build()?)
}

/// Becomes true when the leader closes our stdin (it is done, or gone) or on Ctrl-C.
/// A Ctrl-C in a terminal reaches the whole process group: the workers stop as
/// cleanly as when the leader tells them.
fn stop_signal() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    let on_eof = tx.clone();
    // A thread of its own: a blocking read in tokio's pool would hold up exit.
    std::thread::spawn(move || {
        let _ = std::io::stdin().read_to_end(&mut Vec::new());
        on_eof.send_replace(true);
    });
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            tx.send_replace(true);
        }
    });
    rx
}

/// One task's rounds, until told to stop.
async fn go_round(
    worker: Arc<Worker>,
    source: Source,
    mode: Mode,
    task: u32,
) -> Result<(), AppError> {
    let mut stop = worker.stop.clone();
    let (rest, retry) = (worker.hold / 2, worker.hold / 5);
    let mut wanted = Instant::now();
    while !*stop.borrow() {
        let pause = match round(&worker, &source, mode, task, wanted).await {
            Ok(Round::Entered) => rest,
            Ok(Round::Stopped) => break,
            Ok(Round::Skipped) => {
                Event::Skip { task }.report();
                retry
            }
            Err(e) if is_busy(&e) => {
                Event::Busy { task }.report();
                // Still wanting it: the wait runs on from the first try.
                tokio::select! {
                    _ = tokio::time::sleep(retry) => continue,
                    _ = stop.changed() => break,
                }
            }
            Err(e) if fault::lock_lost(&e) => {
                Event::Lost { task }.report();
                let why = fault::describe(&*e);
                tracing::warn!(
                    worker = worker.id,
                    task,
                    "lock lost: {why}; starting a fresh round"
                );
                retry
            }
            Err(e) => return Err(e),
        };
        tokio::select! {
            _ = tokio::time::sleep(pause) => wanted = Instant::now(),
            _ = stop.changed() => break,
        }
    }
    Ok(())
}

fn is_busy(e: &AppError) -> bool {
    e.downcast_ref::<pglock::Error>()
        .is_some_and(pglock::Error::is_busy)
}

/// Wants the critical section once, the way `mode` says.
async fn round(
    worker: &Worker,
    source: &Source,
    mode: Mode,
    task: u32,
    wanted: Instant,
) -> Result<Round, AppError> {
    match (mode, source) {
        (Mode::Try, Source::Pool(pool)) => try_pool(pool, worker, task, wanted).await,
        (Mode::Wait, Source::Pool(pool)) => wait_pool(pool, worker, task, wanted).await,
        (Mode::Skip, Source::Pool(pool)) => skip_pool(pool, worker, task, wanted).await,
        (Mode::Try, Source::Locker(locker)) => try_locker(locker, worker, task, wanted).await,
        (Mode::Wait, Source::Locker(locker)) => wait_locker(locker, worker, task, wanted).await,
        (Mode::Skip, Source::Locker(locker)) => skip_locker(locker, worker, task, wanted).await,
        (Mode::Lead, Source::Pool(pool)) => lead(worker, pool.clone(), task).await,
        (Mode::Lead, Source::Locker(locker)) => lead(worker, locker.clone(), task).await,
        (Mode::None, _) => critical_section(worker, task, wanted, None).await,
    }
}

/// `--mode lead`: campaigns under `Leadership` until told to stop; each term's body
/// goes in and out of the critical section with the term's fence. A lost lock drops
/// the body (reported as Lost) and the worker campaigns again inside this round.
async fn lead<S: Electorate>(worker: &Worker, source: S, task: u32) -> Result<Round, AppError> {
    let leadership =
        Leadership::new(AdvisoryLock::new(LOCK), source).campaign_every(CAMPAIGN_EVERY);
    let mut stop = worker.stop.clone();
    let shutdown = async move {
        let _ = stop.wait_for(|stopped| *stopped).await;
    };
    leadership
        .run(shutdown, |term| term_body(worker, task, term))
        .await?;
    Ok(Round::Stopped)
}

/// Reports the term's end as a lost lock, unless the worker was told to stop.
struct TermEnd<'a> {
    worker: &'a Worker,
    task: u32,
}

impl Drop for TermEnd<'_> {
    fn drop(&mut self) {
        if !*self.worker.stop.borrow() {
            Event::Lost { task: self.task }.report();
            tracing::warn!(
                worker = self.worker.id,
                "leadership lost; campaigning again"
            );
        }
    }
}

/// A term: the leader's rounds in the critical section, until the term is dropped.
async fn term_body(w: &Worker, task: u32, term: Term) -> Result<(), AppError> {
    Event::Elected {
        fence: term.fence(),
    }
    .report();
    let _end = TermEnd { worker: w, task };
    loop {
        match critical_section(w, task, Instant::now(), Some(term.fence())).await {
            Ok(Round::Entered) => tokio::time::sleep(w.hold / 2).await,
            Ok(_) => std::future::pending::<()>().await,
            // The lock went while inside: the term is over, and the body is dropped
            // once `Leadership` notices.
            Err(e) if e.downcast_ref::<EndRefused>().is_some() => {
                term.lost().await;
                std::future::pending::<()>().await;
            }
            Err(e) => return Err(e),
        }
    }
}

// The same critical section behind each form of the attribute; the lock source is
// the one parameter that is a `Pool` or a `Locker` (`worker.entries` is not a
// parameter, so it does not count).

#[advisory_locked(key = "goldleader")]
async fn try_pool(pool: &Pool, w: &Worker, task: u32, wanted: Instant) -> Result<Round, AppError> {
    critical_section(w, task, wanted, None).await
}

#[advisory_locked(key = "goldleader", wait)]
async fn wait_pool(pool: &Pool, w: &Worker, task: u32, wanted: Instant) -> Result<Round, AppError> {
    critical_section(w, task, wanted, None).await
}

#[advisory_locked(key = "goldleader", skip)]
async fn skip_pool(pool: &Pool, w: &Worker, task: u32, wanted: Instant) -> Result<Round, AppError> {
    critical_section(w, task, wanted, None).await
}

#[advisory_locked(key = "goldleader")]
async fn try_locker(
    locker: &Locker,
    w: &Worker,
    task: u32,
    wanted: Instant,
) -> Result<Round, AppError> {
    critical_section(w, task, wanted, None).await
}

#[advisory_locked(key = "goldleader", wait)]
async fn wait_locker(
    locker: &Locker,
    w: &Worker,
    task: u32,
    wanted: Instant,
) -> Result<Round, AppError> {
    critical_section(w, task, wanted, None).await
}

#[advisory_locked(key = "goldleader", skip)]
async fn skip_locker(
    locker: &Locker,
    w: &Worker,
    task: u32,
    wanted: Instant,
) -> Result<Round, AppError> {
    critical_section(w, task, wanted, None).await
}

/// Inside: record the entry's start (with the term's fence, when leading), hold,
/// record its end (by the server's clock).
async fn critical_section(
    w: &Worker,
    task: u32,
    wanted: Instant,
    fence: Option<u64>,
) -> Result<Round, AppError> {
    if *w.stop.borrow() {
        return Ok(Round::Stopped);
    }
    let waited = wanted.elapsed();
    Event::Enter { task, waited }.report();
    let entered = Instant::now();
    let db = w.entries.get().await?;
    let waited_us = waited.as_micros().try_into()?;
    let fence = fence.map(i64::try_from).transpose()?;
    let id = entries::start(&db, w.run, w.id, task, waited_us, fence).await?;
    tokio::time::sleep(w.hold).await;
    if !entries::end(&db, w.run, id, w.holder.as_deref()).await? {
        return Err(EndRefused.into());
    }
    Event::Leave {
        task,
        held: entered.elapsed(),
    }
    .report();
    Ok(Round::Entered)
}
