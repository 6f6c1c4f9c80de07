//! Topics, glob patterns, the group map and the subscription index of
//! meshcast (DESIGN §1 and §3).
//!
//! * [`Topic`]: a validated `/`-separated path such as `atc/paris/tracks`.
//! * [`Pattern`]: a glob over topics (`*` within a segment, `**` across
//!   segments, `?`, `[...]`, `{a,b}`), compiled with globset.
//! * [`GroupMap`]: the ordered `prefix/** -> group` rules that put every
//!   topic in exactly one process group, which groups a subscription
//!   pattern [reaches](GroupMap::reach), and a stable
//!   [digest](GroupMap::digest) brokers compare when they link.
//! * [`SubscriptionIndex`]: subscription keys by pattern, answering "who
//!   matches this topic" with sorted results and a bounded result cache.
//! * [`foreign_syntax_warning`]: a warning for topics and patterns written
//!   in another system's syntax (`orders.>`, `sensors/+/temp`).
//!
//! Every constructor validates its input and reports problems through an
//! error enum ([`TopicError`], [`PatternError`], [`GroupMapError`]) whose
//! message names the offending segment or character; nothing here panics
//! on bad input.
//!
//! ```
//! use meshcast_topics::{GroupMap, GroupRule, Pattern, Reach, SubscriptionIndex, Topic};
//!
//! let topic: Topic = "atc/paris/tracks".parse()?;
//! let pattern = Pattern::new("atc/*/tracks")?;
//! assert!(pattern.matches(&topic));
//!
//! let groups = GroupMap::new(vec![GroupRule::new("atc/paris/**", "paris")])?;
//! assert_eq!(groups.group_of(&topic), "paris");
//! assert_eq!(groups.group_of(&"orders/eu/created".parse()?), "orders");
//! assert!(groups.reach(&pattern).contains("paris"));
//! assert_eq!(groups.reach(&Pattern::new("*/paris/**")?), Reach::All);
//!
//! let mut index = SubscriptionIndex::new(1024);
//! index.insert(2_u64, pattern);
//! index.insert(1_u64, Pattern::new("atc/**")?);
//! assert_eq!(&*index.matches(&topic), &[1, 2]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod foreign;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzz_entry;
mod group;
mod index;
mod pattern;
mod topic;

pub use foreign::foreign_syntax_warning;
pub use group::{GroupMap, GroupMapError, GroupRule, MAX_GROUP_NAME_LEN, Reach};
pub use index::{CacheStats, SubscriptionIndex};
pub use pattern::{MAX_BRACE_DEPTH, Pattern, PatternError};
pub use topic::{MAX_SEGMENTS, MAX_TOPIC_LEN, RESERVED_CHARS, SEPARATOR, Topic, TopicError};
