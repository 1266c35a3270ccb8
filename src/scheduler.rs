//! The background scheduler: flushes heat every second and runs a wall-clock tick every
//! `tick_interval`. It stops when told to, between two passes.

use std::sync::mpsc::{channel, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tracing::{error, info};

use crate::engine::{Engine, TickOptions};

pub struct Scheduler {
    stop: Sender<()>,
    thread: Option<JoinHandle<()>>,
}

impl Scheduler {
    pub fn start(engine: Arc<Engine>, tick_interval: Duration) -> std::io::Result<Scheduler> {
        let (stop, stopped) = channel::<()>();
        let thread = std::thread::Builder::new()
            .name("rustdb-scheduler".into())
            .spawn(move || {
                info!(
                    interval_sec = tick_interval.as_secs_f64(),
                    "scheduler running"
                );
                let mut next_tick = Instant::now() + tick_interval;
                // Wakes every second; a message (or a dropped sender) means stop.
                while let Err(RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(Duration::from_secs(1))
                {
                    if let Err(e) = engine.flush_heat() {
                        error!(error = %e, "heat flush failed");
                    }
                    if Instant::now() >= next_tick {
                        if let Err(e) = engine.tick(None, TickOptions::default()) {
                            error!(error = %e, "scheduled tick failed");
                        }
                        next_tick = Instant::now() + tick_interval;
                    }
                }
                if let Err(e) = engine.flush_heat() {
                    error!(error = %e, "final heat flush failed");
                }
            })?;
        Ok(Scheduler {
            stop,
            thread: Some(thread),
        })
    }

    pub fn stop(mut self) {
        let _ = self.stop.send(());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
