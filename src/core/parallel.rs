//! Two pieces of work on two cores.

/// Runs `here` on this thread and `there` on a second one, and returns both results; a
/// panic on the second thread is raised again here.
pub fn join<A, B>(here: impl FnOnce() -> A, there: impl FnOnce() -> B + Send) -> (A, B)
where
    B: Send,
{
    std::thread::scope(|s| {
        let there = s.spawn(there);
        let here = here();
        let there = there
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        (here, there)
    })
}

/// [`join`] when `worth_a_thread`, else both on this thread one after the other: starting
/// and joining a thread costs ~0.1 ms, more than small pieces of work (a first import of 10k
/// rows writes 16 batches of accounts and 16 of their index).
pub fn join_if<A, B>(
    worth_a_thread: bool,
    here: impl FnOnce() -> A,
    there: impl FnOnce() -> B + Send,
) -> (A, B)
where
    B: Send,
{
    match worth_a_thread {
        true => join(here, there),
        false => (here(), there()),
    }
}

/// How many bytes of work make a second thread worth starting ([`join_if`]).
pub const WORTH_A_THREAD: usize = 256 << 10;

/// The cores a step may use: both, or one when the other core already runs another part of
/// the same work (a write of a million accounts split between two threads, each of which
/// must not start a third).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cores {
    One,
    Two,
}

impl Cores {
    /// [`join_if`], on one thread when this is [`Cores::One`].
    pub fn join_if<A, B>(
        self,
        worth_a_thread: bool,
        here: impl FnOnce() -> A,
        there: impl FnOnce() -> B + Send,
    ) -> (A, B)
    where
        B: Send,
    {
        join_if(self == Cores::Two && worth_a_thread, here, there)
    }
}

/// Drops `value` on a thread of its own when it is `large`, else here: freeing a million
/// rows' employees took ~20 ms of one core, in the way of the commit that followed
/// (BENCHMARKS.md). When no thread can be started it is dropped here.
pub fn drop_aside<T: Send + 'static>(large: bool, value: T) {
    if large {
        let thread = std::thread::Builder::new().name("autoprov-drop".into());
        // A failed spawn drops the closure, and `value` with it, here.
        let _ = thread.spawn(move || drop(value));
    } else {
        drop(value);
    }
}

/// How many roster rows make a second thread worth starting for a pass over them (the
/// manager graph, the keys' index, the halves' append, the IDs' groups).
pub const ROWS_WORTH_A_THREAD: usize = 1 << 14;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_results_come_back_and_a_panic_there_is_raised_here() {
        assert_eq!(join(|| 1, || "two"), (1, "two"));
        let caught = std::panic::catch_unwind(|| join(|| (), || panic!("there")));
        let message = caught.unwrap_err();
        assert_eq!(message.downcast_ref::<&str>(), Some(&"there"));
        assert_eq!(join_if(false, || 1, || "two"), (1, "two"));
        let caught = std::panic::catch_unwind(|| join_if(false, || (), || panic!("there")));
        assert!(caught.is_err());
    }

    #[test]
    fn a_large_value_is_dropped_on_another_thread_and_a_small_one_here() {
        struct Told(std::sync::mpsc::Sender<std::thread::ThreadId>);
        impl Drop for Told {
            fn drop(&mut self) {
                let _ = self.0.send(std::thread::current().id());
            }
        }
        let here = std::thread::current().id();
        let (tx, rx) = std::sync::mpsc::channel();
        drop_aside(false, Told(tx.clone()));
        assert_eq!(rx.recv().unwrap(), here);
        drop_aside(true, Told(tx));
        assert_ne!(rx.recv().unwrap(), here);
    }

    #[test]
    fn one_core_runs_both_pieces_on_this_thread() {
        let here = std::thread::current().id();
        let (a, b) = Cores::One.join_if(
            true,
            || std::thread::current().id(),
            || std::thread::current().id(),
        );
        assert_eq!((a, b), (here, here));
        let (a, b) = Cores::Two.join_if(
            true,
            || std::thread::current().id(),
            || std::thread::current().id(),
        );
        assert_eq!(a, here);
        assert_ne!(b, here);
        let (_, b) = Cores::Two.join_if(false, || (), || std::thread::current().id());
        assert_eq!(b, here);
    }
}
