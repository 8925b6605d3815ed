//! The `AUTOPROV__SECTION__KEY` overrides, as the config crate reads them.

/// The `AUTOPROV__*` environment, each item of a list key (`lists`, as config names them)
/// trimmed: `AUTOPROV__PROVISIONING__ROLES="Super Admin, IT Admin"` had given the role
/// " IT Admin", which no rule could name, and an org admin " alice" nobody is.
pub(super) fn overrides(
    vars: impl Iterator<Item = (std::ffi::OsString, std::ffi::OsString)>,
    lists: &[String],
) -> config::Map<String, String> {
    vars.map(|(name, value)| {
        let lossy = |s: std::ffi::OsString| s.to_string_lossy().into_owned();
        (lossy(name), lossy(value))
    })
    .filter(|(name, _)| name.starts_with("AUTOPROV__"))
    .map(|(name, value)| {
        let key = name["AUTOPROV__".len()..].to_lowercase().replace("__", ".");
        let value = match lists.contains(&key) {
            true => value
                .split(',')
                .map(str::trim)
                .collect::<Vec<_>>()
                .join(","),
            false => value,
        };
        (name, value)
    })
    .collect()
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
        ]
        .map(|(k, v)| (OsString::from(k), OsString::from(v)));
        let lists = ["provisioning.roles", "control.org_admins"].map(str::to_string);
        let got = overrides(vars.into_iter(), &lists);
        assert_eq!(
            got["AUTOPROV__PROVISIONING__ROLES"],
            "Super Admin,IT Admin,HR Admin"
        );
        assert_eq!(got["AUTOPROV__CONTROL__ORG_ADMINS"], "alice,bob");
        assert_eq!(got["AUTOPROV__SSO__PROVIDER"], " okta ");
        assert!(!got.contains_key("HOME"));
    }
}
