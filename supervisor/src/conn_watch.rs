//! A deadline for every moment a client connection spends outside a request
//! handler, which actix-http does not give: its header timeout covers only a
//! connection's first request, and its keep-alive timer stops at the first byte
//! of the next one. Without this, a client that sends one quick request and then
//! dribbles the next one's headers keeps its connection (and one of the
//! `max-connections` slots) forever.
//!
//! Each connection gets a [`ConnWatch`] (from `HttpServer::on_connect`) holding a
//! second descriptor of its socket, and a task that shuts the socket down once
//! the connection has overstayed its current phase:
//! - *handling*: a request is in a handler; no deadline here (the body deadline,
//!   the queue wait and the function's timeout bound it);
//! - *writing*: the handler answered and the body is being sent, for at most
//!   `write_limit` (a client that does not read is cut off);
//! - *idle*: between requests, for at most `idle_limit` (keep-alive, then the
//!   next request's headers).
//!
//! [`middleware`] moves a connection between phases. The watch lives in the
//! connection's extensions, so it (and its descriptor) goes when the connection does.

use std::any::Any;
use std::cell::Cell;
use std::os::fd::AsFd;
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::body::{BodySize, BoxBody, MessageBody};
use actix_web::dev::{Extensions, ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::web::Bytes;
use tokio::time::Instant;

/// How long each phase may last.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub idle: Duration,
    pub write: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Handling,
    Writing,
}

/// One connection's phase, and the means to cut it off. Counts rather than one
/// phase: a pipelined request may be in its handler while the previous answer is
/// still being written.
pub struct ConnWatch {
    /// A duplicate of the connection's descriptor, only ever shut down; closed
    /// with the watch, when actix drops the connection.
    socket: std::net::TcpStream,
    handling: Cell<u32>,
    writing: Cell<u32>,
    /// When the counts last changed.
    since: Cell<Instant>,
    limits: Limits,
}

impl ConnWatch {
    fn count(&self, phase: Phase) -> &Cell<u32> {
        match phase {
            Phase::Handling => &self.handling,
            Phase::Writing => &self.writing,
        }
    }

    fn add(&self, phase: Phase, delta: i32) {
        let count = self.count(phase);
        count.set(count.get().saturating_add_signed(delta));
        self.since.set(Instant::now());
    }

    /// When the current phase runs out, if it can.
    fn deadline(&self) -> Option<Instant> {
        if self.handling.get() > 0 {
            None
        } else if self.writing.get() > 0 {
            Some(self.since.get() + self.limits.write)
        } else {
            Some(self.since.get() + self.limits.idle)
        }
    }
}

/// For `HttpServer::on_connect`: watches each new TCP connection. A connection
/// that cannot be watched (its descriptor cannot be duplicated: the open-file
/// limit) is served without a watch, as actix alone would.
pub fn on_connect(limits: Limits) -> impl Fn(&dyn Any, &mut Extensions) + Send + Sync + 'static {
    move |conn, extensions| {
        let Some(stream) = conn.downcast_ref::<actix_web::rt::net::TcpStream>() else { return };
        let Ok(fd) = stream.as_fd().try_clone_to_owned() else { return };
        let watch = Rc::new(ConnWatch {
            socket: std::net::TcpStream::from(fd),
            handling: Cell::new(0),
            writing: Cell::new(0),
            since: Cell::new(Instant::now()),
            limits,
        });
        actix_web::rt::spawn(enforce(Rc::downgrade(&watch)));
        extensions.insert(watch);
    }
}

