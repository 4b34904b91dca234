//! One request to a lock session's batch task, and the fusing of an unlock with the
//! try of the same key that came right after it.
//!
//! A task that drops a guard and takes its key again at once queues an unlock and a
//! try of one key back to back. A batch has one row per key, so the try would wait
//! for the next batch, and each such call would cost two batches. Fused, the two go
//! in one row, as the relock statement ([`Op::Relock`]): the unlock runs first and
//! grants the key to a waiter in the server's queue before the try runs, so the try
//! gets what it would have got in the next batch, one batch sooner.

use tokio::sync::oneshot;

use crate::error::Error;
use crate::lock::AdvisoryLock;
use crate::sql::Op;

/// The server's answer to one request: whether the try was granted, or whether the
/// unlocked key was held.
pub(super) type Answer = Result<bool, Error>;

/// A try, unlock or relock for one caller; or an unlock and a try fused.
pub(super) struct Request {
    pub(super) op: Op,
    pub(super) lock: AdvisoryLock,
    pub(super) tell: oneshot::Sender<Answer>,
    /// For an unlock fused with the try after it (sent as [`Op::Relock`]): the try,
    /// whose caller hears the relock's answer. The unlock's caller hears that the
    /// key was held.
    then_try: Option<Box<Request>>,
}

impl Request {
    pub(super) fn new(op: Op, lock: AdvisoryLock, tell: oneshot::Sender<Answer>) -> Self {
        Request {
            op,
            lock,
            tell,
            then_try: None,
        }
    }

    /// Fuses `next` into this request, when this is a plain unlock and `next` a try
    /// of the same key in the same mode; gives `next` back otherwise.
    pub(super) fn fuse(&mut self, next: Request) -> Result<(), Request> {
        let fusable = self.op == Op::Unlock
            && self.then_try.is_none()
            && next.op == Op::Try
            && self.lock.key() == next.lock.key()
            && self.lock.mode() == next.lock.mode();
        if !fusable {
            return Err(next);
        }
        self.op = Op::Relock;
        self.then_try = Some(Box::new(next));
        Ok(())
    }

    pub(super) fn is_fused(&self) -> bool {
        self.then_try.is_some()
    }

    /// The unlock and the try a fused request was made of; a plain request alone.
    pub(super) fn unfuse(self) -> (Request, Option<Request>) {
        match self.then_try {
            None => (self, None),
            Some(then_try) => (
                Request::new(Op::Unlock, self.lock, self.tell),
                Some(*then_try),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(op: Op, lock: &AdvisoryLock) -> Request {
        Request::new(op, lock.clone(), oneshot::channel().0)
    }

    #[test]
    fn an_unlock_takes_in_the_try_of_its_key_after_it_and_gives_both_back() {
        let lock = AdvisoryLock::new(7_i64);
        let mut unlock = request(Op::Unlock, &lock);
        assert!(unlock.fuse(request(Op::Try, &lock)).is_ok());
        assert_eq!(unlock.op, Op::Relock);
        assert!(unlock.is_fused());
        let (first, then) = unlock.unfuse();
        assert_eq!(first.op, Op::Unlock);
        assert_eq!(then.map(|t| t.op), Some(Op::Try));
    }

    #[test]
    fn only_a_plain_unlock_and_a_try_of_the_same_key_and_mode_fuse() {
        let lock = AdvisoryLock::new(7_i64);
        let refused = [
            (request(Op::Try, &lock), request(Op::Try, &lock)),
            (request(Op::Unlock, &lock), request(Op::Unlock, &lock)),
            (request(Op::Relock, &lock), request(Op::Try, &lock)),
            (
                request(Op::Unlock, &lock),
                request(Op::Try, &AdvisoryLock::new(8_i64)),
            ),
            (
                request(Op::Unlock, &lock),
                request(Op::Try, &lock.clone().shared()),
            ),
        ];
        for (mut first, next) in refused {
            assert!(first.fuse(next).is_err());
            assert!(!first.is_fused());
        }
        let mut twice = request(Op::Unlock, &lock);
        assert!(twice.fuse(request(Op::Try, &lock)).is_ok());
        assert!(
            twice.fuse(request(Op::Try, &lock)).is_err(),
            "one try per unlock"
        );
    }
}
