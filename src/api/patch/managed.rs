//! `metadata.managedFields` entries: decoding them from an object, encoding
//! them back in upstream's order, and the manager identity rules (an Apply
//! entry is one per manager and subresource; an Update entry also per
//! apiVersion). Also upstream's cap on the number of Update entries.
//! Must not: compute which fields a write owns (that is `apply`), or read a clock.

use std::collections::HashMap;

use serde_json::{Map, Value};

use super::fieldset::FieldSet;

/// Upstream `DefaultMaxUpdateManagers`: older Update entries beyond this are
/// folded into one "ancient-changes" entry per apiVersion.
const MAX_UPDATE_MANAGERS: usize = 10;
const ANCIENT_CHANGES: &str = "ancient-changes";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Operation {
    Apply,
    Update,
}

impl Operation {
    pub(crate) fn parse(text: &str) -> Option<Operation> {
        match text {
            "Apply" => Some(Operation::Apply),
            "Update" => Some(Operation::Update),
            _ => None,
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Operation::Apply => "Apply",
            Operation::Update => "Update",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ManagerEntry {
    pub(crate) manager: String,
    pub(crate) operation: Operation,
    pub(crate) api_version: String,
    pub(crate) time: Option<String>,
    pub(crate) subresource: Option<String>,
    pub(crate) set: FieldSet,
}

impl ManagerEntry {
    /// Same manager identity (upstream `BuildManagerIdentifier`): the
    /// apiVersion only counts for Update entries.
    pub(crate) fn is(
        &self,
        manager: &str,
        operation: Operation,
        api_version: &str,
        subresource: Option<&str>,
    ) -> bool {
        self.manager == manager
            && self.operation == operation
            && self.subresource.as_deref() == subresource
            && (operation == Operation::Apply || self.api_version == api_version)
    }

    fn same_identity(&self, other: &ManagerEntry) -> bool {
        self.is(
            &other.manager,
            other.operation,
            &other.api_version,
            other.subresource.as_deref(),
        )
    }
}

/// `metadata.managedFields` of `obj`, if any.
pub(crate) fn managed_fields_of(obj: &Value) -> Option<&Value> {
    obj.get("metadata")?.get("managedFields")
}

/// Removes and returns `metadata.managedFields`.
pub(crate) fn take_managed_fields(obj: &mut Value) -> Option<Value> {
    obj.get_mut("metadata")?
        .as_object_mut()?
        .shift_remove("managedFields")
}

/// Upstream `isResetManagedFields`: `[]` or `[{}]` asks to drop all entries.
pub(crate) fn is_reset_request(raw: Option<&Value>) -> bool {
    match raw {
        Some(Value::Array(entries)) => match entries.as_slice() {
            [] => true,
            [only] => only.as_object().is_some_and(Map::is_empty),
            _ => false,
        },
        _ => false,
    }
}

/// Decodes managedFields. Like upstream, one malformed entry makes the whole
/// list unusable (`Err`); absent or `null` is an empty list.
pub(crate) fn decode(raw: Option<&Value>) -> Result<Vec<ManagerEntry>, String> {
    let entries = match raw {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(entries)) => entries,
        Some(_) => return Err("managedFields must be a list".to_string()),
    };
    let mut out: Vec<ManagerEntry> = Vec::with_capacity(entries.len());
    for (i, entry) in entries.iter().enumerate() {
        let decoded = decode_entry(entry).map_err(|e| format!("managedFields[{i}]: {e}"))?;
        match out.iter_mut().find(|e| e.same_identity(&decoded)) {
            Some(existing) => {
                existing.set.union_with(&decoded.set);
                if later(decoded.time.as_deref(), existing.time.as_deref()) {
                    existing.time = decoded.time;
                }
            }
            None => out.push(decoded),
        }
    }
    Ok(out)
}

fn optional_string(map: &Map<String, Value>, key: &str) -> Result<Option<String>, String> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(format!("{key} must be a string")),
    }
}

fn decode_entry(entry: &Value) -> Result<ManagerEntry, String> {
    let Value::Object(map) = entry else {
        return Err("entry must be an object".to_string());
    };
    let operation = optional_string(map, "operation")?
        .as_deref()
        .and_then(Operation::parse)
        .ok_or("operation must be `Apply` or `Update`")?;
    let api_version = optional_string(map, "apiVersion")?
        .filter(|v| !v.is_empty())
        .ok_or("apiVersion must not be empty")?;
    match optional_string(map, "fieldsType")?.as_deref() {
        Some("FieldsV1") => {}
        Some(other) => return Err(format!("invalid fieldsType {other:?}")),
        None => return Err("missing fieldsType".to_string()),
    }
    let set = match map.get("fieldsV1") {
        None | Some(Value::Null) => FieldSet::default(),
        Some(v1) => FieldSet::from_fields_v1(v1)?,
    };
    Ok(ManagerEntry {
        manager: optional_string(map, "manager")?.unwrap_or_default(),
        operation,
        api_version,
        time: optional_string(map, "time")?,
        subresource: optional_string(map, "subresource")?.filter(|s| !s.is_empty()),
        set,
    })
}

