//! Warnings for topics and patterns written in another system's syntax
//! (NATS and AMQP `.`-separated subjects with `*`/`>`/`#` wildcards, MQTT
//! `+`/`#`): they are valid here as literal text, so they are accepted,
//! but they almost never mean what their author intended.

/// If `text` (a topic or pattern) looks like another messaging system's
/// syntax, a one-line warning saying so and what the meshcast spelling
/// would be; `None` when it looks like meshcast's own.
///
/// ```
/// use meshcast_topics::foreign_syntax_warning;
///
/// assert!(foreign_syntax_warning("orders.>").unwrap().contains("orders/**"));
/// assert!(foreign_syntax_warning("orders.eu").unwrap().contains("orders/eu"));
/// assert_eq!(foreign_syntax_warning("orders/eu/**"), None);
/// assert_eq!(foreign_syntax_warning("files/report.pdf"), None);
/// ```
pub fn foreign_syntax_warning(text: &str) -> Option<String> {
    let has_slash = text.contains('/');
    // Without any '/', dots are probably separators (`orders.eu.created`).
    let dotted =
        !has_slash && text.contains('.') && text.split('.').filter(|s| !s.is_empty()).count() > 1;
    let separator = if dotted { '.' } else { '/' };
    let segments: Vec<&str> = text.split(separator).collect();
    let foreign_wildcard = segments.iter().any(|s| matches!(*s, ">" | "#" | "+"));
    if !dotted && !foreign_wildcard {
        return None;
    }
    let suggestion: Vec<&str> = segments
        .iter()
        .map(|s| match *s {
            ">" | "#" => "**",
            "+" => "*",
            other => other,
        })
        .collect();
    let suggestion = suggestion.join("/");
    let what = match (dotted, foreign_wildcard) {
        (true, true) => "'.' as a separator and a '>', '#' or '+' wildcard",
        (true, false) => "'.' as a separator",
        _ => "a '>', '#' or '+' wildcard",
    };
    Some(format!(
        "{text:?} looks like another system's syntax ({what}); meshcast separates segments \
         with '/' and its wildcards are '*' (one segment) and '**' (any depth), so it is \
         taken literally: did you mean {suggestion:?}?"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nats_amqp_and_mqtt_spellings_are_flagged_with_the_meshcast_one() {
        for (text, meant) in [
            ("orders.>", "orders/**"),
            ("orders.eu", "orders/eu"),
            ("orders.*.created", "orders/*/created"),
            ("orders.#", "orders/**"),
            ("sensors/+/temp", "sensors/*/temp"),
            ("sensors/#", "sensors/**"),
            (">", "**"),
        ] {
            let w = foreign_syntax_warning(text).unwrap_or_else(|| panic!("{text}"));
            assert!(w.contains(&format!("{meant:?}")), "{text}: {w}");
        }
    }

    #[test]
    fn meshcast_spellings_are_not_flagged() {
        for text in [
            "orders/eu",
            "orders/**",
            "orders/*/created",
            "files/report.pdf",
            "a.b/c",
            "v1.",
            "**",
            "{a,b}/c",
        ] {
            assert_eq!(foreign_syntax_warning(text), None, "{text}");
        }
    }
}
