//! BambooHR's custom report API ("Request Custom Report"): one POST asks for the fields of
//! every employee; each employee of the answer becomes a row.
//!
//! `POST {base_url}/api/gateway.php/{subdomain}/v1/reports/custom?format=JSON&onlyCurrent=true`
//! with `Content-Type: application/json` exactly (BambooHR reads any other content type as
//! XML) and HTTP Basic auth (the API key as user name, `x` as password). The answer is
//! `{"title": ..., "fields": [...], "employees": [{"id": ..., <field>: ...}, ...]}`.

use super::csv_out::{Column, Record, parse, unknown_statuses, value, write_csv};
use super::http::{FetchError, Http, Said, Sink, shown};
use crate::config::hris::{self, Hris, Secret, read_secret};
use crate::core::columns::{Columns, EMAIL, EMPLOYEE_ID, EMPLOYMENT_STATUS, MANAGER_ID};
use anyhow::Result;
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use serde::Deserialize;

/// The fields always requested besides the id and manager fields (SPEC §10).
const STANDARD_FIELDS: [&str; 6] = [
    "workEmail",
    "status",
    "department",
    "division",
    "location",
    "jobTitle",
];

/// The BambooHR provider, credentials loaded.
pub struct BambooHr {
    url: String,
    api_key: Secret,
    /// What is asked for, in order, without repeats.
    fields: Vec<String>,
    /// The CSV's columns.
    columns: Vec<Column>,
}

/// The part of the answer that is used.
#[derive(Deserialize)]
struct Answer {
    employees: Vec<Record>,
}

impl BambooHr {
    /// From the config; reads the API key file. `names` finds the canonical columns: a
    /// field besides the four that names one of them is refused.
    pub fn new(hris: &Hris, b: &hris::BambooHr, names: &Columns) -> Result<BambooHr> {
        let api_key = read_secret("source.hris.bamboohr.api_key_file", &b.api_key_file)?;
        let url = format!(
            "{}/api/gateway.php/{}/v1/reports/custom?format=JSON&onlyCurrent=true",
            b.base_url.trim().trim_end_matches('/'),
            b.subdomain.trim()
        );
        let mut fields: Vec<String> = Vec::new();
        let wanted = [b.id_field.as_str(), b.manager_field.as_str()]
            .into_iter()
            .chain(STANDARD_FIELDS)
            .chain(hris.fields.iter().map(String::as_str));
        for field in wanted {
            let field = field.trim();
            if !field.is_empty() && !fields.iter().any(|f| f == field) {
                fields.push(field.to_string());
            }
        }
        let canonical = [
            (EMPLOYEE_ID, b.id_field.trim()),
            (EMAIL, "workEmail"),
            (MANAGER_ID, b.manager_field.trim()),
            (EMPLOYMENT_STATUS, "status"),
        ];
        let mut columns: Vec<Column> = canonical
            .iter()
            .map(|(header, field)| Column {
                header: header.to_string(),
                field: field.to_string(),
            })
            .collect();
        for field in &fields {
            if !canonical.iter().any(|(_, f)| f == field) {
                refuse_canonical(hris, names, field)?;
                columns.push(Column {
                    header: field.clone(),
                    field: field.clone(),
                });
            }
        }
        Ok(BambooHr {
            url,
            api_key,
            fields,
            columns,
        })
    }

    /// Asks for the report; the answer's bytes.
    pub async fn answer(&self, http: &Http) -> Result<Vec<u8>, FetchError> {
        let body = serde_json::json!({"title": "autoprov", "fields": self.fields}).to_string();
        let make = || {
            http.client()
                .post(&self.url)
                .basic_auth(self.api_key.expose(), Some("x"))
                .header(CONTENT_TYPE, "application/json")
                .header(ACCEPT, "application/json")
                .body(body.clone())
        };
        let mut sink = Sink::Memory(Vec::new());
        let what = format!("BambooHR ({})", shown(&self.url));
        let said = Said {
            header: "x-bamboohr-error-message",
            secret: self.api_key.expose(),
        };
        http.fetch(&what, &make, &mut sink, Some(&said)).await?;
        Ok(sink.into_bytes())
    }

