//! Property tests of host patterns: wildcards cover exactly the names below their domain (and
//! the apex for `**.`), matching ignores case and a trailing dot, and a pattern prints back to
//! what parses to it.

use mxc_translate::hosts::{decide, normalize_name, HostPattern, HostRule};
use mxc_translate::network::Action;
use proptest::prelude::*;

fn label() -> impl Strategy<Value = String> {
    "[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?"
}

/// A registrable domain under a made-up top-level domain (never a public suffix itself).
fn domain() -> impl Strategy<Value = String> {
    (
        label(),
        prop::sample::select(vec!["example", "test", "internal"]),
    )
        .prop_map(|(name, tld)| format!("{name}.{tld}"))
}

fn subdomain() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(label(), 1..4)
}

proptest! {
    #[test]
    fn wildcards_cover_exactly_the_names_below(domain in domain(), sub in subdomain(), other in label()) {
        let name = format!("{}.{domain}", sub.join("."));
        let exact = HostPattern::parse(&domain).unwrap();
        let star = HostPattern::parse(&format!("*.{domain}")).unwrap();
        let both = HostPattern::parse(&format!("**.{domain}")).unwrap();
        prop_assert!(exact.matches_name(&domain) && !exact.matches_name(&name));
        prop_assert!(star.matches_name(&name) && !star.matches_name(&domain));
        prop_assert!(both.matches_name(&name) && both.matches_name(&domain));
        // Glued to the domain without a dot, or the domain used as a prefix: never a match.
        let glued = format!("{other}{domain}");
        let prefix = format!("{domain}.{other}.net");
        for pattern in [&exact, &star, &both] {
            prop_assert!(!pattern.matches_name(&glued) || glued == domain);
            prop_assert!(!pattern.matches_name(&prefix));
        }
    }

    #[test]
    fn case_and_trailing_dot_do_not_matter(domain in domain(), sub in subdomain(), upper in any::<bool>()) {
        let name = format!("{}.{domain}", sub.join("."));
        let written = if upper { format!("*.{}.", domain.to_uppercase()) } else { format!("*.{domain}") };
        let pattern = HostPattern::parse(&written).unwrap();
        let asked = normalize_name(&format!("{}.", name.to_uppercase())).unwrap();
        prop_assert!(pattern.matches_name(&asked));
    }

    #[test]
    fn patterns_print_back_to_themselves(domain in domain(), kind in 0..3u8, port in prop::option::of(1u16..)) {
        let prefix = ["", "*.", "**."][kind as usize];
        let text = match port {
            Some(port) => format!("{prefix}{domain}:{port}"),
            None => format!("{prefix}{domain}"),
        };
        let pattern = HostPattern::parse(&text).unwrap();
        prop_assert_eq!(pattern.to_string(), text.clone());
        prop_assert_eq!(HostPattern::parse(&pattern.to_string()).unwrap(), pattern);
    }

    #[test]
    fn deny_always_beats_allow(domain in domain(), sub in subdomain(), port in 1u16..) {
        let name = format!("{}.{domain}", sub.join("."));
        let rules = vec![
            HostRule::parse("a", &format!("**.{domain}"), Action::Allow).unwrap(),
            HostRule::parse("d", &name, Action::Deny).unwrap(),
        ];
        prop_assert!(!decide(&rules, &name, Some(port), true).allowed());
        prop_assert!(decide(&rules, &domain, Some(port), false).allowed());
    }
}
