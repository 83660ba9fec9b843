//! Fan-out of account notifications to every initialized connection (SPEC §6).
//!
//! Connections join once their `initialize` reply is queued and drop out when they close. A
//! broadcast encodes the notification once and hands it to each connection's queue under one lock,
//! so every connection sees broadcasts in the same order.

use std::sync::Mutex;

use crate::peer::{Notification, Peer, WeakPeer};

#[derive(Default)]
pub struct Hub {
    peers: Mutex<Vec<WeakPeer>>,
}

impl Hub {
    /// Adds an initialized connection.
    pub fn join(&self, peer: &Peer) {
        let mut peers = self.peers.lock().expect("hub lock");
        peers.retain(|weak| weak.upgrade().is_some_and(|other| other.id() != peer.id()));
        peers.push(peer.downgrade());
    }

    /// Sends an encoded notification to every initialized connection.
    pub fn send(&self, notification: &Notification) {
        let mut peers = self.peers.lock().expect("hub lock");
        peers.retain(|weak| match weak.upgrade() {
            Some(peer) => {
                peer.notify(notification);
                true
            }
            None => false,
        });
        tracing::debug!(
            method = notification.method,
            recipients = peers.len(),
            "broadcast notification"
        );
    }
}
