//! The `AUTOPROV__SECTION__KEY` overrides, as the config crate reads them.

/// The `AUTOPROV__*` environment, each item of a list key (`lists`, as config names them)
/// trimmed: `AUTOPROV__PROVISIONING__ROLES="Super Admin, IT Admin"` had given the role
/// " IT Admin", which no rule could name, and an org admin " alice" nobody is.
pub(super) fn overrides(
    vars: impl Iterator<Item = (std::ffi::OsString, std::ffi::OsString)>,
    lists: &[String],
) -> anyhow::Result<config::Map<String, String>> {
    const PREFIX: &str = "AUTOPROV__";
    let mut out = config::Map::new();
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
        let value = match lists.contains(&key) {
            true => value
                .split(',')
                .map(str::trim)
                .collect::<Vec<_>>()
                .join(","),
            false => value.to_string(),
        };
        out.insert(name, value);
    }
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
        assert_eq!(
            got["AUTOPROV__PROVISIONING__ROLES"],
            "Super Admin,IT Admin,HR Admin"
        );
        assert_eq!(got["AUTOPROV__CONTROL__ORG_ADMINS"], "alice,bob");
        assert_eq!(got["AUTOPROV__SSO__PROVIDER"], " okta ");
        assert!(!got.contains_key("HOME"));
        // The prefix in any letter case, as the config crate takes it.
        assert_eq!(got["autoprov__web__org_admins"], "x@y.io,z@y.io");
        let latin1 = std::os::unix::ffi::OsStringExt::from_vec(b"caf\xe9".to_vec());
        let bad = [(OsString::from("AUTOPROV__SSO__PROVIDER"), latin1)];
        assert!(
            overrides(bad.into_iter(), &lists).is_err(),
            "not UTF-8: an error"
        );
    }
}
