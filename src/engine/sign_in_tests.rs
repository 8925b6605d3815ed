//! Unit tests of who signs in (SPEC §3, §8): an address that only reads as an account's
//! is denied, and a manual admin nobody could sign in as is refused. On the in-memory
//! store, with the helpers of [`super::tests`].

use super::tests::{add_rule, pipeline, roster, submit};
use crate::store::Store;

/// An SSO identity that reads as another address (the Kelvin sign for a `k`, a space
/// beyond ASCII) is denied, and so is an account whose roster email is written so: each
/// had matched kim@…'s account by Unicode lower-casing.
#[test]
fn auth_check_denies_an_address_that_only_reads_as_the_accounts() {
    use crate::api::{Output, Request, exit};
    let (_dir, p) = pipeline();
    add_rule(&p, "IT", "department = IT");
    // The last one's domain ends in a dot: the DNS spelling of x.io, kim's mailbox too.
    let rows = [
        "K1,kim@x.io,IT,active",
        "K2,\u{212a}en@x.io,IT,active",
        "K3,kim@x.io.,IT,active",
    ];
    let r = submit(&p, "r.csv", &roster(&rows)).unwrap();
    assert_eq!(r.counts.created, 3, "{:?}", r.errors);
    // The accounts nobody can sign in as are told about, at their row and email column.
    assert_eq!(r.warnings.len(), 2, "{:?}", r.warnings);
    for (warning, line) in r.warnings.iter().zip([3, 4]) {
        assert_eq!(warning.line, Some(line));
        assert_eq!(warning.column.as_deref(), Some("email"));
        assert!(
            warning.message.contains("is not one address"),
            "{:?}",
            r.warnings
        );
    }
    let check = |email: &str| {
        let request = Request::AuthCheck {
            email: email.into(),
        };
        super::commands::execute(&p, request, "root", Output::Json)
    };
    assert_eq!(check("kim@x.io").exit, exit::OK);
    assert_eq!(check(" KIM@x.io ").exit, exit::OK);
    for email in [
        "\u{212a}im@x.io",
        "\u{3000}kim@x.io",
        "ken@x.io",
        "\u{212a}en@x.io",
        "kim@x.io.",
        "KIM@X.IO.",
    ] {
        let denied = check(email);
        assert_eq!(denied.exit, exit::NO, "{email:?}: {}", denied.text);
        assert_eq!(denied.json["allowed"], false);
    }
    // Why, in the text: a second spelling, or no address at all (which had been told as a
    // look-alike character).
    let text = |email: &str| {
        let request = Request::AuthCheck {
            email: email.into(),
        };
        super::commands::execute(&p, request, "root", Output::Text).text
    };
    assert!(text("\u{212a}im@x.io").contains("second spelling"));
    assert!(text("kim@x.io.").contains("its domain ends in a dot"));
    for email in ["noat", "a@localhost", "a@@x.io"] {
        assert!(
            text(email).contains("not a well-formed email address"),
            "{email}"
        );
    }
}

/// An address with a character that shows as nothing, or with its accents decomposed, is
/// a second spelling of another: its account is given to nobody, with a warning, and
/// neither spelling signs in as the other's account (each had had an account of its own,
/// listed as the same address with another role), and `admins add` refuses it.
#[test]
fn an_address_spelled_with_invisible_or_decomposed_characters_is_nobodys() {
    use crate::api::{Output, Request, exit};
    let (_dir, p) = pipeline();
    add_rule(&p, "IT", "department = IT");
    let rows = [
        "K1,kim@x.io,IT,active",
        "K2,kim\u{200b}@x.io,IT,active",
        "K3,jos\u{e9}@x.io,IT,active",
        "K4,jose\u{301}@x.io,IT,active",
        "K5,\u{202e}ana@x.io,IT,active",
    ];
    let r = submit(&p, "r.csv", &roster(&rows)).unwrap();
    let warned: Vec<Option<u64>> = r.warnings.iter().map(|w| w.line).collect();
    assert_eq!(warned, [Some(3), Some(5), Some(6)], "{:?}", r.warnings);
    assert!(
        r.warnings
            .iter()
            .all(|w| w.message.contains("not one address"))
    );
    let check = |email: &str| {
        let request = Request::AuthCheck {
            email: email.into(),
        };
        super::commands::execute(&p, request, "root", Output::Json)
    };
    assert_eq!(check("kim@x.io").json["employee_id"], "K1");
    assert_eq!(check("jos\u{e9}@x.io").json["employee_id"], "K3");
    for email in ["kim\u{200b}@x.io", "jose\u{301}@x.io", "\u{202e}ana@x.io"] {
        let denied = check(email);
        assert_eq!(denied.exit, exit::NO, "{email:?}: {}", denied.text);
    }
    let add = |email: &str| Request::AdminsAdd {
        employee_id: "M9".into(),
        email: email.into(),
        role: "IT Admin".into(),
    };
    for email in ["zoe\u{308}@x.io", "carol\u{200b}@x.io"] {
        let refused = super::commands::execute(&p, add(email), "root", Output::Json);
        assert_eq!(refused.exit, exit::USAGE, "{email:?}: {}", refused.text);
    }
}

/// A manual admin nobody could sign in as (its email written with the Kelvin sign) is
/// refused, not added unusable.
#[test]
fn admins_add_refuses_an_email_that_reads_as_another() {
    use crate::api::{Output, Request, exit};
    let (_dir, p) = pipeline();
    let add = |email: &str| Request::AdminsAdd {
        employee_id: "M1".into(),
        email: email.into(),
        role: "IT Admin".into(),
    };
    let refused = super::commands::execute(&p, add("\u{212a}arl@x.io"), "root", Output::Json);
    assert_eq!(refused.exit, exit::USAGE, "{}", refused.text);
    assert!(
        refused.text.contains("is not one address"),
        "{}",
        refused.text
    );
    assert!(p.store.account("M1").unwrap().is_none());
    let dotted = super::commands::execute(&p, add("karl@x.io."), "root", Output::Json);
    assert_eq!(dotted.exit, exit::USAGE, "{}", dotted.text);
    assert!(
        dotted.text.contains("its domain ends in a dot"),
        "{}",
        dotted.text
    );
    let added = super::commands::execute(&p, add("karl@x.io"), "root", Output::Json);
    assert_eq!(added.exit, exit::OK, "{}", added.text);
}

/// A manual admin keeps its own email, whatever its roster row says: a row written with
/// the Kelvin sign is no account given to nobody, and is not warned about as one.
#[test]
fn a_manual_admins_row_is_not_warned_about_as_an_account_nobody_signs_in_as() {
    use crate::api::{Output, Request, exit};
    let (_dir, p) = pipeline();
    add_rule(&p, "IT", "department = IT");
    let add = Request::AdminsAdd {
        employee_id: "K2".into(),
        email: "ken@x.io".into(),
        role: "IT Admin".into(),
    };
    assert_eq!(
        super::commands::execute(&p, add, "root", Output::Json).exit,
        exit::OK
    );
    let r = submit(&p, "r.csv", &roster(&["K2,\u{212a}en@x.io,IT,active"])).unwrap();
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    let check = Request::AuthCheck {
        email: "ken@x.io".into(),
    };
    let allowed = super::commands::execute(&p, check, "root", Output::Json);
    assert_eq!(allowed.exit, exit::OK, "{}", allowed.text);
}
