//! Shared by the benchmarks: a deterministic roster generator, the 60 benchmark rules, and
//! a config for a throw-away data directory.
//!
//! The roster is what an HR export of a large company looks like: 10 columns, a manager
//! tree about six reports wide, a few managers missing from the file, ~5% of rows inactive
//! (terminated or inactive), ~2% on leave, quoted titles with commas, some non-ASCII names.
//! The same `rows` and `seed` always give the same bytes.
#![allow(dead_code)]

use autoprov::core::rules::{Condition, Rule, RuleId};
use autoprov::store::{AuditNote, SledStore, Store};
use std::fmt::Write as _;
use std::path::Path;

/// SplitMix64: small, fast, and the same everywhere.
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// Index into `weights` drawn in proportion to the weights.
    pub fn weighted(&mut self, weights: &[u32]) -> usize {
        let total: u32 = weights.iter().sum();
        let mut x = self.below(u64::from(total)) as u32;
        for (i, w) in weights.iter().enumerate() {
            if x < *w {
                return i;
            }
            x -= w;
        }
        weights.len() - 1
    }
}

/// Departments with their share of employees (per mille) and the job they hire for.
pub const DEPARTMENTS: [(&str, u32, &str); 12] = [
    ("Engineering", 250, "Engineer"),
    ("Sales", 150, "Account Executive"),
    ("Operations", 120, "Operations Analyst"),
    ("Customer Support", 100, "Support Agent"),
    ("Marketing", 70, "Marketer"),
    ("Finance", 60, "Accountant"),
    ("Product", 60, "Product Manager"),
    ("IT", 50, "Systems Administrator"),
    ("Research", 50, "Scientist"),
    ("HR", 40, "HR Partner"),
    ("Facilities", 30, "Facilities Coordinator"),
    ("Legal", 20, "Counsel"),
];

/// Seniority prefixes of job titles.
pub const LEVELS: [&str; 6] = ["Junior", "", "Senior", "Staff", "Principal", "Lead"];

/// Work locations.
pub const LOCATIONS: [&str; 15] = [
    "New York",
    "San Francisco",
    "Austin",
    "Chicago",
    "Toronto",
    "London",
    "Berlin",
    "Paris",
    "Madrid",
    "São Paulo",
    "Singapore",
    "Tokyo",
    "Sydney",
    "Bangalore",
    "Remote",
];

/// Employment statuses (per mille): Terminated and Inactive rows are inactive.
pub const STATUSES: [(&str, u32); 4] = [
    ("Active", 930),
    ("Leave of Absence", 20),
    ("Terminated", 40),
    ("Inactive", 10),
];

const FIRST: [&str; 24] = [
    "Tara", "Jürgen", "Rahul", "Leon", "Zoë", "José", "Amelia", "Noah", "Olivia", "Liam", "Mei",
    "Kenji", "Fatima", "Omar", "Ingrid", "Lars", "Priya", "Arjun", "Chloé", "Mateo", "Sofia",
    "Ethan", "Aisha", "Yuki",
];
const LAST: [&str; 24] = [
    "Gonçalves",
    "Krüger",
    "Patel",
    "Fischer",
    "Smith",
    "Nguyen",
    "García",
    "Müller",
    "Rossi",
    "Kim",
    "O'Brien",
    "Novak",
    "Silva",
    "Tanaka",
    "Andersson",
    "Dubois",
    "Kowalski",
    "Haddad",
    "Jensen",
    "Costa",
    "Ivanova",
    "Brown",
    "Lopez",
    "Sato",
];

/// The header row of generated rosters.
pub const HEADER: &str = "Employee ID,First Name,Last Name,Work Email,Department,Job Title,\
                          Location,Manager ID,Employment Status,Cost Center";

/// ASCII letters of a name for the email's local part.
fn ascii_lower(name: &str, out: &mut String) {
    for c in name.chars() {
        let c = match c {
            'ü' => 'u',
            'ë' | 'é' => 'e',
            'ç' => 'c',
            'í' => 'i',
            _ => c,
        };
        if c.is_ascii_alphabetic() {
            out.push(c.to_ascii_lowercase());
        }
    }
}

