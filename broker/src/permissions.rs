//! `[[permissions]]` compiled for checking: who may publish, subscribe,
//! join, request and reply on which topics and groups.
//!
//! A [`Policy`] is built once from the configuration; each authenticated
//! session gets the [`Grants`] of its user (the rules naming the user, one
//! of its roles, or `"*"`). A check finds the first rule that denies the
//! action on the target, then the first that allows it: deny wins, and
//! what no rule allows is refused (deny by default). Patterns are the
//! `topics` crate's globs; a group name is matched as a one-segment topic.
//! Inbox topics (`_inbox/...`) are matched only by patterns that start
//! with a literal `_inbox`, so `**` never covers other clients' answers.
//!
//! Sans-IO like the router: no clocks, no tasks. In development mode (no
//! `[auth]`) there are no grants at all and nothing is checked.

use std::sync::Arc;

use meshcast_config::{Action, PermissionRule};
use meshcast_topics::{Pattern, Topic};

/// What an action is done on.
#[derive(Debug, Clone, Copy)]
pub enum Target<'a> {
    /// A topic (publish, subscribe, request, reply).
    Topic(&'a Topic),
    /// A group name (join, multicast, reading views).
    Group(&'a str),
}

impl std::fmt::Display for Target<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Topic(t) => write!(f, "topic {:?}", t.as_str()),
            Target::Group(g) => write!(f, "group {g:?}"),
        }
    }
}

/// A refused action: the user, what it tried, and the rule that decided.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "permission denied: user {user:?} may not {} {target}: {why}",
    phrase(action)
)]
pub struct Denied {
    /// The user.
    pub user: String,
    /// The action (as the configuration names it).
    pub action: &'static str,
    /// `topic "a/b"` or `group "g"`.
    pub target: String,
    /// `denied by permissions[2] ("no-secrets")`, or that no rule allows it.
    pub why: String,
}

/// How an action reads in a refusal ("may not subscribe to topic ...").
fn phrase(action: &str) -> &'static str {
    match action {
        "publish" => "publish on",
        "subscribe" => "subscribe to",
        "join" => "join",
        "join_state" => "join with state",
        "request" => "send requests on",
        "reply" => "reply to requests on",
        _ => "use",
    }
}

struct Rule {
    label: String,
    deny: bool,
    everyone: bool,
    users: Vec<String>,
    roles: Vec<String>,
    actions: Vec<Action>,
    topics: Vec<Pattern>,
    groups: Vec<Pattern>,
}

impl Rule {
    fn applies_to(&self, user: &str, roles: &[String]) -> bool {
        self.everyone
            || self.users.iter().any(|u| u == user)
            || self.roles.iter().any(|r| roles.contains(r))
    }

    fn matches(&self, action: Action, target: Target<'_>) -> bool {
        if !self.actions.iter().any(|a| a.covers(action)) {
            return false;
        }
        match target {
            // Inboxes (`_inbox/...`, answers to requests) are matched only
            // by patterns that name them: `**` or `*/x` grant no one else's
            // answers.
            Target::Topic(t) if t.first_segment() == crate::router::INBOX => self
                .topics
                .iter()
                .any(|p| p.literal_prefix().first() == Some(&crate::router::INBOX) && p.matches(t)),
            Target::Topic(t) => self.topics.iter().any(|p| p.matches(t)),
            // A group name that is not a valid topic (glob characters in
            // it) matches no pattern: refused by default.
            Target::Group(g) => {
                Topic::new(g).is_ok_and(|t| self.groups.iter().any(|p| p.matches(&t)))
            }
        }
    }
}

/// Every `[[permissions]]` rule, compiled.
pub struct Policy {
    rules: Vec<Arc<Rule>>,
}

impl std::fmt::Debug for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policy")
            .field("rules", &self.rules.len())
            .finish()
    }
}

impl Policy {
    /// Compiles the rules (validated by the configuration: patterns that do
    /// not compile here are skipped, which can only refuse more).
    pub fn new(rules: &[PermissionRule]) -> Policy {
        let compile = |ps: &[String]| -> Vec<Pattern> {
            ps.iter()
                .filter_map(|p| Pattern::new(p.as_str()).ok())
                .collect()
        };
        let rules = rules
            .iter()
            .enumerate()
            .map(|(i, r)| {
                Arc::new(Rule {
                    label: r.label(i),
                    deny: r.is_deny(),
                    everyone: r.users.iter().any(|u| u == "*"),
                    users: r.users.clone(),
                    roles: r.roles.clone(),
                    actions: r.actions().to_vec(),
                    topics: compile(&r.topics),
                    groups: compile(&r.groups),
                })
            })
            .collect();
        Policy { rules }
    }

    /// The grants of `user` with `roles`: the rules that apply to them.
    pub fn grants(&self, user: &str, roles: &[String]) -> Grants {
        Grants {
            user: user.to_string(),
            rules: self
                .rules
                .iter()
                .filter(|r| r.applies_to(user, roles))
                .cloned()
                .collect(),
        }
    }
}