    /// The answer as the CSV of SPEC §10.
    pub fn to_csv(&self, answer: &[u8]) -> Result<Vec<u8>, FetchError> {
        let answer: Answer = parse(
            answer,
            "BambooHR's answer",
            "{\"fields\": [...], \"employees\": [{...}, ...]}",
        )?;
        let columns = self.columns_answered(&answer.employees)?;
        write_csv(&columns, &answer.employees, "employees")
    }

    /// The columns of the fields the answer holds. BambooHR leaves out of every employee a
    /// field the key's user may not see, or that does not exist: a canonical one missing
    /// fails the fetch (an empty `status` column would have counted every leaver as active,
    /// an empty manager column every manager as none); another is left out of the CSV, so
    /// that a rule needing it rejects the file for the missing column (SPEC §1) instead of
    /// matching an empty value.
    fn columns_answered(&self, employees: &[Record]) -> Result<Vec<Column>, FetchError> {
        if employees.is_empty() {
            // A file of no rows would be rejected as a roster (SPEC §1), posted as a
            // rejected file; an HR system with no employees is a fetch that failed.
            return Err(FetchError::Invalid(
                "BambooHR's answer lists no employees: check the API key's user's access".into(),
            ));
        }
        let answered: std::collections::HashSet<&str> = employees
            .iter()
            .flat_map(|e| e.0.iter().map(|(field, _)| field.as_str()))
            .collect();
        let canonical = [EMPLOYEE_ID, EMAIL, MANAGER_ID, EMPLOYMENT_STATUS];
        if let Some(missing) = self.columns.iter().find(|c| {
            canonical.contains(&c.header.as_str()) && !answered.contains(c.field.as_str())
        }) {
            return Err(FetchError::Invalid(format!(
                "BambooHR's answer has no field \"{}\" (the roster's {}) for any employee: the \
                 API key's user may not see it, or no field has that name",
                missing.field, missing.header
            )));
        }
        // The manager field left out of some employees only (null is no manager; left out,
        // an access level hides it): their managers would have lost is_manager.
        let manager = self.columns.iter().find(|c| c.header == MANAGER_ID);
        if let Some(m) = manager {
            let lacks = |e: &&Record| value(e, &m.field).is_none();
            if let Some((index, first)) = employees.iter().enumerate().find(|(_, e)| lacks(e)) {
                let id = self.columns.iter().find(|c| c.header == EMPLOYEE_ID);
                let id = id.and_then(|c| value(first, &c.field));
                return Err(FetchError::Invalid(format!(
                    "BambooHR's answer leaves field \"{}\" (the roster's {MANAGER_ID}) out of \
                     {} of its {} employees, the first employees[{index}] (id {}): their \
                     managers would lose is_manager; give the API key's user access to it for \
                     every employee",
                    m.field,
                    employees.iter().filter(lacks).count(),
                    employees.len(),
                    id.unwrap_or("none"),
                )));
            }
        }
        // Left out of some employees only (a field an access level shows for some of them),
        // or answered null or blank: a leaver's empty status would count as active, so the
        // fetch fails too.
        if let Some(unknown) = unknown_statuses(&self.columns, employees) {
            let (how, remedy) = match unknown.left_out {
                true => (
                    "left out",
                    "give the API key's user access to it for every employee",
                ),
                false => ("null or blank", "set their employment status in BambooHR"),
            };
            let status = self.columns.iter().find(|c| c.header == EMPLOYMENT_STATUS);
            return Err(FetchError::Invalid(format!(
                "BambooHR's answer has no value of field \"{}\" (the roster's \
                 {EMPLOYMENT_STATUS}) for {} of its {} employees, the first employees[{}] \
                 (id {}), its value {how}: a leaver among them would count as active; {remedy}",
                status.map_or("status", |c| c.field.as_str()),
                unknown.count,
                employees.len(),
                unknown.index,
                unknown.id,
            )));
        }
        Ok(self
            .columns
            .iter()
            .filter(|c| answered.contains(c.field.as_str()))
            .cloned()
            .collect())
    }
}