/// `dir/roster-{rows}.csv`, the [`roster`] of `rows` rows (seed 1), written unless it is
/// there already with those bytes (benches share it).
pub fn roster_file(dir: &Path, rows: usize) -> std::path::PathBuf {
    let path = dir.join(format!("roster-{rows}.csv"));
    let bytes = roster(rows, 1);
    if std::fs::read(&path).ok().as_deref() != Some(&bytes[..]) {
        std::fs::write(&path, &bytes).expect("write roster");
    }
    path
}

/// A roster of `rows` employees; same `rows` and `seed`, same bytes.
pub fn roster(rows: usize, seed: u64) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    let dept_weights: Vec<u32> = DEPARTMENTS.iter().map(|d| d.1).collect();
    let status_weights: Vec<u32> = STATUSES.iter().map(|s| s.1).collect();
    let mut out = String::with_capacity(rows * 112 + HEADER.len() + 2);
    out.push_str(HEADER);
    out.push('\n');
    for i in 0..rows {
        let first = FIRST[rng.below(FIRST.len() as u64) as usize];
        let last = LAST[rng.below(LAST.len() as u64) as usize];
        let dept = rng.weighted(&dept_weights);
        let (dept_name, _, job) = DEPARTMENTS[dept];
        let level = LEVELS[rng.below(LEVELS.len() as u64) as usize];
        let location = LOCATIONS[rng.below(LOCATIONS.len() as u64) as usize];
        let status = STATUSES[rng.weighted(&status_weights)].0;
        let cost_center = rng.below(20);
        let _ = write!(out, "E{:07},{first},{last},", i + 1);
        ascii_lower(first, &mut out);
        out.push('.');
        ascii_lower(last, &mut out);
        let _ = write!(out, ".{}@acme.example,{dept_name},", i + 1);
        if rng.below(100) == 0 {
            // A title with a comma, quoted as spreadsheets export it.
            let _ = write!(out, "\"VP, {dept_name}\"");
        } else if level.is_empty() {
            out.push_str(job);
        } else {
            let _ = write!(out, "{level} {job}");
        }
        let _ = write!(out, ",{location},");
        // A tree about six reports wide, in BFS order: the manager comes earlier in the file.
        if i > 0 {
            if i % 20_011 == 0 {
                // A manager who is not in the file (a warning).
                let _ = write!(out, "X{:07}", i);
            } else {
                let manager = ((i - 1) / 6).saturating_sub(rng.below(3) as usize);
                let _ = write!(out, "E{:07}", manager + 1);
            }
        }
        let _ = writeln!(out, ",{status},CC-{dept:02}{cost_center:02}");
    }
    out.into_bytes()
}

/// The roles the benchmark config allows (those of the quick-start config).
pub const ROLES: [&str; 5] = [
    "Super Admin",
    "IT Admin",
    "HR Admin",
    "Billing Admin",
    "Read-only Admin",
];

