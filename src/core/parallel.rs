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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_results_come_back_and_a_panic_there_is_raised_here() {
        assert_eq!(join(|| 1, || "two"), (1, "two"));
        let caught = std::panic::catch_unwind(|| join(|| (), || panic!("there")));
        let message = caught.unwrap_err();
        assert_eq!(message.downcast_ref::<&str>(), Some(&"there"));
    }
}
