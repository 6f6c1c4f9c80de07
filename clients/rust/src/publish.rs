//! [`Publish`]: how a publisher declares its messages (ordering and the
//! `safe` flag), built with named options instead of positional flags.

use crate::Ordering;

/// The declaration a [`crate::Publisher`] (or a group multicast) gives its
/// messages: an [`Ordering`] and whether they are `safe`.
///
/// ```
/// use meshcast_client::{Ordering, Publish};
///
/// let alerts = Publish::total().safe();
/// assert_eq!(alerts.ordering(), Ordering::Total);
/// assert!(alerts.is_safe());
/// // An `Ordering` alone is a declaration that is not safe.
/// assert_eq!(Publish::from(Ordering::Fifo), Publish::fifo());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Publish {
    ordering: Ordering,
    safe: bool,
}

impl Publish {
    /// Delivered once, in any order.
    pub fn reliable() -> Publish {
        Publish::with(Ordering::Reliable)
    }

    /// One publisher's messages in the order it sent them (the default).
    pub fn fifo() -> Publish {
        Publish::with(Ordering::Fifo)
    }

    /// Cause before effect across publishers.
    pub fn causal() -> Publish {
        Publish::with(Ordering::Causal)
    }

    /// The same order at every member.
    pub fn total() -> Publish {
        Publish::with(Ordering::Total)
    }

    /// A declaration with the given ordering, not safe.
    pub fn with(ordering: Ordering) -> Publish {
        Publish {
            ordering,
            safe: false,
        }
    }

    /// Marks the messages `safe`: delivered only once every broker hosting
    /// members of the group holds them, so if any member delivers one,
    /// every member that survives into the next view delivers it.
    pub fn safe(self) -> Publish {
        Publish { safe: true, ..self }
    }

    /// Marks the messages `safe` when `safe` is true (for declarations
    /// chosen at run time; otherwise prefer [`Publish::safe`]).
    pub fn safe_if(self, safe: bool) -> Publish {
        Publish { safe, ..self }
    }

    /// The declared ordering.
    pub fn ordering(&self) -> Ordering {
        self.ordering
    }

    /// Whether the messages are `safe`.
    pub fn is_safe(&self) -> bool {
        self.safe
    }
}

impl From<Ordering> for Publish {
    fn from(ordering: Ordering) -> Publish {
        Publish::with(ordering)
    }
}

impl std::fmt::Display for Publish {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.ordering)?;
        if self.safe {
            f.write_str("+safe")?;
        }
        Ok(())
    }
}
