//! `$/cancelRequest` (LSP's notification, which vscode-jsonrpc and other LSP-style clients send
//! when they give up on a request): the requests it may stop, by the client's raw id.
//!
//! Only requests that wait on the network are cancellable (the method table lists them); each is
//! registered with its abort handle as soon as it is spawned (before the next frame is read, so a
//! cancel right behind the request finds it). Cancelling
//! aborts the task: its handler is dropped with whatever it held (its in-flight slot first), and
//! a guard in the task answers `-32800` as it goes.

use std::sync::Mutex;

use tokio::task::AbortHandle;

pub const CANCEL_REQUEST: &str = "$/cancelRequest";

/// A running cancellable request's ticket (ids need not be unique).
pub type Ticket = u64;

#[derive(Default)]
pub struct RunningRequests {
    state: Mutex<Table>,
}

#[derive(Default)]
struct Table {
    next: Ticket,
    running: Vec<Running>,
}

struct Running {
    ticket: Ticket,
    id: Box<str>,
    abort: Option<AbortHandle>,
}

impl RunningRequests {
    /// Takes a ticket for a request about to be spawned.
    pub fn start(&self, id: &str) -> Ticket {
        let mut table = self.state.lock().expect("running lock");
        table.next += 1;
        let ticket = table.next;
        table.running.push(Running {
            ticket,
            id: id.into(),
            abort: None,
        });
        ticket
    }

    /// Records the spawned task of `ticket` (right after the spawn, before the next frame is
    /// read, so a cancel right behind the request finds it).
    pub fn spawned(&self, ticket: Ticket, abort: AbortHandle) {
        let mut table = self.state.lock().expect("running lock");
        if let Some(running) = table.running.iter_mut().find(|r| r.ticket == ticket) {
            running.abort = Some(abort);
        }
    }

    /// Forgets a request that finished or was cancelled; returns its raw id.
    pub fn finish(&self, ticket: Ticket) -> Option<Box<str>> {
        let mut table = self.state.lock().expect("running lock");
        let index = table.running.iter().position(|r| r.ticket == ticket)?;
        Some(table.running.swap_remove(index).id)
    }

    /// Aborts every running request with raw id `id` (the `id` member of the notification's
    /// params); returns how many. Each stays in the table until its task's guard takes it out.
    pub fn cancel(&self, id: &str) -> usize {
        let table = self.state.lock().expect("running lock");
        let mut cancelled = 0;
        for running in table.running.iter().filter(|running| &*running.id == id) {
            if let Some(abort) = &running.abort {
                abort.abort();
                cancelled += 1;
            }
        }
        cancelled
    }
}

/// The raw id a `$/cancelRequest` names, if its params are `{id: <id>}`.
pub fn cancelled_id(params: Option<&str>) -> Option<&str> {
    #[derive(serde::Deserialize)]
    struct Cancel<'a> {
        #[serde(borrow)]
        id: &'a serde_json::value::RawValue,
    }
    let cancel: Cancel<'_> = serde_json::from_str(params?).ok()?;
    Some(cancel.id.get())
}