fn seconds(time: Option<&str>) -> i64 {
    time.and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.timestamp())
        .unwrap_or(0)
}

fn later(a: Option<&str>, b: Option<&str>) -> bool {
    seconds(a) > seconds(b)
}

/// Upstream `sortEncodedManagedFields`: Apply before Update, then oldest
/// first, then by manager, apiVersion, subresource. Entries owning nothing
/// are dropped.
pub(crate) fn encode(entries: &[ManagerEntry]) -> Value {
    let mut sorted: Vec<&ManagerEntry> = entries.iter().filter(|e| !e.set.is_empty()).collect();
    sorted.sort_by(|a, b| {
        a.operation
            .cmp(&b.operation)
            .then_with(|| seconds(a.time.as_deref()).cmp(&seconds(b.time.as_deref())))
            .then_with(|| a.manager.cmp(&b.manager))
            .then_with(|| a.api_version.cmp(&b.api_version))
            .then_with(|| a.subresource.cmp(&b.subresource))
    });
    Value::Array(
        sorted
            .into_iter()
            .map(|entry| {
                let mut map = Map::new();
                map.insert("manager".into(), Value::String(entry.manager.clone()));
                map.insert(
                    "operation".into(),
                    Value::String(entry.operation.as_str().into()),
                );
                map.insert(
                    "apiVersion".into(),
                    Value::String(entry.api_version.clone()),
                );
                if let Some(time) = &entry.time {
                    map.insert("time".into(), Value::String(time.clone()));
                }
                map.insert("fieldsType".into(), Value::String("FieldsV1".into()));
                map.insert("fieldsV1".into(), entry.set.to_fields_v1());
                if let Some(subresource) = &entry.subresource {
                    map.insert("subresource".into(), Value::String(subresource.clone()));
                }
                Value::Object(map)
            })
            .collect(),
    )
}

/// Writes `entries` to `obj.metadata.managedFields`, keeping the key's place
/// if it was there; removes the key when nothing is owned.
pub(crate) fn store(obj: &mut Value, entries: &[ManagerEntry]) {
    let encoded = encode(entries);
    let empty = encoded.as_array().is_some_and(Vec::is_empty);
    let Value::Object(root) = obj else {
        return;
    };
    if empty {
        if let Some(Value::Object(meta)) = root.get_mut("metadata") {
            meta.shift_remove("managedFields");
        }
        return;
    }
    let meta = root
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Value::Object(meta) = meta {
        meta.insert("managedFields".to_string(), encoded);
    }
}

