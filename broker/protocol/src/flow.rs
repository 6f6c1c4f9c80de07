//! Flow control: a member whose queue of unconsumed deliveries stays full
//! for `slow_timeout` is expelled with reason `Slow` through an ordinary view
//! change; until that view it receives nothing more (never unbounded
//! buffering, never a silent drop: the expulsion is an event and a view).
//! Publishers are bounded by the credit window in [`crate::Broker`]'s pump.

use crate::broker::Broker;
use crate::id::Time;
use crate::io::ExpelReason;
use crate::wire::Install;

impl Broker {
    /// Expels members whose queue stayed full too long.
    pub(crate) fn check_slow(&mut self) {
        let now = self.now;
        let timeout = self.cfg.slow_timeout;
        let slow: Vec<(String, crate::id::MemberId)> = self
            .backlog
            .iter()
            .filter(|(_, b)| b.full_since.is_some_and(|t| now.since(t) >= timeout))
            .map(|(k, _)| k.clone())
            .collect();
        for (group, member) in slow {
            self.backlog.remove(&(group.clone(), member));
            self.expel(group, member, ExpelReason::Slow);
        }
    }

    /// Earliest time a full queue turns into an expulsion.
    pub(crate) fn slow_deadline(&self) -> Option<Time> {
        self.backlog
            .values()
            .filter_map(|b| b.full_since)
            .min()
            .map(|t| t.plus(self.cfg.slow_timeout))
    }

    /// Forgets flow state of members that left or re-joined.
    pub(crate) fn after_install_flow(&mut self, inst: &Install) {
        let keep = |group: &str, m: &crate::id::MemberId| {
            inst.groups
                .iter()
                .find(|g| g.group == group)
                .is_some_and(|g| g.members.contains(m) && !g.joined.contains(m))
        };
        self.muted.retain(|(g, m)| keep(g, m));
        self.backlog.retain(|(g, m), _| keep(g, m));
    }
}
