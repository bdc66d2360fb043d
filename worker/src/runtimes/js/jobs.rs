//! The JavaScript event loop of one invocation: promise jobs, the module
//! loader's jobs and timers (`setTimeout`/`setInterval`), run until nothing is
//! runnable before the deadline.
//!
//! Owns: the job queues and the deadline. A timer due before the deadline is
//! waited for (sleeping, not spinning); one due after it is dropped, so an
//! invocation answers as soon as its work is done and a `setInterval` stops at
//! the deadline. Must never: run a job after the deadline it was given, or hold
//! a queue borrowed while a job runs (jobs enqueue jobs, and `require()` of an
//! ES module runs the loop re-entrantly).

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::time::{Duration, Instant};

use boa_engine::job::{GenericJob, IntervalJob, Job, JobExecutor, NativeAsyncJob, PromiseJob, TimeoutJob};
use boa_engine::{Context, JsResult};

enum Timer {
    Once(TimeoutJob),
    Every(IntervalJob),
}

impl Timer {
    fn cancelled(&self) -> bool {
        match self {
            Timer::Once(t) => t.cancelled(),
            Timer::Every(t) => t.cancelled(),
        }
    }
}

pub struct Jobs {
    promises: RefCell<VecDeque<PromiseJob>>,
    generic: RefCell<VecDeque<GenericJob>>,
    native: RefCell<VecDeque<NativeAsyncJob>>,
    /// Timers with the instant they are due, in the order they were set.
    timers: RefCell<Vec<(Instant, u64, Timer)>>,
    sequence: Cell<u64>,
    deadline: Cell<Option<Instant>>,
    /// The last run stopped with timers still due after the deadline.
    cut_short: Cell<bool>,
}

impl Jobs {
    pub fn new() -> Self {
        Self {
            promises: RefCell::default(),
            generic: RefCell::default(),
            native: RefCell::default(),
            timers: RefCell::default(),
            sequence: Cell::new(0),
            deadline: Cell::new(None),
            cut_short: Cell::new(false),
        }
    }

    /// Jobs run by the next `run_jobs` stop at this instant.
    pub fn set_deadline(&self, deadline: Instant) {
        self.deadline.set(Some(deadline));
        self.cut_short.set(false);
    }

    /// Whether the last run dropped timers that were due after the deadline.
    pub fn cut_short(&self) -> bool {
        self.cut_short.get()
    }

    fn add_timer(&self, due: Instant, timer: Timer) {
        let n = self.sequence.get() + 1;
        self.sequence.set(n);
        self.timers.borrow_mut().push((due, n, timer));
    }

    /// The earliest live timer, taken out of the queue.
    fn next_timer(&self) -> Option<(Instant, Timer)> {
        let mut timers = self.timers.borrow_mut();
        timers.retain(|(_, _, t)| !t.cancelled());
        let index = timers.iter().enumerate().min_by_key(|(_, (due, n, _))| (*due, *n)).map(|(i, _)| i)?;
        let (due, _, timer) = timers.swap_remove(index);
        Some((due, timer))
    }

    /// Runs every queued job once; `true` if there was any.
    fn run_queued(&self, context: &mut Context) -> JsResult<bool> {
        let mut ran = false;
        loop {
            let promise = self.promises.borrow_mut().pop_front();
            if let Some(job) = promise {
                ran = true;
                job.call(context)?;
                continue;
            }
            let native = self.native.borrow_mut().pop_front();
            if let Some(job) = native {
                ran = true;
                // The loader's futures are ready at once; nothing here waits on I/O.
                let cell = RefCell::new(&mut *context);
                futures_lite::future::block_on(job.call(&cell))?;
                continue;
            }
            let generic = self.generic.borrow_mut().pop_front();
            if let Some(job) = generic {
                ran = true;
                job.call(context)?;
                continue;
            }
            return Ok(ran);
        }
    }
}

impl JobExecutor for Jobs {
    fn enqueue_job(self: Rc<Self>, job: Job, _context: &mut Context) {
        match job {
            Job::PromiseJob(j) => self.promises.borrow_mut().push_back(j),
            Job::AsyncJob(j) => self.native.borrow_mut().push_back(j),
            Job::GenericJob(j) => self.generic.borrow_mut().push_back(j),
            Job::TimeoutJob(j) => {
                let due = Instant::now() + Duration::from_millis(j.timeout().as_millis());
                self.add_timer(due, Timer::Once(j));
            }
            Job::IntervalJob(j) => {
                let due = Instant::now() + Duration::from_millis(j.interval().as_millis());
                self.add_timer(due, Timer::Every(j));
            }
            // FinalizationRegistry callbacks are optional for a host; none run.
            _ => {}
        }
    }

    fn run_jobs(self: Rc<Self>, context: &mut Context) -> JsResult<()> {
        let result = self.run(context);
        if result.is_err() {
            self.promises.borrow_mut().clear();
            self.native.borrow_mut().clear();
            self.generic.borrow_mut().clear();
        }
        result
    }
}

impl Jobs {
    fn run(&self, context: &mut Context) -> JsResult<()> {
        loop {
            self.run_queued(context)?;
            let Some((due, timer)) = self.next_timer() else { return Ok(()) };
            let deadline = self.deadline.get().unwrap_or_else(Instant::now);
            if due > deadline {
                // Past the deadline: this timer and every later one are dropped.
                self.timers.borrow_mut().clear();
                self.cut_short.set(true);
                return Ok(());
            }
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            match timer {
                Timer::Once(job) => {
                    job.call(context)?;
                }
                Timer::Every(job) => {
                    job.call(context)?;
                    if !job.cancelled() {
                        let next = Instant::now() + Duration::from_millis(job.interval().as_millis().max(1));
                        self.add_timer(next, Timer::Every(job));
                    }
                }
            }
        }
    }
}