/// Upstream `capManagersManager`: while there are more than
/// [`MAX_UPDATE_MANAGERS`] Update entries, the oldest are merged, per
/// apiVersion, into an "ancient-changes" entry.
pub(crate) fn cap_update_managers(entries: &mut Vec<ManagerEntry>) {
    let mut updaters: Vec<usize> = (0..entries.len())
        .filter(|&i| entries[i].operation == Operation::Update)
        .collect();
    if updaters.len() <= MAX_UPDATE_MANAGERS {
        return;
    }
    updaters.sort_by_key(|&i| seconds(entries[i].time.as_deref()));
    let mut remaining = updaters.len();
    let mut first_of_version: HashMap<String, usize> = HashMap::new();
    let mut bucket_of_version: HashMap<String, usize> = HashMap::new();
    let mut merged_away = vec![false; entries.len()];
    for &i in &updaters {
        if remaining <= MAX_UPDATE_MANAGERS {
            break;
        }
        let version = entries[i].api_version.clone();
        let Some(&first) = first_of_version.get(&version) else {
            first_of_version.insert(version, i);
            continue;
        };
        let bucket = match bucket_of_version.get(&version) {
            Some(&bucket) => bucket,
            None => {
                let existing = (0..entries.len()).find(|&j| {
                    !merged_away[j]
                        && j != i
                        && entries[j].is(ANCIENT_CHANGES, Operation::Update, &version, None)
                });
                let bucket = match existing {
                    Some(j) if j != first => {
                        let moved = std::mem::take(&mut entries[first].set);
                        entries[j].set.union_with(&moved);
                        merged_away[first] = true;
                        remaining -= 1;
                        j
                    }
                    _ => {
                        entries[first].manager = ANCIENT_CHANGES.to_string();
                        entries[first].subresource = None;
                        first
                    }
                };
                bucket_of_version.insert(version, bucket);
                bucket
            }
        };
        if bucket == i {
            continue;
        }
        let moved = std::mem::take(&mut entries[i].set);
        entries[bucket].set.union_with(&moved);
        entries[bucket].time = entries[i].time.clone();
        merged_away[i] = true;
        remaining -= 1;
    }
    let mut index = 0;
    entries.retain(|_| {
        let keep = !merged_away[index];
        index += 1;
        keep
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn set_of(field: &str) -> FieldSet {
        let mut set = FieldSet::default();
        set.insert(&[super::super::fieldset::PathElement::Field(
            field.to_string(),
        )]);
        set
    }

    fn entry(manager: &str, operation: Operation, time: &str) -> ManagerEntry {
        ManagerEntry {
            manager: manager.to_string(),
            operation,
            api_version: "v1".to_string(),
            time: Some(time.to_string()),
            subresource: None,
            set: set_of(manager),
        }
    }

    #[test]
    fn decode_encode_round_trip_sorted() {
        let raw = json!([
            {"manager": "kubelet", "operation": "Update", "apiVersion": "v1", "time": "2024-01-02T00:00:00Z",
             "fieldsType": "FieldsV1", "fieldsV1": {"f:status": {"f:phase": {}}}, "subresource": "status"},
            {"manager": "kubectl", "operation": "Apply", "apiVersion": "v1", "time": "2024-01-03T00:00:00Z",
             "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:replicas": {}}}},
            {"manager": "kube-controller-manager", "operation": "Update", "apiVersion": "v1", "time": "2024-01-01T00:00:00Z",
             "fieldsType": "FieldsV1", "fieldsV1": {"f:metadata": {"f:labels": {"f:a": {}}}}}
        ]);
        let entries = decode(Some(&raw)).unwrap();
        assert_eq!(entries.len(), 3);
        let encoded = encode(&entries);
        let managers: Vec<&str> = encoded
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["manager"].as_str().unwrap())
            .collect();
        assert_eq!(
            managers,
            vec!["kubectl", "kube-controller-manager", "kubelet"]
        );
        let keys: Vec<&String> = encoded[2].as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            vec![
                "manager",
                "operation",
                "apiVersion",
                "time",
                "fieldsType",
                "fieldsV1",
                "subresource"
            ]
        );
        assert_eq!(encoded[2]["fieldsV1"], raw[0]["fieldsV1"]);
    }

    #[test]
    fn decode_rejects_malformed_lists() {
        for raw in [
            json!([{"manager": "m", "operation": "Frob", "apiVersion": "v1", "fieldsType": "FieldsV1"}]),
            json!([{"manager": "m", "operation": "Update", "fieldsType": "FieldsV1"}]),
            json!([{"manager": "m", "operation": "Update", "apiVersion": "v1", "fieldsType": "FieldsV2"}]),
            json!([{"manager": "m", "operation": "Update", "apiVersion": "v1", "fieldsType": "FieldsV1", "fieldsV1": {"bad": {}}}]),
            json!([{}]),
            json!("x"),
        ] {
            assert!(decode(Some(&raw)).is_err(), "{raw}");
        }
        assert!(is_reset_request(Some(&json!([{}]))));
        assert!(is_reset_request(Some(&json!([]))));
        assert!(!is_reset_request(None));
        assert!(!is_reset_request(Some(&json!([{"manager": "x"}]))));
    }

    #[test]
    fn update_managers_are_capped() {
        let mut entries: Vec<ManagerEntry> = (0..13)
            .map(|i| {
                entry(
                    &format!("m{i:02}"),
                    Operation::Update,
                    &format!("2024-01-01T00:00:{i:02}Z"),
                )
            })
            .collect();
        entries.push(entry("applier", Operation::Apply, "2024-01-01T00:00:00Z"));
        let owned_before: usize = entries.iter().map(|e| e.set.paths().len()).sum();
        cap_update_managers(&mut entries);
        let updates: Vec<&ManagerEntry> = entries
            .iter()
            .filter(|e| e.operation == Operation::Update)
            .collect();
        assert_eq!(updates.len(), MAX_UPDATE_MANAGERS);
        let ancient = updates
            .iter()
            .find(|e| e.manager == ANCIENT_CHANGES)
            .unwrap();
        assert_eq!(ancient.set.paths().len(), 4);
        let owned_after: usize = entries.iter().map(|e| e.set.paths().len()).sum();
        assert_eq!(owned_before, owned_after);
        assert!(entries.iter().any(|e| e.manager == "applier"));
        // Capping again with an existing bucket folds into it.
        for i in 13..16 {
            entries.push(entry(
                &format!("m{i:02}"),
                Operation::Update,
                &format!("2024-01-01T00:01:{i:02}Z"),
            ));
        }
        cap_update_managers(&mut entries);
        assert_eq!(
            entries
                .iter()
                .filter(|e| e.operation == Operation::Update)
                .count(),
            MAX_UPDATE_MANAGERS
        );
        assert_eq!(
            entries
                .iter()
                .filter(|e| e.manager == ANCIENT_CHANGES)
                .count(),
            1
        );
    }
}
