//! What a request handler did: its result, and what must follow the reply.
//!
//! SPEC §3.5: a reply is written before the notifications its request causes. Handlers never queue
//! replies or send the notifications they cause; they return an [`Outcome`], and the RPC layer
//! queues the reply, then sends the [`Events`] in order, then runs the follow-up steps (e.g.
//! start a turn's task, whose first notification must come after the reply), and only then lets
//! go of what the outcome holds (e.g. the lock that keeps state changes in the same order on every
//! connection).

use std::any::Any;

use serde::Serialize;

use crate::peer::{Hub, Notification};

/// A handler's result plus what follows its reply.
#[must_use = "an outcome carries notifications and steps that must follow the reply"]
pub struct Outcome<R, E> {
    result: Result<R, E>,
    after: AfterReply,
}

/// Notifications a request caused, in the order they happened (each for every initialized
/// connection, SPEC §6).
#[derive(Default)]
pub struct Events(Vec<Notification>);

/// What follows a reply: see the module documentation.
#[derive(Default)]
#[must_use = "what follows a reply must be applied"]
pub struct AfterReply {
    events: Events,
    steps: Vec<Box<dyn FnOnce() + Send>>,
    held: Vec<Box<dyn Any + Send>>,
}

impl Events {
    /// A notification for every initialized connection.
    pub fn broadcast(&mut self, method: &'static str, params: &impl Serialize) {
        self.0.push(Notification::new(method, params));
    }

    /// Sends the notifications now, in order (for state changes no request's reply must precede:
    /// a login that completes in the background).
    pub fn send(self, hub: &Hub) {
        AfterReply {
            events: self,
            ..AfterReply::default()
        }
        .apply(hub);
    }
}

impl<R, E> Outcome<R, E> {
    pub fn new(result: Result<R, E>) -> Self {
        Self {
            result,
            after: AfterReply::default(),
        }
    }

    /// An outcome from a handler that may fail before it has one: the error is the reply.
    pub fn flatten(built: Result<Self, E>) -> Self {
        built.unwrap_or_else(|error| Self::new(Err(error)))
    }

    /// A successful reply with nothing after it (yet).
    pub fn ok(reply: R) -> Self {
        Self::new(Ok(reply))
    }

    /// Notifications to send after the reply (appended to any already there).
    pub fn with_events(mut self, events: Events) -> Self {
        self.after.events.0.extend(events.0);
        self
    }

    /// A step to run once the reply and the events are queued (start a task whose first
    /// notification must follow the reply, complete a subscription, cancel a turn…).
    pub fn then(mut self, step: impl FnOnce() + Send + 'static) -> Self {
        self.after.steps.push(Box::new(step));
        self
    }

    /// Keeps `guard` alive until everything after the reply has been done.
    pub fn holding(mut self, guard: impl Any + Send) -> Self {
        self.after.held.push(Box::new(guard));
        self
    }

    pub fn into_parts(self) -> (Result<R, E>, AfterReply) {
        (self.result, self.after)
    }
}

impl<R, E> From<Result<R, E>> for Outcome<R, E> {
    fn from(result: Result<R, E>) -> Self {
        Self::new(result)
    }
}

impl AfterReply {
    /// Nothing but one step.
    pub fn step(step: impl FnOnce() + Send + 'static) -> Self {
        Self {
            steps: vec![Box::new(step)],
            ..Self::default()
        }
    }

    /// Sends the events in order, runs the steps, then drops what was held. Called by the RPC
    /// layer right after it queued the reply (or found the connection gone: other connections
    /// still get their notifications).
    pub fn apply(self, hub: &Hub) {
        let Self {
            events,
            steps,
            held,
        } = self;
        for notification in events.0 {
            hub.send(&notification);
        }
        for step in steps {
            step();
        }
        drop(held);
    }

    /// Adds `other`'s events and steps after this one's.
    pub fn append(&mut self, other: AfterReply) {
        self.events.0.extend(other.events.0);
        self.steps.extend(other.steps);
        self.held.extend(other.held);
    }
}
