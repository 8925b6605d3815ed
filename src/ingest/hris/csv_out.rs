//! A provider's JSON answer becomes the CSV of SPEC §10: UTF-8, comma, LF, header first; the
//! canonical columns under their canonical names, every other field under the provider's
//! field name. Values that are not a string, number, boolean or null fail the fetch,
//! naming the record and the field. A number is copied as the answer writes it: read as a
//! float, an ID beyond 2^53 or 64 bits would lose digits and could name another employee.

use super::http::FetchError;
use crate::core::columns::Columns;
use serde::de::{DeserializeOwned, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;
use std::collections::{HashMap, HashSet};

/// One JSON object of the answer, its fields in the order the answer has them, each value
/// as its JSON text.
#[derive(Debug, Default)]
pub struct Record(pub Vec<(String, Box<RawValue>)>);

impl<'de> Deserialize<'de> for Record {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Fields;
        impl<'de> Visitor<'de> for Fields {
            type Value = Record;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object holding one record's fields")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Record, A::Error> {
                let mut fields: Vec<(String, Box<RawValue>)> =
                    Vec::with_capacity(map.size_hint().unwrap_or(8));
                while let Some((key, value)) = map.next_entry::<String, Box<RawValue>>()? {
                    // As a duplicate column is a file error (SPEC §1), rather than the last
                    // of two values read silently.
                    if fields.iter().any(|(k, _)| *k == key) {
                        return Err(serde::de::Error::custom(format!(
                            "the field \"{key}\" is given twice in one record"
                        )));
                    }
                    fields.push((key, value));
                }
                Ok(Record(fields))
            }
        }
        d.deserialize_map(Fields)
    }
}

/// A column of the CSV: its header, and the provider's field that fills it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// The header written.
    pub header: String,
    /// The field of each record.
    pub field: String,
}

/// Parses an answer as `T`, telling a body that is not JSON from JSON of another shape.
/// `who` names the answer ("BambooHR's answer"), `shape` what was expected.
pub fn parse<T: DeserializeOwned>(body: &[u8], who: &str, shape: &str) -> Result<T, FetchError> {
    serde_json::from_slice(body).map_err(|e| {
        use serde_json::error::Category;
        FetchError::Invalid(match e.classify() {
            Category::Data => format!("{who} is not of the documented shape {shape}: {e}"),
            Category::Syntax | Category::Eof | Category::Io => format!(
                "{who} is not JSON (line {} column {}: {e}); expected {shape}",
                e.line(),
                e.column()
            ),
        })
    })
}

/// Every field of every record, in order of first appearance (a Workday report leaves a
/// field out of a record when it is empty); canonical ones under their canonical name.
pub fn union_columns(records: &[Record], columns: &Columns) -> Vec<Column> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for record in records {
        for (field, _) in &record.0 {
            if seen.insert(field.as_str()) {
                out.push(Column {
                    header: columns.canonical(field).unwrap_or(field).to_string(),
                    field: field.clone(),
                });
            }
        }
    }
    out
}

/// The CSV bytes: the header, then one row per record. `list` names where the records
/// were in the answer (`employees`, `Report_Entry`), for messages.
pub fn write_csv(
    columns: &[Column],
    records: &[Record],
    list: &str,
) -> Result<Vec<u8>, FetchError> {
    let index: HashMap<&str, usize> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| (c.field.as_str(), i))
        .collect();
    let mut writer = csv::WriterBuilder::new()
        .terminator(csv::Terminator::Any(b'\n'))
        .from_writer(Vec::new());
    refuse_columns(columns)?;
    let failed = |e: csv::Error| FetchError::Invalid(format!("writing the CSV: {e}"));
    writer
        .write_record(columns.iter().map(|c| c.header.as_str()))
        .map_err(failed)?;
    let mut row = vec![String::new(); columns.len()];
    for (i, record) in records.iter().enumerate() {
        row.iter_mut().for_each(String::clear);
        for (field, value) in &record.0 {
            let Some(&column) = index.get(field.as_str()) else {
                continue;
            };
            row[column] = cell(value).map_err(|why| {
                FetchError::Invalid(format!(
                    "record {} ({list}[{i}]), field \"{field}\": {why}",
                    i + 1
                ))
            })?;
        }
        writer.write_record(&row).map_err(failed)?;
    }
    writer
        .into_inner()
        .map_err(|e| FetchError::Invalid(format!("writing the CSV: {e}")))
}

/// The records without a status, where the column is there: `count` of them, the first
/// at `index` (its employee ID as the answer gives it, `none` without one), its status
/// `left_out` or answered blank. A leaver's blank status counts as active (SPEC §1), and
/// from an API it means the status is unknown (a field hidden from the key's user for some
/// employees, or unset): the fetch fails instead of a leaver regaining admin rights.
#[derive(Debug, PartialEq, Eq)]
pub struct Unknown {
    pub count: usize,
    pub index: usize,
    pub id: String,
    pub left_out: bool,
}

