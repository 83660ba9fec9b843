//! Fan-out of server notifications to every initialized connection (SPEC §6).
//!
//! Connections join when their `initialize` succeeds and leave when they close. A broadcast encodes
//! the notification once and hands it to each connection's queue under one lock, so every
//! connection sees broadcasts in the same order.

use std::sync::{Arc, Mutex, Weak};

use serde::Serialize;

use crate::peer::{ClientLink, Notification};

#[derive(Default)]
pub struct Hub {
    links: Mutex<Vec<(u64, Weak<dyn ClientLink>)>>,
}

impl Hub {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an initialized connection.
    pub fn join(&self, link: &Arc<dyn ClientLink>) {
        let id = link.connection_id();
        let mut links = self.links.lock().expect("hub lock");
        links.retain(|(existing, weak)| *existing != id && weak.strong_count() > 0);
        links.push((id, Arc::downgrade(link)));
    }

    /// Removes a connection (it closed).
    pub fn leave(&self, connection_id: u64) {
        self.links
            .lock()
            .expect("hub lock")
            .retain(|(id, _)| *id != connection_id);
    }

    /// Sends `{method, params}` to every initialized connection.
    pub fn broadcast(&self, method: &'static str, params: &impl Serialize) {
        let notification = Notification::new(method, params);
        let links = self.links.lock().expect("hub lock");
        tracing::debug!(
            method,
            recipients = links.len(),
            "broadcasting notification"
        );
        for (_, weak) in links.iter() {
            if let Some(link) = weak.upgrade() {
                link.notify(&notification);
            }
        }
    }

    /// Number of initialized connections currently joined.
    pub fn len(&self) -> usize {
        self.links
            .lock()
            .expect("hub lock")
            .iter()
            .filter(|(_, weak)| weak.strong_count() > 0)
            .count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
