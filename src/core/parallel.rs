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
}