/// Sleeps until the connection's current phase runs out, and shuts it down if it
/// is still in that phase; ends when the connection is gone.
async fn enforce(watch: Weak<ConnWatch>) {
    loop {
        let Some(w) = watch.upgrade() else { return };
        let deadline = w.deadline();
        drop(w);
        match deadline {
            // Checked again after the shortest limit: the handler may have answered.
            None => tokio::time::sleep(watch_tick(&watch)).await,
            Some(at) if Instant::now() < at => tokio::time::sleep_until(at).await,
            Some(_) => {
                if let Some(w) = watch.upgrade() {
                    // The client sees the connection end; actix sees it end too, and drops it.
                    let _ = w.socket.shutdown(std::net::Shutdown::Both);
                }
                return;
            }
        }
    }
}

fn watch_tick(watch: &Weak<ConnWatch>) -> Duration {
    watch.upgrade().map_or(Duration::ZERO, |w| w.limits.idle.min(w.limits.write))
}

/// Marks the connection *handling* while the handler runs, *writing* while its
/// response body is sent, and *idle* after.
pub(crate) async fn middleware(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<Watched>, actix_web::Error> {
    let watch = req.conn_data::<Rc<ConnWatch>>().map(Rc::downgrade);
    let handling = watch.clone().and_then(|w| PhaseGuard::enter(w, Phase::Handling));
    let res = next.call(req).await?;
    let writing = watch.and_then(|w| PhaseGuard::enter(w, Phase::Writing));
    drop(handling);
    Ok(res.map_body(|_, body| Watched { body: BoxBody::new(body), _writing: writing }))
}

/// Counts one request in a phase for as long as it lives.
struct PhaseGuard {
    watch: Weak<ConnWatch>,
    phase: Phase,
}

impl PhaseGuard {
    fn enter(watch: Weak<ConnWatch>, phase: Phase) -> Option<Self> {
        watch.upgrade()?.add(phase, 1);
        Some(Self { watch, phase })
    }
}

impl Drop for PhaseGuard {
    fn drop(&mut self) {
        if let Some(w) = self.watch.upgrade() {
            w.add(self.phase, -1);
        }
    }
}

/// A response body that keeps its connection in the *writing* phase until it
/// has been sent (or dropped).
pub struct Watched {
    body: BoxBody,
    _writing: Option<PhaseGuard>,
}

impl MessageBody for Watched {
    type Error = Box<dyn std::error::Error>;

    fn size(&self) -> BodySize {
        self.body.size()
    }

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, Self::Error>>> {
        Pin::new(&mut self.body).poll_next(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn watch() -> Rc<ConnWatch> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let socket = std::net::TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        Rc::new(ConnWatch {
            socket,
            handling: Cell::new(0),
            writing: Cell::new(0),
            since: Cell::new(Instant::now()),
            limits: Limits { idle: Duration::from_secs(7), write: Duration::from_secs(60) },
        })
    }

    #[test]
    fn only_a_request_in_its_handler_has_no_deadline() {
        let w = watch();
        let start = w.since.get();
        assert_eq!(w.deadline(), Some(start + Duration::from_secs(7)));
        let handling = PhaseGuard::enter(Rc::downgrade(&w), Phase::Handling).expect("guard");
        assert_eq!(w.deadline(), None);
        let writing = PhaseGuard::enter(Rc::downgrade(&w), Phase::Writing).expect("guard");
        drop(handling);
        assert!(w.deadline().is_some_and(|d| d >= start + Duration::from_secs(60)));
        // A pipelined request in its handler while the previous answer is written.
        let next = PhaseGuard::enter(Rc::downgrade(&w), Phase::Handling).expect("guard");
        drop(writing);
        assert_eq!(w.deadline(), None);
        drop(next);
        assert!(w.deadline().is_some_and(|d| d < start + Duration::from_secs(60)));
        assert_eq!((w.handling.get(), w.writing.get()), (0, 0));
    }

    #[test]
    fn a_guard_outliving_its_connection_does_nothing() {
        let w = watch();
        let guard = PhaseGuard::enter(Rc::downgrade(&w), Phase::Handling);
        drop(w);
        drop(guard);
        assert!(PhaseGuard::enter(Weak::new(), Phase::Handling).is_none());
    }
}
