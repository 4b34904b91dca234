//! Live tests: the attribute takes the lock around the body in every shape of fn it
//! accepts — methods with `&self`, `&mut self` and `self: Arc<Self>`, generic fns,
//! native `async fn` in trait impls, `#[async_trait]` impls, `crate = path` — and
//! the futures are `Send` (each call here is `tokio::spawn`ed).

mod common;

use std::fmt::Display;
use std::sync::Arc;

use common::{holders, unique, AppError};
use deadpool_postgres::{Client, Pool};
use pglock::{advisory_locked, LockKey};

/// Holders of the key named `name`, seen from `observer`: what each body returns.
async fn held(observer: &Client, name: &str) -> Vec<i32> {
    holders(observer, LockKey::from_name(name)).await
}

struct Service {
    pool: Pool,
    observer: Client,
    name: String,
    calls: u32,
}

impl Service {
    #[advisory_locked(key = "{self.name}", pool = self.pool)]
    async fn by_ref(&self) -> Result<Vec<i32>, AppError> {
        Ok(held(&self.observer, &self.name).await)
    }

    #[advisory_locked(key = "{self.name}", pool = self.pool)]
    async fn by_mut(&mut self) -> Result<Vec<i32>, AppError> {
        self.calls += 1;
        Ok(held(&self.observer, &self.name).await)
    }

    #[advisory_locked(key = "{self.name}", pool = self.pool)]
    async fn by_arc(self: Arc<Self>) -> Result<Vec<i32>, AppError> {
        Ok(held(&self.observer, &self.name).await)
    }
}

// Any expression of the fn's scope can be the lock source.
#[advisory_locked(key = "{name}", pool = **pool)]
async fn generic<'a, N, P>(
    pool: &'a P,
    name: &'a N,
    observer: &Client,
) -> Result<Vec<i32>, AppError>
where
    N: Display + AsRef<str> + Sync + ?Sized,
    P: std::ops::Deref<Target = Pool> + Sync,
{
    Ok(held(observer, name.as_ref()).await)
}

trait Native {
    async fn native(&self) -> Result<Vec<i32>, AppError>;
}

impl Native for Service {
    #[advisory_locked(key = "{self.name}", pool = self.pool)]
    async fn native(&self) -> Result<Vec<i32>, AppError> {
        Ok(held(&self.observer, &self.name).await)
    }
}

#[async_trait::async_trait]
trait Boxed {
    async fn boxed(&self, pool: &Pool, suffix: &str) -> Result<Vec<i32>, AppError>;
}

#[async_trait::async_trait]
impl Boxed for Service {
    #[advisory_locked(key = "{self.name}{suffix}", wait = "5s")]
    async fn boxed(&self, pool: &Pool, suffix: &str) -> Result<Vec<i32>, AppError> {
        if suffix.is_empty() {
            return Err(AppError::Body("an early return keeps its meaning"));
        }
        Ok(held(&self.observer, &format!("{}{suffix}", self.name)).await)
    }
}

mod elsewhere {
    // The facade under another path, as a crate that re-exports pglock has it.
    pub use pglock as locks;
}

#[advisory_locked(key = "{name}", crate = elsewhere::locks)]
async fn through_another_path(
    pool: Pool,
    name: String,
    observer: Client,
) -> Result<Vec<i32>, AppError> {
    Ok(held(&observer, &name).await)
}

async fn service(label: &str) -> Service {
    let pool = common::pool(4);
    let observer = pool.get().await.unwrap();
    Service {
        pool,
        observer,
        name: unique(label),
        calls: 0,
    }
}

/// One session held the key while the body ran.
fn held_once(holders: Vec<i32>, shape: &str) {
    assert_eq!(
        holders.len(),
        1,
        "{shape}: held by exactly one session: {holders:?}"
    );
}

#[tokio::test]
async fn methods_with_every_receiver() {
    let svc = Arc::new(service("receiver").await);
    let s = svc.clone();
    held_once(
        tokio::spawn(async move { s.by_ref().await })
            .await
            .unwrap()
            .unwrap(),
        "&self",
    );
    held_once(
        tokio::spawn(svc.clone().by_arc()).await.unwrap().unwrap(),
        "self: Arc<Self>",
    );

    let mut owned = Arc::into_inner(svc).unwrap();
    let (owned, holders) = tokio::spawn(async move {
        let holders = owned.by_mut().await;
        (owned, holders)
    })
    .await
    .unwrap();
    held_once(holders.unwrap(), "&mut self");
    assert_eq!(owned.calls, 1, "the body ran once with &mut self");
}

#[tokio::test]
async fn generic_fns() {
    let pool = Arc::new(common::pool(4));
    let observer = pool.get().await.unwrap();
    let name = unique("generic");
    let out = tokio::spawn(async move { generic(&pool, name.as_str(), &observer).await })
        .await
        .unwrap();
    held_once(out.unwrap(), "generic");
}

#[tokio::test]
async fn native_async_fn_in_a_trait_impl() {
    let svc = service("native").await;
    held_once(svc.native().await.unwrap(), "native trait impl");
}

#[tokio::test]
async fn async_trait_impls_lock_inside_the_boxed_future() {
    let svc = Arc::new(service("async-trait").await);
    let pool = svc.pool.clone();
    let s = svc.clone();
    let out = tokio::spawn(async move { s.boxed(&pool, "/x").await })
        .await
        .unwrap();
    held_once(out.unwrap(), "#[async_trait]");

    let err = svc.boxed(&svc.pool, "").await.unwrap_err();
    assert!(matches!(err, AppError::Body(_)), "{err:?}");
}

#[tokio::test]
async fn crate_path_reaches_the_runtime_through_a_reexport() {
    let pool = common::pool(4);
    let observer = pool.get().await.unwrap();
    let name = unique("crate-path");
    let out = tokio::spawn(through_another_path(pool, name, observer))
        .await
        .unwrap();
    held_once(out.unwrap(), "crate = elsewhere::locks");
}
