//! The connections subscribed to one thread (TURNS §19.3), and the rule that a subscriber's reply
//! comes before the thread's events.
//!
//! A connection joins *pending*: events published meanwhile are kept for it, and are delivered,
//! in order, when the RPC layer completes the join right after queueing the reply that made it
//! (`thread/resume` of a running thread must not see a delta before its result). Subscribers
//! whose connection closed are dropped as events are published.

use crate::peer::{Notification, Peer};

#[derive(Default)]
pub struct Subscribers {
    members: Vec<Member>,
}

struct Member {
    peer: Peer,
    /// `Some` while joining: what was published since.
    pending: Option<Vec<Notification>>,
}

impl Subscribers {
    /// Sends `notification` to every subscriber (kept for the ones still joining).
    pub fn publish(&mut self, notification: &Notification) {
        self.members.retain_mut(|member| {
            if !member.peer.is_open() {
                return false;
            }
            match &mut member.pending {
                Some(kept) => kept.push(notification.clone()),
                None => member.peer.notify(notification),
            }
            true
        });
    }

    /// Adds `peer` at once (nothing can have been published to a thread nobody knows yet).
    pub fn add(&mut self, peer: &Peer) {
        if !self.contains(peer) {
            self.members.push(Member {
                peer: peer.clone(),
                pending: None,
            });
        }
    }

    /// Starts `peer`'s join; returns false if it was already subscribed. Finish it with
    /// [`Subscribers::complete_join`] once its reply is queued.
    pub fn begin_join(&mut self, peer: &Peer) -> bool {
        if self.contains(peer) {
            return false;
        }
        self.members.push(Member {
            peer: peer.clone(),
            pending: Some(Vec::new()),
        });
        true
    }

    /// Delivers what was kept for `peer` while it joined, and makes it a plain subscriber.
    pub fn complete_join(&mut self, peer: &Peer) {
        if let Some(member) = self.members.iter_mut().find(|m| m.peer.id() == peer.id())
            && let Some(kept) = member.pending.take()
        {
            for notification in &kept {
                member.peer.notify(notification);
            }
        }
    }

    /// Ends every subscription (the thread was archived or unloaded).
    pub fn clear(&mut self) {
        self.members.clear();
    }

    pub fn is_empty(&self) -> bool {
        self.members.iter().all(|member| !member.peer.is_open())
    }

    pub fn contains(&self, peer: &Peer) -> bool {
        self.members
            .iter()
            .any(|member| member.peer.id() == peer.id())
    }
}