/// The 60 benchmark rules, in creation (precedence) order: (name, role, conditions).
///
/// Mixed on purpose: `=`, `!=`, `in`, `not in`, `is_manager`, one to three conditions, five
/// fields, one rule that matches nobody, and a last catch-all (`employment_status !=
/// "Leave of Absence"`) so that every active employee gets an account: the first import
/// creates ~950k accounts for 1M rows, the worst case for writes.
pub fn rules() -> Vec<(String, &'static str, Vec<String>)> {
    let mut out = Vec::new();
    for (k, (dept, _, job)) in DEPARTMENTS.iter().enumerate() {
        let role = ROLES[k % 4];
        out.push((
            format!("{dept} managers"),
            role,
            vec![format!("department = {dept}"), "is_manager = true".into()],
        ));
        out.push((
            format!("{dept} staff in hubs"),
            ROLES[(k + 1) % 5],
            vec![
                format!("department = {dept}"),
                format!(
                    "location in ({}, {})",
                    LOCATIONS[k % 15],
                    LOCATIONS[(k + 5) % 15]
                ),
                "is_manager = false".into(),
            ],
        ));
        out.push((
            format!("{dept} seniors"),
            ROLES[(k + 2) % 5],
            vec![
                format!("Department = {dept}"),
                format!("job title not in (Junior {job}, {job})"),
            ],
        ));
    }
    for (k, loc) in LOCATIONS.iter().take(8).enumerate() {
        out.push((
            format!("{loc} cost centers"),
            ROLES[k % 5],
            vec![
                format!("location = {loc:?}"),
                format!(
                    "cost_center in (CC-{k:02}01, CC-{k:02}02, CC-{:02}03)",
                    k + 1
                ),
            ],
        ));
    }
    for (k, level) in ["Principal", "Staff", "Lead"].iter().enumerate() {
        out.push((
            format!("{level} engineers and scientists"),
            "IT Admin",
            vec![format!(
                "job_title in ({level} Engineer, {level} Scientist, {level} Systems Administrator)"
            )],
        ));
        out.push((
            format!("{level} finance"),
            "Billing Admin",
            vec![
                format!("job_title = {level} Accountant"),
                format!("location != {}", LOCATIONS[k]),
            ],
        ));
    }
    for (k, dept) in ["Sales", "Engineering", "HR", "Legal"].iter().enumerate() {
        out.push((
            format!("On leave outside {dept}"),
            ROLES[(k + 3) % 5],
            vec![
                "Employment Status = Leave of Absence".into(),
                format!("department != {dept}"),
            ],
        ));
    }
    for (k, (a, b)) in [
        ("Sales", "Marketing"),
        ("Engineering", "Research"),
        ("Operations", "Facilities"),
        ("Finance", "Legal"),
    ]
    .iter()
    .enumerate()
    {
        out.push((
            format!("Managers outside {a} and {b}"),
            ROLES[k % 5],
            vec![
                format!("department not in ({a}, {b})"),
                "location != Remote".into(),
                "is_manager = true".into(),
            ],
        ));
    }
    out.push((
        "Nobody".into(),
        "Super Admin",
        vec!["department = Astrology".into()],
    ));
    out.push((
        "Everyone else".into(),
        "Read-only Admin",
        vec!["employment_status != \"Leave of Absence\"".into()],
    ));
    assert_eq!(out.len(), 60, "the benchmark has 60 rules");
    out
}

/// The benchmark rules as stored rules (ids 1..=60).
pub fn stored_rules() -> Vec<Rule> {
    rules()
        .into_iter()
        .enumerate()
        .map(|(i, (name, role, when))| Rule {
            id: RuleId(i as u64 + 1),
            name,
            role: role.into(),
            conditions: when
                .iter()
                .map(|c| Condition::parse(c).expect("benchmark rules parse"))
                .collect(),
            enabled: true,
            created_at: "2026-01-01T00:00:00Z".into(),
            created_by: "bench".into(),
        })
        .collect()
}

/// `autoprov rules add` of the one broad rule: every employee not on leave gets an account
/// (950k of a 1M roster): the worst case for a first import and a store of that size.
pub const ADD_EVERYONE: [&str; 8] = [
    "rules",
    "add",
    "--name",
    "Everyone",
    "--role",
    "Read-only Admin",
    "--when",
    "employment_status != \"Leave of Absence\"",
];

/// Opens (creating) the store under `data_dir` and saves the 60 rules, as `rules add` would.
pub fn install_rules(data_dir: &Path) {
    let store = SledStore::open(&data_dir.join("store")).expect("open the store");
    for rule in stored_rules() {
        let id = store.next_rule_id().expect("rule id");
        assert_eq!(id, rule.id);
        store
            .put_rule(
                &rule,
                AuditNote {
                    at: rule.created_at.clone(),
                    user: "bench".into(),
                    action: "rules add".into(),
                    detail: rule.name.clone(),
                },
            )
            .expect("save rule");
    }
}

/// A config for `root`: data in `root/data`, socket `root/autoprov.sock`, limits off (a
/// first import of 1M employees is applied, not held), logs at warn; `source` is appended.
pub fn config_toml(root: &Path, source: &str) -> String {
    format!(
        "data_dir = {data:?}\n\n[sso]\nenabled = true\nprovider = \"bench\"\n\n\
         [provisioning]\nroles = {roles:?}\n\n\
         [safety]\nmax_grants = {{ count = 100000000, percent = 100 }}\n\
         max_deactivations = {{ count = 100000000, percent = 100 }}\n\n\
         [control]\nsocket = {sock:?}\norg_admins = [\"root\", {me:?}]\n\n\
         [log]\nformat = \"text\"\nlevel = \"warn\"\n\n{source}\n",
        data = root.join("data").display().to_string(),
        roles = ROLES,
        sock = root.join("autoprov.sock").display().to_string(),
        me = std::env::var("USER").unwrap_or_else(|_| "root".into()),
    )
}
