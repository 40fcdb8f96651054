//! The tasks only the leader runs: started each time this replica becomes the leader, stopped
//! as soon as it is no longer (or the host stops).

use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How long stopped tasks may take to finish their round before they are aborted. A round cut
/// short is safe: pollers save their cursor only after queueing, so the next leader re-reads.
const GRACE: Duration = Duration::from_secs(2);

/// Running tasks, aborted if dropped (the supervisor itself aborted).
struct Running(Vec<JoinHandle<()>>);

impl Running {
    /// Waits up to [`GRACE`] for the tasks (already told to stop), then aborts the rest.
    async fn finish(mut self) {
        let deadline = tokio::time::Instant::now() + GRACE;
        for task in self.0.drain(..) {
            let abort = task.abort_handle();
            if tokio::time::timeout_at(deadline, task).await.is_err() {
                abort.abort();
            }
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

/// Runs `start`'s tasks while `leader` is true, until `host_stop` turns true. `start` gets
/// the signal its tasks stop on; it is called again at every new leadership.
pub async fn while_leader<F>(
    name: &'static str,
    mut leader: watch::Receiver<bool>,
    mut host_stop: watch::Receiver<bool>,
    start: F,
) where
    F: Fn(watch::Receiver<bool>) -> Vec<JoinHandle<()>>,
{
    loop {
        tokio::select! {
            became = leader.wait_for(|leader| *leader) => if became.is_err() { return },
            _ = host_stop.wait_for(|stop| *stop) => return,
        }
        let (stop, stop_rx) = watch::channel(false);
        let running = Running(start(stop_rx));
        tracing::info!(tasks = name, "leader: started");
        let host_stopping = tokio::select! {
            _ = leader.wait_for(|leader| !*leader) => false,
            _ = host_stop.wait_for(|stop| *stop) => true,
        };
        let _ = stop.send(true);
        running.finish().await;
        if host_stopping {
            return;
        }
        tracing::info!(tasks = name, "no longer the leader: stopped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Waits (bounded) until `count` reaches `want`.
    async fn until(count: &AtomicUsize, want: usize) {
        for _ in 0..500 {
            if count.load(Ordering::SeqCst) == want {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("expected {want}, got {}", count.load(Ordering::SeqCst));
    }

    #[tokio::test]
    async fn tasks_run_only_while_leader_and_restart_at_each_new_leadership() {
        let (leading, leader) = watch::channel(false);
        let (host_stop, host_stopped) = watch::channel(false);
        let (started, running) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let supervisor = tokio::spawn({
            let (started, running) = (started.clone(), running.clone());
            while_leader("test", leader, host_stopped, move |mut stop| {
                started.fetch_add(1, Ordering::SeqCst);
                let running = running.clone();
                vec![tokio::spawn(async move {
                    running.fetch_add(1, Ordering::SeqCst);
                    let _ = stop.wait_for(|s| *s).await;
                    running.fetch_sub(1, Ordering::SeqCst);
                })]
            })
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(started.load(Ordering::SeqCst), 0, "started before leading");
        leading.send_replace(true);
        until(&running, 1).await;
        leading.send_replace(false);
        until(&running, 0).await;
        leading.send_replace(true);
        until(&running, 1).await;
        assert_eq!(started.load(Ordering::SeqCst), 2);
        host_stop.send_replace(true);
        tokio::time::timeout(Duration::from_secs(5), supervisor)
            .await
            .expect("the supervisor ends when the host stops")
            .unwrap();
        assert_eq!(running.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn a_task_that_ignores_its_stop_is_aborted() {
        let (leading, leader) = watch::channel(true);
        let (_host_stop, host_stopped) = watch::channel(false);
        let alive = Arc::new(AtomicUsize::new(0));
        let supervisor = tokio::spawn({
            let alive = alive.clone();
            while_leader("test", leader, host_stopped, move |_stop| {
                let alive = alive.clone();
                vec![tokio::spawn(async move {
                    struct Gone(Arc<AtomicUsize>);
                    impl Drop for Gone {
                        fn drop(&mut self) {
                            self.0.fetch_sub(1, Ordering::SeqCst);
                        }
                    }
                    alive.fetch_add(1, Ordering::SeqCst);
                    let _gone = Gone(alive);
                    std::future::pending::<()>().await;
                })]
            })
        });
        until(&alive, 1).await;
        leading.send_replace(false);
        // Aborted after the grace period.
        for _ in 0..100 {
            if alive.load(Ordering::SeqCst) == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(
            alive.load(Ordering::SeqCst),
            0,
            "still running after the grace"
        );
        supervisor.abort();
    }
}