/// A field written under its own name that the roster reads as a canonical column (e.g.
/// `supervisorId`, an alias of `manager_id`) beside the field that column is made from:
/// every file would have had two manager columns and been rejected (SPEC §1).
fn refuse_canonical(hris: &Hris, names: &Columns, field: &str) -> Result<()> {
    let Some(canonical) = names.canonical(field) else {
        return Ok(());
    };
    let from = match hris.fields.iter().any(|f| f.trim() == field) {
        true => "source.hris.fields",
        false => "roster.columns",
    };
    anyhow::bail!(
        "{from}: BambooHR's field \"{field}\" would be read as the roster's {canonical}, which \
         is made from another field already (source.hris.bamboohr sets id_field and \
         manager_field; workEmail and status are the others): leave it out"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider(extra: &[&str], id_field: &str) -> BambooHr {
        try_provider(extra, id_field).unwrap()
    }

    fn try_provider(extra: &[&str], id_field: &str) -> Result<BambooHr> {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("key");
        std::fs::write(&key, "k\n").unwrap();
        let text = format!(
            "provider = \"bamboohr\"\nfields = {extra:?}\n[bamboohr]\nbase_url = \"https://b.example/\"\n\
             subdomain = \"acme\"\napi_key_file = {:?}\nid_field = \"{id_field}\"\n",
            key.display().to_string()
        );
        let hris: Hris = toml_from(&text);
        BambooHr::new(&hris, hris.bamboohr.as_ref().unwrap(), &Columns::default())
    }

    fn toml_from(text: &str) -> Hris {
        config::Config::builder()
            .add_source(config::File::from_str(text, config::FileFormat::Toml))
            .build()
            .unwrap()
            .try_deserialize()
            .unwrap()
    }

    #[test]
    fn a_field_read_as_a_canonical_column_is_refused() {
        for field in ["supervisorId", "Employee ID", "email", "Worker Status"] {
            let err = try_provider(&[field], "id").err().unwrap().to_string();
            assert!(err.contains("source.hris.fields"), "{err}");
            assert!(err.contains(&format!("\"{field}\"")), "{err}");
        }
        let err = try_provider(&["supervisorId"], "id").err().unwrap();
        assert!(err.to_string().contains("manager_id"), "{err}");
        assert!(try_provider(&["employeeNumber", "hireDate"], "id").is_ok());
    }

    #[test]
    fn the_request_asks_for_the_spec_fields_once_each() {
        let b = provider(&["employeeNumber", "department", "workEmail"], "id");
        assert_eq!(
            b.url,
            "https://b.example/api/gateway.php/acme/v1/reports/custom?format=JSON&onlyCurrent=true"
        );
        assert_eq!(
            b.fields,
            [
                "id",
                "supervisorEId",
                "workEmail",
                "status",
                "department",
                "division",
                "location",
                "jobTitle",
                "employeeNumber"
            ]
        );
    }

    #[test]
    fn employees_become_rows_with_canonical_columns_first() {
        let b = provider(&["employeeNumber"], "employeeNumber");
        let answer = br#"{"title": "autoprov", "fields": [{"id": "employeeNumber", "type": "text", "name": "Employee #"}],
            "employees": [
              {"id": "4", "employeeNumber": "E-1", "supervisorEId": null, "workEmail": "a@x.io", "status": "Active",
               "department": "IT", "division": "North", "location": "Berlin", "jobTitle": "CTO"},
              {"id": "5", "employeeNumber": "E-2", "supervisorEId": "E-1", "workEmail": "b@x.io", "status": "Inactive"}
            ]}"#;
        let csv = String::from_utf8(b.to_csv(answer).unwrap()).unwrap();
        assert_eq!(
            csv,
            "employee_id,email,manager_id,employment_status,department,division,location,jobTitle\n\
             E-1,a@x.io,,Active,IT,North,Berlin,CTO\n\
             E-2,b@x.io,E-1,Inactive,,,,\n"
        );
    }

    /// A field BambooHR left out of every employee (not visible to the key's user, or
    /// misspelt): a canonical one fails the fetch, another is left out of the CSV.
    #[test]
    fn fields_the_answer_leaves_out_are_not_written_as_empty_columns() {
        let b = provider(&["costCenter"], "id");
        let without_status = br#"{"employees": [
            {"id": "4", "supervisorEId": null, "workEmail": "a@x.io", "department": "IT"},
            {"id": "5", "supervisorEId": "4", "workEmail": "b@x.io", "department": "IT"}]}"#;
        let err = b.to_csv(without_status).unwrap_err().to_string();
        assert!(
            err.contains("\"status\"") && err.contains("employment_status"),
            "{err}"
        );
        let without_manager =
            br#"{"employees": [{"id": "4", "workEmail": "a@x.io", "status": "Active"}]}"#;
        let err = b.to_csv(without_manager).unwrap_err().to_string();
        assert!(err.contains("\"supervisorEId\""), "{err}");
        // The status left out of some employees only, or null or blank: a leaver among them
        // would be active.
        let partly = br#"{"employees": [{"id": "4", "supervisorEId": null, "workEmail": "a@x.io",
            "status": "Active"}, {"id": "5", "supervisorEId": "4", "workEmail": "b@x.io"},
            {"id": "6", "supervisorEId": "4", "workEmail": "c@x.io", "status": null},
            {"id": "7", "supervisorEId": "4", "workEmail": "d@x.io", "status": " "},
            {"id": "8", "supervisorEId": "4", "workEmail": "e@x.io", "status": "\u200b\ufeff"}]}"#;
        let err = b.to_csv(partly).unwrap_err().to_string();
        let first =
            "for 4 of its 5 employees, the first employees[1] (id \"5\"), its value left out";
        assert!(err.contains(first) && err.contains("access to it"), "{err}");
        // Answered blank for some: no access advice, the status is not set.
        let unset = br#"{"employees": [{"id": "4", "supervisorEId": null, "workEmail": "a@x.io",
            "status": "Active"}, {"id": 9, "supervisorEId": "4", "workEmail": "b@x.io",
            "status": "\u2060"}]}"#;
        let err = b.to_csv(unset).unwrap_err().to_string();
        let first =
            "for 1 of its 2 employees, the first employees[1] (id 9), its value null or blank";
        assert!(
            err.contains(first) && err.contains("set their employment status"),
            "{err}"
        );
        // The manager field left out of some (null is no manager, and is taken).
        let partly = br#"{"employees": [{"id": "4", "supervisorEId": null, "workEmail": "a@x.io",
            "status": "Active"}, {"id": "5", "workEmail": "b@x.io", "status": "Active"}]}"#;
        let err = b.to_csv(partly).unwrap_err().to_string();
        let first = "out of 1 of its 2 employees, the first employees[1] (id \"5\")";
        assert!(
            err.contains(first) && err.contains("\"supervisorEId\""),
            "{err}"
        );
        // costCenter, location... not answered: no such columns, rather than empty ones.
        let answered = br#"{"employees": [{"id": "4", "supervisorEId": null, "workEmail": "a@x.io",
            "status": "Active", "department": "IT"}]}"#;
        let csv = String::from_utf8(b.to_csv(answered).unwrap()).unwrap();
        assert_eq!(
            csv,
            "employee_id,email,manager_id,employment_status,department\n4,a@x.io,,Active,IT\n"
        );
    }

    #[test]
    fn a_nested_value_names_the_employee_record_and_field() {
        let b = provider(&[], "id");
        let answer = br#"{"employees": [{"id": "1", "workEmail": "a@x.io", "status": "Active", "supervisorEId": null},
            {"id": "2", "status": "Active", "supervisorEId": "1", "department": {"name": "IT"}}]}"#;
        let err = b.to_csv(answer).unwrap_err().to_string();
        assert!(
            err.contains("record 2 (employees[1])") && err.contains("field \"department\""),
            "{err}"
        );
        let err = b.to_csv(br#"{"fields": []}"#).unwrap_err().to_string();
        assert!(err.contains("documented shape"), "{err}");
    }
}
