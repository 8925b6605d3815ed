//! The `AUTOPROV__SECTION__KEY` overrides, as the config crate reads them.

/// The `AUTOPROV__*` environment: the list keys (`lists`, as config names them) split into
/// their items, each trimmed, and every other value as set.
pub(super) struct Overrides {
    /// Variable name -> value, for config's `Environment` (which reads them as text).
    pub plain: config::Map<String, String>,
    /// Config key (`provisioning.roles`) -> its items.
    pub lists: Vec<(String, Vec<String>)>,
}

/// The `AUTOPROV__*` environment; `lists` names the list keys, an entry ending in `.`
/// every key under it. List items are trimmed:
/// `AUTOPROV__PROVISIONING__ROLES="Super Admin, IT Admin"` had given the role " IT Admin",
/// which no rule could name, and an org admin " alice" nobody is. Lists are split here, not
/// by config's parsing, which would also have read every other value that looks like a
/// number or a boolean as one: `AUTOPROV__SSO__PROVIDER=007` had become "7", and an
/// account name `0012345` "12345".
pub(super) fn overrides(
    vars: impl Iterator<Item = (std::ffi::OsString, std::ffi::OsString)>,
    lists: &[String],
) -> anyhow::Result<Overrides> {
    const PREFIX: &str = "AUTOPROV__";
    let mut out = Overrides {
        plain: config::Map::new(),
        lists: Vec::new(),
    };
    for (name, value) in vars {
        // The prefix in any letter case, as the config crate matches it.
        let Some(name) = name.to_str().map(str::to_string) else {
            continue;
        };
        if !name
            .get(..PREFIX.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(PREFIX))
        {
            continue;
        }
        let Some(value) = value.to_str() else {
            anyhow::bail!("the environment variable {name} is not UTF-8");
        };
        let key = name[PREFIX.len()..].to_lowercase().replace("__", ".");
        // An entry ending in "." names every key under it (`roster.columns.`: an unknown
        // column's aliases had been refused as "expected a sequence", not as unknown).
        let prefix = (lists.iter()).find(|l| l.ends_with('.') && key.starts_with(l.as_str()));
        let listed = prefix.is_some() || lists.contains(&key);
        // One key under a prefix, not none or a table (a parser's error, or "expected a
        // sequence", had named neither the variable nor what was wrong).
        if let Some(prefix) = prefix
            && let under = &key[prefix.len()..]
            && (under.is_empty() || under.contains('.'))
        {
            anyhow::bail!(
                "the environment variable {name} names no key under {}: one name after it, \
                 such as {}DEPARTMENT",
                prefix.trim_end_matches('.'),
                // Each "." of the key is "__" in the name.
                &name[..PREFIX.len() + prefix.len() + prefix.matches('.').count()]
            );
        }
        match listed {
            // Empty (or blank) is the empty list; an empty item in a list is a stray comma,
            // which had given a role or an inactive status "" (every blank Status a leaver).
            true if value.trim().is_empty() => out.lists.push((key, Vec::new())),
            true => {
                let items: Vec<String> = value.split(',').map(|v| v.trim().to_string()).collect();
                if let Some(n) = items.iter().position(String::is_empty) {
                    anyhow::bail!(
                        "the environment variable {name}: item {} of {value:?} is empty (a stray \
                         comma?); set it empty for an empty list",
                        n + 1
                    );
                }
                out.lists.push((key, items));
            }
            false => {
                out.plain.insert(name, value.to_string());
            }
        }
    }
    out.lists.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::overrides;
    use std::ffi::OsString;

    /// A list's items given in the environment are trimmed (a role " IT Admin" no rule could
    /// name, an org admin " alice" nobody is); other values and other variables are as set.
    #[test]
    fn list_items_from_the_environment_are_trimmed() {
        let vars = [
            (
                "AUTOPROV__PROVISIONING__ROLES",
                "Super Admin, IT Admin ,HR Admin",
            ),
            ("AUTOPROV__CONTROL__ORG_ADMINS", "alice, bob"),
            ("AUTOPROV__SSO__PROVIDER", " okta "),
            ("HOME", "/root"),
            ("autoprov__web__org_admins", "x@y.io, z@y.io"),
        ]
        .map(|(k, v)| (OsString::from(k), OsString::from(v)));
        let lists =
            ["provisioning.roles", "control.org_admins", "web.org_admins"].map(str::to_string);
        let got = overrides(vars.into_iter(), &lists).unwrap();
        let items = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            got.lists,
            [
                ("control.org_admins".into(), items(&["alice", "bob"])),
                (
                    "provisioning.roles".into(),
                    items(&["Super Admin", "IT Admin", "HR Admin"])
                ),
                // The prefix in any letter case, as the config crate takes it.
                ("web.org_admins".into(), items(&["x@y.io", "z@y.io"])),
            ]
        );
        assert_eq!(got.plain["AUTOPROV__SSO__PROVIDER"], " okta ");
        assert_eq!(got.plain.len(), 1, "{:?}", got.plain);
        for stray in ["IT Admin,", "IT Admin,,HR Admin", ",IT Admin", " , "] {
            let vars = [("AUTOPROV__PROVISIONING__ROLES", stray)]
                .map(|(k, v)| (OsString::from(k), OsString::from(v)));
            let err = match overrides(vars.into_iter(), &lists) {
                Ok(_) => panic!("{stray:?}: accepted"),
                Err(e) => e.to_string(),
            };
            assert!(err.contains("is empty"), "{stray:?}: {err}");
        }
        for empty in ["", "  "] {
            let vars = [("AUTOPROV__PROVISIONING__ROLES", empty)]
                .map(|(k, v)| (OsString::from(k), OsString::from(v)));
            let got = overrides(vars.into_iter(), &lists).unwrap();
            assert_eq!(got.lists, [("provisioning.roles".into(), Vec::new())]);
        }
        let latin1 = std::os::unix::ffi::OsStringExt::from_vec(b"caf\xe9".to_vec());
        let bad = [(OsString::from("AUTOPROV__SSO__PROVIDER"), latin1)];
        assert!(
            overrides(bad.into_iter(), &lists).is_err(),
            "not UTF-8: an error"
        );
    }

    /// A list entry ending in "." names every key under it: a column's aliases, a column
    /// the config then refuses by name (it had been refused as "expected a sequence").
    #[test]
    fn every_key_under_a_listed_prefix_is_a_list() {
        let vars = [
            ("AUTOPROV__ROSTER__COLUMNS__DEPARTMENT", "Dept, Team"),
            ("AUTOPROV__ROSTER__COLUMNSX", "x"),
        ]
        .map(|(k, v)| (OsString::from(k), OsString::from(v)));
        let lists = ["roster.columns.".to_string()];
        let got = overrides(vars.into_iter(), &lists).unwrap();
        let items = ["Dept", "Team"].map(str::to_string).to_vec();
        assert_eq!(got.lists, [("roster.columns.department".into(), items)]);
        assert_eq!(got.plain.len(), 1, "{:?}", got.plain);
        // No key under it, or a table: refused, naming the variable.
        for name in [
            "AUTOPROV__ROSTER__COLUMNS__",
            "AUTOPROV__ROSTER__COLUMNS__EMAIL__X",
        ] {
            let vars = [(OsString::from(name), OsString::from("a"))];
            let err = match overrides(vars.into_iter(), &lists) {
                Ok(_) => panic!("{name}: accepted"),
                Err(e) => e.to_string(),
            };
            assert!(
                err.contains(name)
                    && err.contains("names no key under roster.columns")
                    && err.contains("such as AUTOPROV__ROSTER__COLUMNS__DEPARTMENT"),
                "{err}"
            );
        }
    }
}