/// The rules that apply to one user, for its sessions.
pub struct Grants {
    user: String,
    rules: Vec<Arc<Rule>>,
}

impl std::fmt::Debug for Grants {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Grants")
            .field("user", &self.user)
            .field("rules", &self.rules.len())
            .finish()
    }
}

impl Grants {
    /// The user these grants are for.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// Whether the user may do `action` on `target`; the error names the
    /// deciding rule.
    pub fn check(&self, action: Action, target: Target<'_>) -> Result<(), Denied> {
        let denied = |why: String| Denied {
            user: self.user.clone(),
            action: action.name(),
            target: target.to_string(),
            why,
        };
        if let Some(r) = self
            .rules
            .iter()
            .find(|r| r.deny && r.matches(action, target))
        {
            return Err(denied(format!("denied by {}", r.label)));
        }
        if self
            .rules
            .iter()
            .any(|r| !r.deny && r.matches(action, target))
        {
            return Ok(());
        }
        Err(denied(
            "no [[permissions]] rule allows it for this user (deny by default)".to_string(),
        ))
    }

    /// Whether some rule allows `action` on some topic at all (a wildcard
    /// subscription of a user with no such rule could never receive
    /// anything: it is refused up front).
    pub fn allows_any_topic(&self, action: Action) -> bool {
        self.rules
            .iter()
            .any(|r| !r.deny && !r.topics.is_empty() && r.actions.iter().any(|a| a.covers(action)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(
        users: &[&str],
        deny: bool,
        actions: &[Action],
        topics: &[&str],
        groups: &[&str],
    ) -> PermissionRule {
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect();
        PermissionRule {
            users: v(users),
            allow: if deny { vec![] } else { actions.to_vec() },
            deny: if deny { actions.to_vec() } else { vec![] },
            topics: v(topics),
            groups: v(groups),
            ..PermissionRule::default()
        }
    }

    fn topic(t: &str) -> Topic {
        Topic::new(t).unwrap()
    }

    #[test]
    fn deny_wins_and_nothing_is_allowed_by_default() {
        let mut deny = rule(&["bob"], true, &[Action::Subscribe], &["secret/**"], &[]);
        deny.name = "no-secrets".into();
        let policy = Policy::new(&[
            rule(
                &["*"],
                false,
                &[Action::Subscribe, Action::Publish],
                &["**"],
                &["orders"],
            ),
            deny,
        ]);
        let bob = policy.grants("bob", &[]);
        assert!(
            bob.check(Action::Subscribe, Target::Topic(&topic("orders/eu")))
                .is_ok()
        );
        let err = bob
            .check(Action::Subscribe, Target::Topic(&topic("secret/x")))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "permission denied: user \"bob\" may not subscribe to topic \"secret/x\": denied by \
             permissions[1] (\"no-secrets\")"
        );
        // Alice is not named by the deny rule.
        let alice = policy.grants("alice", &[]);
        assert!(
            alice
                .check(Action::Subscribe, Target::Topic(&topic("secret/x")))
                .is_ok()
        );
        // Nothing allows join: refused by default, naming that.
        let err = alice
            .check(Action::Join, Target::Group("orders"))
            .unwrap_err();
        assert!(err.why.contains("deny by default"), "{err}");
        assert!(
            alice
                .check(Action::Publish, Target::Group("orders"))
                .is_ok()
        );
        assert!(
            alice
                .check(Action::Publish, Target::Group("other"))
                .is_err()
        );
    }

    #[test]
    fn roles_and_star_actions() {
        let mut r = rule(&[], false, &[Action::All], &["a/**"], &["g*"]);
        r.roles = vec!["ops".into()];
        let policy = Policy::new(&[r]);
        let ops = policy.grants("carol", &["ops".to_string()]);
        for a in Action::EACH {
            if a.on_topics() {
                assert!(ops.check(a, Target::Topic(&topic("a/b"))).is_ok(), "{a}");
            }
        }
        assert!(ops.check(Action::JoinState, Target::Group("gx")).is_ok());
        // A group name that is no topic matches nothing.
        assert!(ops.check(Action::Join, Target::Group("g*")).is_err());
        // `a/**` and `**` never cover inboxes; `_inbox/**` does.
        let star = Policy::new(&[rule(&["*"], false, &[Action::Subscribe], &["**"], &[])]);
        let inbox = topic("_inbox/abc/1");
        assert!(
            star.grants("x", &[])
                .check(Action::Subscribe, Target::Topic(&inbox))
                .is_err()
        );
        let named = Policy::new(&[rule(
            &["*"],
            false,
            &[Action::Subscribe],
            &["_inbox/**"],
            &[],
        )]);
        assert!(
            named
                .grants("x", &[])
                .check(Action::Subscribe, Target::Topic(&inbox))
                .is_ok()
        );
        let other = policy.grants("dave", &[]);
        assert!(
            other
                .check(Action::Publish, Target::Topic(&topic("a/b")))
                .is_err()
        );
        assert!(!other.allows_any_topic(Action::Subscribe));
        assert!(ops.allows_any_topic(Action::Subscribe));
    }
}
