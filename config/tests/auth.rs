//! `[auth]` and `[[permissions]]`: loading, errors naming the key, and the
//! digest brokers compare.

use meshcast_config::{Action, CertName, Config, ConfigError};

const HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$0N3FiMhrmPhhXDQwXTFRp6Ra7MfsfG9C1BRk5m3fBOM";

fn load(toml: &str) -> Result<Config, ConfigError> {
    // A directory of its own for each call: tests run in parallel, and two
    // texts may have the same length.
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir =
        std::env::temp_dir().join(format!("meshcast-auth-config-{}-{n}", std::process::id(),));
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("c.toml");
    std::fs::write(&f, toml).unwrap();
    let env = vec![("HOME".to_string(), "/home/t".to_string())];
    let r = Config::load(Some(&f), env, &[]);
    let _ = std::fs::remove_dir_all(&dir);
    r
}

fn config(users: &str, rules: &str) -> String {
    format!("[auth]\ncert_name = \"dns\"\n{users}\n{rules}")
}

const ALICE: &str =
    "[[auth.users]]\nname = \"alice\"\nroles = [\"ops\"]\ntoken_hashes = [\"HASH\"]\n";
const RULE: &str = "[[permissions]]\nname = \"r\"\nroles = [\"ops\"]\nallow = [\"publish\", \"join_state\"]\ntopics = [\"a/**\"]\ngroups = [\"g*\"]\n";

#[test]
fn a_full_auth_section_loads() {
    let c = load(&config(&ALICE.replace("HASH", HASH), RULE)).unwrap();
    assert!(c.auth.enabled());
    assert_eq!(c.auth.cert_name, CertName::Dns);
    assert_eq!(c.auth.users[0].roles, ["ops"]);
    assert_eq!(c.permissions[0].allow, [Action::Publish, Action::JoinState]);
    // The hash never shows in Debug output.
    assert!(!format!("{c:?}").contains(HASH));
    assert_ne!(c.auth_digest(), 0);
    assert_eq!(
        Config::load(None, Vec::new(), &[]).unwrap().auth_digest(),
        0
    );
}

#[test]
fn mistakes_name_their_key() {
    let alice = ALICE.replace("HASH", HASH);
    let cases = [
        (
            config(&ALICE.replace("HASH", "plain"), ""),
            "auth.users[0].token_hashes[0]",
        ),
        (
            config(&alice.replace("\"alice\"", "\"a:b\""), ""),
            "auth.users[0].name",
        ),
        (
            config(&alice, &RULE.replace("\"ops\"]\nallow", "\"opz\"]\nallow")),
            "permissions[0].roles[0]",
        ),
        (
            config(&alice, &RULE.replace("a/**", "a//b")),
            "permissions[0].topics[0]",
        ),
        (
            config(
                &alice,
                &RULE
                    .replace("allow", "deny")
                    .replace("name", "allow = [\"join\"]\nname"),
            ),
            "permissions[0].deny",
        ),
        (
            config(&alice, &RULE.replace("groups = [\"g*\"]\n", "")),
            "permissions[0].allow",
        ),
        (
            "[[permissions]]\nusers = [\"*\"]\nallow = [\"publish\"]\ntopics = [\"**\"]\n"
                .to_string(),
            "permissions",
        ),
        (
            "[auth]\nmax_concurrent_verifications = 0\n".to_string(),
            "auth.max_concurrent_verifications",
        ),
    ];
    for (text, key) in cases {
        let err = load(&text).expect_err(key);
        let shown = err.to_string();
        assert!(shown.contains(key), "{key}: {shown}");
        assert!(!shown.contains(HASH), "{shown}");
    }
}

#[test]
fn the_digest_covers_rules_and_roles_but_not_hashes_or_the_client_ca() {
    let base = load(&config(&ALICE.replace("HASH", HASH), RULE)).unwrap();
    let other_hash = HASH.replace("0N3F", "1N3F");
    let rotated = load(&config(&ALICE.replace("HASH", &other_hash), RULE)).unwrap();
    assert_eq!(base.auth_digest(), rotated.auth_digest());
    let with_ca = load(&format!(
        "{}\n",
        config(&ALICE.replace("HASH", HASH), RULE)
            .replace("[auth]\n", "[auth]\nclient_ca = \"/x/ca.pem\"\n")
    ))
    .unwrap();
    let with_other_ca = load(
        &config(&ALICE.replace("HASH", HASH), RULE)
            .replace("[auth]\n", "[auth]\nclient_ca = \"/y/both.pem\"\n"),
    )
    .unwrap();
    assert_eq!(with_ca.auth_digest(), with_other_ca.auth_digest());
    let wider = load(&config(
        &ALICE.replace("HASH", HASH),
        &RULE.replace("a/**", "**"),
    ))
    .unwrap();
    assert_ne!(base.auth_digest(), wider.auth_digest());
    let more_roles = load(&config(
        &ALICE
            .replace("HASH", HASH)
            .replace("[\"ops\"]", "[\"ops\", \"x\"]"),
        RULE,
    ))
    .unwrap();
    assert_ne!(base.auth_digest(), more_roles.auth_digest());
}