/// The records of `records` whose status column's field says nothing ([`Unknown`]), when
/// `columns` has a status column.
pub fn unknown_statuses(columns: &[Column], records: &[Record]) -> Option<Unknown> {
    use crate::core::columns::{EMPLOYEE_ID, EMPLOYMENT_STATUS};
    let field = |header: &str| {
        columns
            .iter()
            .find(|c| c.header == header)
            .map(|c| &c.field)
    };
    let status = field(EMPLOYMENT_STATUS)?;
    let lacks = |r: &&Record| value(r, status).is_none_or(is_blank);
    let (index, first) = records.iter().enumerate().find(|(_, r)| lacks(r))?;
    let id = field(EMPLOYEE_ID).and_then(|f| value(first, f));
    Some(Unknown {
        count: records.iter().filter(lacks).count(),
        index,
        id: id.unwrap_or("none").to_string(),
        left_out: value(first, status).is_none(),
    })
}

/// The value of `field` in `record`, as its JSON text.
pub fn value<'a>(record: &'a Record, field: &str) -> Option<&'a str> {
    (record.0.iter())
        .find(|(k, _)| k == field)
        .map(|(_, v)| v.get())
}

/// Whether the JSON value `raw` says nothing: `null`, or a string the roster reads as blank
/// (blank space and characters that show as nothing, [`fold_cell`]): a zero-width space
/// had passed for a status and counted as active.
fn is_blank(raw: &str) -> bool {
    use crate::core::columns::fold_cell;
    let raw = raw.trim();
    raw == "null" || serde_json::from_str::<String>(raw).is_ok_and(|s| fold_cell(&s).is_empty())
}

/// Refuses columns the roster would refuse without naming the answer's fields: two fields
/// under one column (`Employee_ID` and `Worker_ID`, both `employee_id`: the file had been
/// rejected for "columns employee_id and employee_id"), and a field name with a NUL.
fn refuse_columns(columns: &[Column]) -> Result<(), FetchError> {
    let mut by_header: HashMap<String, &str> = HashMap::new();
    for c in columns {
        if c.field.contains('\0') {
            return Err(FetchError::Invalid(format!(
                "the field name {:?} holds a NUL character (U+0000), which a CSV column cannot",
                c.field
            )));
        }
        let key = crate::core::columns::normalize_header(&c.header);
        if let Some(first) = by_header.insert(key, &c.field) {
            return Err(FetchError::Invalid(format!(
                "the fields \"{first}\" and \"{}\" both make the column \"{}\": leave one of them out of the report",
                c.field, c.header
            )));
        }
    }
    Ok(())
}

/// A value as CSV text: a string unescaped, `null` empty, a number or boolean exactly as
/// written; why not when it cannot be one. The text is valid JSON (serde_json checked it).
fn cell(value: &RawValue) -> Result<String, &'static str> {
    let text = value.get();
    match text.as_bytes().first() {
        Some(b'"') => match serde_json::from_str::<String>(text) {
            Ok(s) if s.contains('\0') => {
                Err("the string holds a NUL character (U+0000), which a CSV cell cannot")
            }
            Ok(s) => Ok(s),
            Err(_) => Err("the value is a string that cannot be read"),
        },
        Some(b'{') => Err("the value is an object, not a string, number, boolean or null"),
        Some(b'[') => Err("the value is a list, not a string, number, boolean or null"),
        Some(b'n') => Ok(String::new()),
        _ => Ok(text.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Answer {
        #[serde(rename = "Report_Entry")]
        entries: Vec<Record>,
    }

    fn entries(json: &str) -> Vec<Record> {
        parse::<Answer>(json.as_bytes(), "the report", "{\"Report_Entry\": [...]}")
            .unwrap()
            .entries
    }

    #[test]
    fn columns_are_the_union_in_order_of_first_appearance_with_canonical_names() {
        let records = entries(
            r#"{"Report_Entry": [
                {"Employee_ID": "1", "Work_Email": "a@x.io", "Cost_Center": "CC1"},
                {"Employee_ID": "2", "Manager_ID": "1", "Work_Email": "b@x.io", "Location": "Berlin"}
            ]}"#,
        );
        let cols = union_columns(&records, &Columns::default());
        let headers: Vec<&str> = cols.iter().map(|c| c.header.as_str()).collect();
        assert_eq!(
            headers,
            [
                "employee_id",
                "email",
                "Cost_Center",
                "manager_id",
                "Location"
            ]
        );
        let csv = String::from_utf8(write_csv(&cols, &records, "Report_Entry").unwrap()).unwrap();
        assert_eq!(
            csv,
            "employee_id,email,Cost_Center,manager_id,Location\n1,a@x.io,CC1,,\n2,b@x.io,,1,Berlin\n"
        );
    }

    #[test]
    fn a_field_given_twice_in_a_record_fails_the_fetch() {
        let err = parse::<Answer>(
            br#"{"Report_Entry": [{"Employee_ID": "7", "Work_Email": "old@x.io", "Work_Email": "new@x.io"}]}"#,
            "the report",
            "{\"Report_Entry\": [...]}",
        )
        .err()
        .expect("refused")
        .to_string();
        assert!(err.contains("\"Work_Email\" is given twice"), "{err}");
    }

    #[test]
    fn roster_columns_aliases_find_canonical_columns_too() {
        let mut extra = std::collections::BTreeMap::new();
        extra.insert("manager_id".to_string(), vec!["Supervisor_EID".to_string()]);
        let cols = Columns::new(&extra);
        assert_eq!(cols.canonical("Supervisor_EID"), Some("manager_id"));
        assert_eq!(cols.canonical("Worker_Status"), Some("employment_status"));
        assert_eq!(cols.canonical("jobTitle"), None);
    }

    #[test]
    fn scalars_become_text_and_quoting_follows_csv() {
        let records = entries(
            r#"{"Report_Entry": [{"id": 7, "ok": true, "none": null, "f": 1.5,
                "name": "Doe, \"J\"", "multi": "a\nb", "f2": "=HYPERLINK(1)"}]}"#,
        );
        let cols = union_columns(&records, &Columns::default());
        let csv = String::from_utf8(write_csv(&cols, &records, "Report_Entry").unwrap()).unwrap();
        assert_eq!(
            csv,
            "id,ok,none,f,name,multi,f2\n7,true,,1.5,\"Doe, \"\"J\"\"\",\"a\nb\",=HYPERLINK(1)\n"
        );
    }

    #[test]
    fn numbers_are_copied_as_written_never_through_a_float() {
        // Two IDs that one f64 cannot tell apart (2^53 + 1 and 2^53), one beyond 64 bits.
        let records = entries(
            r#"{"Report_Entry": [{"id": 9007199254740993, "m": 9007199254740992},
                {"id": 123456789012345678901234567890, "m": 1e3, "f": -0.10000000000000000555}]}"#,
        );
        let cols = union_columns(&records, &Columns::default());
        let csv = String::from_utf8(write_csv(&cols, &records, "Report_Entry").unwrap()).unwrap();
        assert_eq!(
            csv,
            "id,m,f\n9007199254740993,9007199254740992,\n123456789012345678901234567890,1e3,-0.10000000000000000555\n"
        );
    }

    #[test]
    fn a_nested_value_fails_naming_record_and_field() {
        let records =
            entries(r#"{"Report_Entry": [{"id": "1"}, {"id": "2", "Groups": [{"x": 1}]}]}"#);
        let cols = union_columns(&records, &Columns::default());
        let err = write_csv(&cols, &records, "Report_Entry")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("record 2 (Report_Entry[1])")
                && err.contains("field \"Groups\"")
                && err.contains("a list"),
            "{err}"
        );
        let records = entries(r#"{"Report_Entry": [{"id": "1", "Org": {"id": 5}}]}"#);
        let cols = union_columns(&records, &Columns::default());
        let err = write_csv(&cols, &records, "Report_Entry")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("record 1") && err.contains("an object"),
            "{err}"
        );
    }

    /// Two fields making one column, a NUL in a value or in a field's name: the fetch fails
    /// naming them (the file had been rejected naming neither, or advised to be exported as
    /// CSV UTF-8, which autoprov had written itself).
    #[test]
    fn what_the_roster_would_refuse_fails_naming_the_fields() {
        let fail = |json: &str| {
            let records = entries(json);
            let cols = union_columns(&records, &Columns::default());
            write_csv(&cols, &records, "Report_Entry")
                .unwrap_err()
                .to_string()
        };
        let err = fail(r#"{"Report_Entry": [{"Employee_ID": "1", "Worker_ID": "1"}]}"#);
        assert!(
            err.contains(
                "the fields \"Employee_ID\" and \"Worker_ID\" both make the column \"employee_id\""
            ),
            "{err}"
        );
        let err =
            fail(r#"{"Report_Entry": [{"id": "1", "Cost Center": "a", "cost_center": "b"}]}"#);
        assert!(err.contains("\"Cost Center\" and \"cost_center\""), "{err}");
        let err =
            fail(r#"{"Report_Entry": [{"id": "1"}, {"id": "2", "title": "Cl\u00e9rk\u0000x"}]}"#);
        assert!(
            err.contains("record 2 (Report_Entry[1]), field \"title\": the string holds a NUL"),
            "{err}"
        );
        let err = fail(r#"{"Report_Entry": [{"id": "1", "ti\u0000tle": "x"}]}"#);
        assert!(err.contains("holds a NUL character"), "{err}");
    }

    #[test]
    fn not_json_and_wrong_shapes_are_told_apart() {
        let shape = "{\"Report_Entry\": [...]}";
        let not_json = parse::<Answer>(b"<html>login</html>", "the report", shape)
            .err()
            .unwrap()
            .to_string();
        assert!(not_json.contains("is not JSON"), "{not_json}");
        for body in [
            r#"{"Report": []}"#,
            r#"{"Report_Entry": {"id": 1}}"#,
            r#"{"Report_Entry": ["x"]}"#,
            r#"[1, 2]"#,
        ] {
            let err = parse::<Answer>(body.as_bytes(), "the report", shape)
                .err()
                .unwrap()
                .to_string();
            assert!(err.contains("not of the documented shape"), "{body}: {err}");
        }
    }
}
