//! Server-side apply and field ownership, after upstream
//! structured-merge-diff: the applied configuration's field set becomes what
//! its manager owns (operation Apply); changing a field another manager owns
//! is a conflict unless forced (then ownership moves); fields this manager
//! applied before and no longer applies are removed unless someone else owns
//! them; keyed lists merge by key. [`record_update`] keeps ownership current
//! for ordinary writes (operation Update). Ownership never covers
//! `apiVersion`, `kind`, `metadata.{name, namespace, uid, resourceVersion,
//! generation, creationTimestamp, managedFields, ...}` nor the caller's reset
//! fields (`status` on the main resource).
//!
//! Must not: validate or default objects, check preconditions, convert
//! between API versions (all versions of a kind are treated as one shape),
//! or read a clock. Without an OpenAPI schema, every map is treated as
//! granular and every list as atomic unless the [`MergeSchema`] says
//! otherwise; `.` markers for added struct fields therefore differ
//! cosmetically from upstream's.

use std::collections::{HashMap, HashSet, VecDeque};

use serde_json::{Map, Value};

use super::fieldset::{FieldSet, PathElement, path_string};
use super::managed::{self, ManagerEntry, Operation};
use super::schema::{ListMapKey, ListStrategy, MergeSchema};
use super::{MAX_INPUT_DEPTH, canonical, depth_exceeds};

/// The manager that owns everything of an object that had no managedFields
/// when it was first applied to (upstream's name).
const BEFORE_FIRST_APPLY: &str = "before-first-apply";

/// Never owned by anyone (upstream's stripMeta set; exact paths).
const STRIPPED_PATHS: &[&[&str]] = &[
    &["apiVersion"],
    &["kind"],
    &["metadata"],
    &["metadata", "name"],
    &["metadata", "namespace"],
    &["metadata", "creationTimestamp"],
    &["metadata", "selfLink"],
    &["metadata", "uid"],
    &["metadata", "clusterName"],
    &["metadata", "generation"],
    &["metadata", "managedFields"],
    &["metadata", "resourceVersion"],
    &["metadata", "deletionTimestamp"],
    &["metadata", "deletionGracePeriodSeconds"],
];

/// An apply never changes these on an existing object; the live value stays.
const PROTECTED_PATHS: &[&[&str]] = &[
    &["apiVersion"],
    &["kind"],
    &["metadata", "name"],
    &["metadata", "namespace"],
    &["metadata", "uid"],
    &["metadata", "resourceVersion"],
    &["metadata", "generation"],
    &["metadata", "creationTimestamp"],
    &["metadata", "deletionTimestamp"],
    &["metadata", "deletionGracePeriodSeconds"],
    &["metadata", "selfLink"],
];

/// One field another manager owns and this apply would change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    pub manager: String,
    /// "Apply" or "Update".
    pub operation: String,
    pub api_version: String,
    pub subresource: Option<String>,
    /// Upstream's path text: `.spec.replicas`,
    /// `.spec.template.spec.containers[name="nginx"].image`.
    pub field: String,
}

impl Conflict {
    /// Upstream `printManager`: `"kubectl-client-side-apply" using apps/v1`
    /// for an Update manager, `"other"` for an Apply manager.
    pub fn manager_description(&self) -> String {
        let mut out = format!("{:?}", self.manager);
        if let Some(subresource) = &self.subresource {
            out.push_str(&format!(" with subresource {subresource:?}"));
        }
        if self.operation == "Update" {
            out.push_str(&format!(" using {}", self.api_version));
        }
        out
    }

    /// The `StatusCause.message` upstream sends with cause type
    /// `FieldManagerConflict` (its `field` is [`Conflict::field`]).
    pub fn cause_message(&self) -> String {
        format!("conflict with {}", self.manager_description())
    }
}

/// Why an apply was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    /// 409 `Conflict` with one `FieldManagerConflict` cause per entry; the
    /// message is [`conflict_message`].
    #[error("{}", conflict_message(.0))]
    Conflicts(Vec<Conflict>),
    /// 400 `BadRequest`: the applied configuration is not usable (not an
    /// object, carries managedFields, a keyed list item lacks its key, ...).
    #[error("{0}")]
    Invalid(String),
}

/// Upstream's message for apply conflicts:
/// `Apply failed with 1 conflict: conflict with "x" using apps/v1: .spec.replicas`, or
/// `Apply failed with 2 conflicts: conflicts with "x" using v1:\n- .data.a\n- .data.b`.
pub fn conflict_message(conflicts: &[Conflict]) -> String {
    if let [only] = conflicts {
        return format!(
            "Apply failed with 1 conflict: conflict with {}: {}",
            only.manager_description(),
            only.field
        );
    }
    let mut sorted: Vec<&Conflict> = conflicts.iter().collect();
    sorted.sort_by(|a, b| {
        (&a.manager, &a.operation, &a.api_version, &a.subresource).cmp(&(
            &b.manager,
            &b.operation,
            &b.api_version,
            &b.subresource,
        ))
    });
    let mut lines: Vec<String> = Vec::new();
    let mut current: Option<String> = None;
    for conflict in sorted {
        let description = conflict.manager_description();
        if current.as_deref() != Some(description.as_str()) {
            lines.push(format!("conflicts with {description}:"));
            current = Some(description);
        }
        lines.push(format!("- {}", conflict.field));
    }
    format!(
        "Apply failed with {} conflicts: {}",
        conflicts.len(),
        lines.join("\n")
    )
}

/// Everything an apply request says besides the two objects.
#[derive(Debug, Clone, Copy)]
pub struct ApplyOptions<'a> {
    /// The `fieldManager` query parameter (required for apply).
    pub manager: &'a str,
    /// `force=true`: take conflicting fields over instead of failing.
    pub force: bool,
    /// The apiVersion the request was made in, recorded in the entry.
    pub api_version: &'a str,
    /// RFC 3339 time recorded in the entry when it changes.
    pub now: &'a str,
    /// `Some("status")` for an apply to the status subresource.
    pub subresource: Option<&'a str>,
    /// Field paths this request may not change (the registry strategy resets
    /// them): the live value is kept and nobody comes to own them. The main
    /// resource of a kind with a status subresource: `&[&["status"]]`; its
    /// status subresource: `&[&["spec"]]` (and any other top-level fields).
    pub reset_fields: &'a [&'a [&'a str]],
}

/// Server-side apply to the main resource, `status` being reset (see
/// [`apply`] for subresources and kinds whose status is plain data).
/// `live: None` creates. Returns the new object with `metadata.managedFields`.
pub fn server_side_apply(
    live: Option<&Value>,
    applied: &Value,
    manager: &str,
    force: bool,
    schema: &dyn MergeSchema,
    api_version: &str,
    now: &str,
) -> Result<Value, ApplyError> {
    apply(
        live,
        applied,
        schema,
        &ApplyOptions {
            manager,
            force,
            api_version,
            now,
            subresource: None,
            reset_fields: &[&["status"]],
        },
    )
}

/// Server-side apply (see the module documentation for the semantics).
pub fn apply(
    live: Option<&Value>,
    applied: &Value,
    schema: &dyn MergeSchema,
    options: &ApplyOptions,
) -> Result<Value, ApplyError> {
    let invalid = |message: &str| Err(ApplyError::Invalid(message.to_string()));
    if !applied.is_object() {
        return invalid("the applied configuration must be a JSON object");
    }
    if depth_exceeds(applied, MAX_INPUT_DEPTH) {
        return invalid("the applied configuration is nested too deeply");
    }
    if managed::managed_fields_of(applied).is_some_and(|v| !v.is_null()) {
        return invalid("metadata.managedFields must be nil");
    }
    if let Some(live) = live
        && (!live.is_object() || depth_exceeds(live, MAX_INPUT_DEPTH))
    {
        return invalid("the live object is not a JSON object of reasonable depth");
    }

    let strip = paths_set(STRIPPED_PATHS);
    let reset = paths_set(options.reset_fields);
    let mut walker = Walker::new(schema);
    let mut config_set = FieldSet::default();
    walker
        .field_set(applied, &mut Vec::new(), &mut config_set, true)
        .map_err(|e| ApplyError::Invalid(format!("failed to create typed patch object: {e}")))?;
    let config_set = config_set.difference(&strip).recursive_difference(&reset);
    let subresource = options.subresource.filter(|s| !s.is_empty());
    let my_entry = |set: FieldSet| ManagerEntry {
        manager: options.manager.to_string(),
        operation: Operation::Apply,
        api_version: options.api_version.to_string(),
        time: Some(options.now.to_string()),
        subresource: subresource.map(str::to_string),
        set,
    };

    let Some(live) = live else {
        let mut object = walker
            .merge(None, applied)
            .unwrap_or_else(|| Value::Object(Map::new()));
        managed::take_managed_fields(&mut object);
        managed::store(&mut object, &[my_entry(config_set)]);
        return Ok(object);
    };

    let mut live_object = live.clone();
    let live_managed = managed::take_managed_fields(&mut live_object);
    let mut entries = managed::decode(live_managed.as_ref()).unwrap_or_default();
    if entries.is_empty() {
        // Upstream's skipNonAppliedManager: what is already there belongs to
        // "before-first-apply", so an apply that changes it conflicts.
        let mut comparison = Comparison::default();
        walker.compare(
            Some(&Value::Object(Map::new())),
            Some(&live_object),
            &mut Vec::new(),
            &mut comparison,
        );
        let set = comparison
            .added
            .union(&comparison.modified)
            .difference(&strip)
            .recursive_difference(&reset);
        if !set.is_empty() {
            entries.push(ManagerEntry {
                manager: BEFORE_FIRST_APPLY.to_string(),
                operation: Operation::Update,
                api_version: options.api_version.to_string(),
                time: Some(options.now.to_string()),
                subresource: None,
                set,
            });
        }
    }

    let mut object = walker
        .merge(Some(&live_object), applied)
        .unwrap_or_else(|| Value::Object(Map::new()));
    if !object.get("metadata").is_some_and(Value::is_object) {
        // `metadata: null` (or a scalar) in the config cannot delete metadata.
        restore(&mut object, &live_object, &["metadata"]);
    }
    for path in PROTECTED_PATHS.iter().chain(options.reset_fields) {
        restore(&mut object, &live_object, path);
    }

    let mine = entries.iter().position(|e| {
        e.is(
            options.manager,
            Operation::Apply,
            options.api_version,
            subresource,
        )
    });
    let last_set = mine.map(|i| entries[i].set.clone());
    let mine = match mine {
        Some(i) => {
            entries[i].set = config_set;
            entries[i].api_version = options.api_version.to_string();
            i
        }
        None => {
            let mut entry = my_entry(config_set);
            entry.time = None;
            entries.push(entry);
            entries.len() - 1
        }
    };

    if let Some(last) = last_set.as_ref().filter(|s| !s.is_empty()) {
        let mut owned = FieldSet::default();
        for entry in &entries {
            owned.union_with(&entry.set);
        }
        walker.prune(&mut object, last, Some(&owned), &[]);
    }

    let mut comparison = Comparison::default();
    walker.compare(
        Some(&live_object),
        Some(&object),
        &mut Vec::new(),
        &mut comparison,
    );
    let comparison = comparison.without(&strip, &reset);
    let changed = comparison.added.union(&comparison.modified);
    let conflicts: Vec<(usize, FieldSet)> = entries
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != mine)
        .map(|(i, entry)| (i, entry.set.intersection(&changed)))
        .filter(|(_, set)| !set.is_empty())
        .collect();
    if !options.force && !conflicts.is_empty() {
        return Err(ApplyError::Conflicts(describe_conflicts(
            &entries, &conflicts,
        )));
    }
    for (i, taken) in &conflicts {
        entries[*i].set = entries[*i].set.difference(taken);
    }
    if !comparison.removed.is_empty() {
        for (i, entry) in entries.iter_mut().enumerate() {
            if i != mine {
                entry.set = entry.set.difference(&comparison.removed);
            }
        }
    }
    let changed_anything = object != live_object || last_set.as_ref() != Some(&entries[mine].set);
    if changed_anything || entries[mine].time.is_none() {
        entries[mine].time = Some(options.now.to_string());
    }
    entries.retain(|e| !e.set.is_empty());
    managed::cap_update_managers(&mut entries);
    managed::store(&mut object, &entries);
    Ok(object)
}

fn describe_conflicts(entries: &[ManagerEntry], conflicts: &[(usize, FieldSet)]) -> Vec<Conflict> {
    let mut ordered: Vec<&(usize, FieldSet)> = conflicts.iter().collect();
    ordered.sort_by(|a, b| {
        let (x, y) = (&entries[a.0], &entries[b.0]);
        (&x.manager, x.operation, &x.api_version, &x.subresource).cmp(&(
            &y.manager,
            y.operation,
            &y.api_version,
            &y.subresource,
        ))
    });
    let mut out = Vec::new();
    for (i, set) in ordered {
        let entry = &entries[*i];
        for path in set.paths() {
            out.push(Conflict {
                manager: entry.manager.clone(),
                operation: entry.operation.as_str().to_string(),
                api_version: entry.api_version.clone(),
                subresource: entry.subresource.clone(),
                field: path_string(&path),
            });
        }
    }
    out
}

/// Records a non-apply write (create, update, patch, status update) in
/// `new`'s `metadata.managedFields`: fields this write added or changed
/// become owned by `(manager, operation, api_version, subresource)` and are
/// taken from every other manager; removed fields leave every set. Follows
/// upstream: a client may replace managedFields itself on the main resource
/// (`[]` or `[{}]` clears them); an existing object without managedFields is
/// not tracked (only creates start tracking). Call it with the objects as
/// they will be stored (after the strategy reset status/spec). Never fails:
/// unusable input leaves `new` without changes to its fields.
#[allow(clippy::too_many_arguments)]
pub fn record_update(
    old: Option<&Value>,
    new: &mut Value,
    manager: &str,
    operation: &str,
    api_version: &str,
    now: &str,
    subresource: Option<&str>,
    schema: &dyn MergeSchema,
) {
    if !new.is_object()
        || depth_exceeds(new, MAX_INPUT_DEPTH)
        || old.is_some_and(|o| !o.is_object() || depth_exceeds(o, MAX_INPUT_DEPTH))
    {
        return;
    }
    let operation = Operation::parse(operation).unwrap_or(Operation::Update);
    let subresource = subresource.filter(|s| !s.is_empty());
    let new_managed = managed::take_managed_fields(new);
    let mut old_object = old.cloned();
    let old_managed = old_object.as_mut().and_then(managed::take_managed_fields);

    let mut entries = if subresource.is_some() {
        managed::decode(old_managed.as_ref()).unwrap_or_default()
    } else if managed::is_reset_request(new_managed.as_ref()) {
        Vec::new()
    } else {
        match managed::decode(new_managed.as_ref()) {
            Ok(entries) if !entries.is_empty() => entries,
            _ => managed::decode(old_managed.as_ref()).unwrap_or_default(),
        }
    };
    if entries.is_empty() && old.is_some() {
        return;
    }

    let base = old_object.unwrap_or_else(|| Value::Object(Map::new()));
    let mut walker = Walker::new(schema);
    let mut comparison = Comparison::default();
    walker.compare(Some(&base), Some(new), &mut Vec::new(), &mut comparison);
    let comparison = comparison.without(&paths_set(STRIPPED_PATHS), &FieldSet::default());
    let changed = comparison.added.union(&comparison.modified);
    for entry in entries.iter_mut() {
        entry.set = entry
            .set
            .difference(&changed)
            .difference(&comparison.removed);
    }
    if !changed.is_empty() {
        match entries
            .iter()
            .position(|e| e.is(manager, operation, api_version, subresource))
        {
            Some(i) => {
                entries[i].set.union_with(&changed);
                entries[i].api_version = api_version.to_string();
                entries[i].time = Some(now.to_string());
            }
            None => entries.push(ManagerEntry {
                manager: manager.to_string(),
                operation,
                api_version: api_version.to_string(),
                time: Some(now.to_string()),
                subresource: subresource.map(str::to_string),
                set: changed,
            }),
        }
    }
    entries.retain(|e| !e.set.is_empty());
    managed::cap_update_managers(&mut entries);
    managed::store(new, &entries);
}

/// The fieldsV1 of every field of `obj` (less the never-owned metadata), as a
/// manager that created it would own them.
pub fn fields_v1_of(obj: &Value, schema: &dyn MergeSchema) -> Value {
    if depth_exceeds(obj, MAX_INPUT_DEPTH) {
        return Value::Object(Map::new());
    }
    let mut set = FieldSet::default();
    let _ = Walker::new(schema).field_set(obj, &mut Vec::new(), &mut set, false);
    set.difference(&paths_set(STRIPPED_PATHS)).to_fields_v1()
}

fn paths_set(paths: &[&[&str]]) -> FieldSet {
    let mut set = FieldSet::default();
    for path in paths {
        let elements: Vec<PathElement> = path
            .iter()
            .map(|field| PathElement::Field(field.to_string()))
            .collect();
        if !elements.is_empty() {
            set.insert(&elements);
        }
    }
    set
}

/// Puts `live`'s value at `path` (or its absence) back into `object`.
fn restore(object: &mut Value, live: &Value, path: &[&str]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let live_value = parents
        .iter()
        .try_fold(live, |value, field| value.get(*field))
        .and_then(|parent| parent.get(*last))
        .cloned();
    let Some(Value::Object(parent)) = parents
        .iter()
        .try_fold(object, |value, field| value.get_mut(*field))
    else {
        return;
    };
    match live_value {
        Some(value) => {
            parent.insert((*last).to_string(), value);
        }
        None => {
            parent.shift_remove(*last);
        }
    }
}

#[derive(Debug, Default)]
struct Comparison {
    added: FieldSet,
    modified: FieldSet,
    removed: FieldSet,
}

impl Comparison {
    fn without(self, strip: &FieldSet, reset: &FieldSet) -> Comparison {
        let filter = |set: FieldSet| set.difference(strip).recursive_difference(reset);
        Comparison {
            added: filter(self.added),
            modified: filter(self.modified),
            removed: filter(self.removed),
        }
    }
}

enum ListKind {
    Atomic,
    Keyed(Vec<ListMapKey>),
    Set,
}

#[derive(PartialEq, Eq)]
enum Shape {
    Object,
    Array,
    Scalar,
}

fn shape(v: &Value) -> Shape {
    match v {
        Value::Object(_) => Shape::Object,
        Value::Array(_) => Shape::Array,
        _ => Shape::Scalar,
    }
}

fn is_filled_container(v: &Value) -> bool {
    match v {
        Value::Object(map) => !map.is_empty(),
        Value::Array(items) => !items.is_empty(),
        _ => false,
    }
}

fn is_empty_container(v: &Value) -> bool {
    match v {
        Value::Object(map) => map.is_empty(),
        Value::Array(items) => items.is_empty(),
        _ => false,
    }
}

/// The identity of a list item in a keyed list or a set.
fn item_element(item: &Value, kind: &ListKind) -> Result<PathElement, String> {
    match kind {
        ListKind::Keyed(keys) => {
            let Value::Object(map) = item else {
                return Err(
                    "associative list with keys has an element that is not a map".to_string(),
                );
            };
            let mut fields: Vec<(&str, Value)> = Vec::with_capacity(keys.len());
            for key in keys {
                // A null key is as good as none: merging drops null fields.
                match (map.get(key.name).filter(|v| !v.is_null()), key.default) {
                    (Some(value), _) => fields.push((key.name, value.clone())),
                    (None, Some(default)) => {
                        fields.push((key.name, Value::String(default.to_string())));
                    }
                    (None, None) => {
                        return Err(format!(
                            "associative list with keys has an element that omits key field {:?} (and doesn't have default value)",
                            key.name
                        ));
                    }
                }
            }
            let refs: Vec<(&str, &Value)> = fields.iter().map(|(n, v)| (*n, v)).collect();
            Ok(PathElement::key(&refs))
        }
        ListKind::Set => match item {
            Value::Object(_) => {
                Err("associative list without keys has an element that's a map type".to_string())
            }
            Value::Array(_) => {
                Err("associative list without keys has an element that's a list type".to_string())
            }
            scalar => Ok(PathElement::Value(canonical(scalar))),
        },
        ListKind::Atomic => Err("atomic list items have no identity".to_string()),
    }
}

fn list_elements(items: &[Value], kind: &ListKind) -> Result<Vec<PathElement>, (usize, String)> {
    items
        .iter()
        .enumerate()
        .map(|(i, item)| item_element(item, kind).map_err(|e| (i, e)))
        .collect()
}

/// Items of a list with their identities, first occurrence of each only.
fn unique_items(items: &[Value], elements: Vec<PathElement>) -> Vec<(PathElement, &Value)> {
    let mut seen = HashSet::new();
    elements
        .into_iter()
        .zip(items)
        .filter(|(element, _)| seen.insert(element.clone()))
        .collect()
}

/// Walks values with the schema path (field names only) alongside.
struct Walker<'s> {
    schema: &'s dyn MergeSchema,
    schema_path: Vec<String>,
}

impl<'s> Walker<'s> {
    fn new(schema: &'s dyn MergeSchema) -> Self {
        Walker {
            schema,
            schema_path: Vec::new(),
        }
    }

    fn path_refs(&self) -> Vec<&str> {
        self.schema_path.iter().map(String::as_str).collect()
    }

    fn list_kind(&self) -> ListKind {
        let path = self.path_refs();
        match self.schema.list_strategy(&path) {
            Some(ListStrategy::MergeByKey(_)) => {
                let keys = self.schema.list_map_keys(&path);
                if keys.is_empty() {
                    ListKind::Atomic
                } else {
                    ListKind::Keyed(keys)
                }
            }
            Some(ListStrategy::MergePrimitives) => ListKind::Set,
            Some(ListStrategy::Replace) | None => ListKind::Atomic,
        }
    }

    fn atomic_map(&self) -> bool {
        !self.schema_path.is_empty() && self.schema.is_atomic_map(&self.path_refs())
    }

    /// Upstream ToFieldSet: scalars, atomic lists and maps, list items, and
    /// map fields that are null or `{}` are members. `strict` (for applied
    /// configurations) refuses keyed items without keys and duplicates;
    /// otherwise such a list counts as atomic.
    fn field_set(
        &mut self,
        value: &Value,
        path: &mut Vec<PathElement>,
        node: &mut FieldSet,
        strict: bool,
    ) -> Result<(), String> {
        match value {
            Value::Object(map) => {
                if self.atomic_map() {
                    node.member = true;
                    return Ok(());
                }
                for (key, child) in map {
                    let element = PathElement::Field(key.clone());
                    let child_node = node.children.entry(element.clone()).or_default();
                    self.schema_path.push(key.clone());
                    path.push(element);
                    let result = self.field_set(child, path, child_node, strict);
                    path.pop();
                    self.schema_path.pop();
                    result?;
                    if child.is_null() || child.as_object().is_some_and(Map::is_empty) {
                        child_node.member = true;
                    }
                }
                node.children.retain(|_, child| !child.is_empty());
            }
            Value::Array(items) => {
                let kind = self.list_kind();
                if matches!(kind, ListKind::Atomic) {
                    node.member = true;
                    return Ok(());
                }
                let elements = match list_elements(items, &kind) {
                    Ok(elements) => elements,
                    Err((i, e)) if strict => {
                        return Err(format!("{}: element {i}: {e}", path_string(path)));
                    }
                    Err(_) => {
                        node.member = true;
                        node.children.clear();
                        return Ok(());
                    }
                };
                let mut seen = HashSet::new();
                let mut duplicates = HashSet::new();
                for element in &elements {
                    if !seen.insert(element) {
                        if strict {
                            return Err(format!(
                                "{}: duplicate entries for key {}",
                                path_string(path),
                                path_string(std::slice::from_ref(element))
                            ));
                        }
                        duplicates.insert(element.clone());
                    }
                }
                drop(seen);
                for (item, element) in items.iter().zip(elements.iter()) {
                    let child = node.children.entry(element.clone()).or_default();
                    child.member = true;
                    if duplicates.contains(element) || !matches!(kind, ListKind::Keyed(_)) {
                        continue;
                    }
                    path.push(element.clone());
                    let result = self.field_set(item, path, child, strict);
                    path.pop();
                    result?;
                }
            }
            _ => node.member = true,
        }
        Ok(())
    }

    /// Upstream `live.Merge(config)`: config wins on scalars and atomic
    /// values, maps merge key by key (live order, then new keys), keyed lists
    /// and sets merge by identity keeping both sides' relative order. A
    /// `null` in the config removes the field (typed objects cannot hold it).
    fn merge(&mut self, live: Option<&Value>, config: &Value) -> Option<Value> {
        match config {
            Value::Null => None,
            Value::Object(config_map) => {
                if self.atomic_map() {
                    return Some(config.clone());
                }
                let live_map = live.and_then(Value::as_object);
                let mut out = Map::new();
                if let Some(live_map) = live_map {
                    for (key, live_value) in live_map {
                        match config_map.get(key) {
                            Some(config_value) => {
                                self.schema_path.push(key.clone());
                                let merged = self.merge(Some(live_value), config_value);
                                self.schema_path.pop();
                                if let Some(merged) = merged {
                                    out.insert(key.clone(), merged);
                                }
                            }
                            None => {
                                out.insert(key.clone(), live_value.clone());
                            }
                        }
                    }
                }
                for (key, config_value) in config_map {
                    if live_map.is_some_and(|m| m.contains_key(key)) {
                        continue;
                    }
                    self.schema_path.push(key.clone());
                    let merged = self.merge(None, config_value);
                    self.schema_path.pop();
                    if let Some(merged) = merged {
                        out.insert(key.clone(), merged);
                    }
                }
                Some(Value::Object(out))
            }
            Value::Array(config_items) => {
                let kind = self.list_kind();
                if matches!(kind, ListKind::Atomic) {
                    return Some(config.clone());
                }
                let live_items = live
                    .and_then(Value::as_array)
                    .filter(|items| !items.is_empty());
                let Some(live_items) = live_items else {
                    let mut out = Vec::with_capacity(config_items.len());
                    for item in config_items {
                        out.extend(self.merge_item(None, item, &kind));
                    }
                    return Some(Value::Array(out));
                };
                if config_items.is_empty() {
                    return Some(Value::Array(live_items.clone()));
                }
                match (
                    list_elements(live_items, &kind),
                    list_elements(config_items, &kind),
                ) {
                    (Ok(live_elements), Ok(config_elements)) => {
                        let live_pairs = unique_items(live_items, live_elements);
                        let config_pairs = unique_items(config_items, config_elements);
                        Some(Value::Array(self.interleave(
                            &live_pairs,
                            &config_pairs,
                            &kind,
                        )))
                    }
                    _ => Some(config.clone()),
                }
            }
            scalar => Some(scalar.clone()),
        }
    }

    fn merge_item(
        &mut self,
        live: Option<&Value>,
        config: &Value,
        kind: &ListKind,
    ) -> Option<Value> {
        match kind {
            ListKind::Keyed(_) => self.merge(live, config),
            // A null set item is a value, not a field deletion.
            _ => Some(config.clone()),
        }
    }

    /// Upstream's list merge order: shared items in the config's order,
    /// live-only items where they were, config-only items where the config
    /// has them relative to the shared ones.
    fn interleave(
        &mut self,
        live: &[(PathElement, &Value)],
        config: &[(PathElement, &Value)],
        kind: &ListKind,
    ) -> Vec<Value> {
        let live_by: HashMap<&PathElement, &Value> = live.iter().map(|(e, v)| (e, *v)).collect();
        let config_by: HashMap<&PathElement, &Value> =
            config.iter().map(|(e, v)| (e, *v)).collect();
        let mut shared: VecDeque<&PathElement> = config
            .iter()
            .map(|(e, _)| e)
            .filter(|e| live_by.contains_key(e))
            .collect();
        let mut next_shared = shared.pop_front();
        let mut merged_config: HashSet<&PathElement> = HashSet::new();
        let mut out = Vec::with_capacity(live.len().max(config.len()));
        let (mut li, mut ri) = (0, 0);
        while li < live.len() || ri < config.len() {
            if li < live.len() && ri < config.len() {
                let (live_element, live_value) = &live[li];
                let (config_element, config_value) = &config[ri];
                if live_element == config_element {
                    merged_config.insert(config_element);
                    out.extend(self.merge_item(Some(live_value), config_value, kind));
                    li += 1;
                    ri += 1;
                    next_shared = shared.pop_front();
                    continue;
                }
                if config_by.contains_key(live_element)
                    && next_shared.is_some_and(|next| next != live_element)
                {
                    li += 1;
                    continue;
                }
            }
            if let Some((live_element, live_value)) = live.get(li) {
                if !config_by.contains_key(live_element) {
                    out.push((*live_value).clone());
                    li += 1;
                    continue;
                }
                if merged_config.contains(live_element) {
                    li += 1;
                    continue;
                }
            }
            if let Some((config_element, config_value)) = config.get(ri) {
                merged_config.insert(config_element);
                let live_value = live_by.get(config_element).copied();
                out.extend(self.merge_item(live_value, config_value, kind));
                ri += 1;
                if next_shared.is_some_and(|next| next == config_element) {
                    next_shared = shared.pop_front();
                }
                continue;
            }
            // Unreachable in practice; guarantees progress whatever the input.
            li += 1;
        }
        out
    }

    /// Removes from `value` what `last` (the manager's previous apply) had
    /// and nobody owns now (`owned`). A field stays if anyone owns it or
    /// anything below it; a list item stays only if someone owns the item
    /// itself (upstream removes it even when others own fields inside it).
    /// Containers emptied by this are removed too. `protected` are the key
    /// fields of the list item being walked, which are never removed.
    fn prune(
        &mut self,
        value: &mut Value,
        last: &FieldSet,
        owned: Option<&FieldSet>,
        protected: &[&str],
    ) {
        match value {
            Value::Object(map) => {
                for (element, last_child) in &last.children {
                    let PathElement::Field(key) = element else {
                        continue;
                    };
                    if protected.contains(&key.as_str()) {
                        continue;
                    }
                    let owned_child = owned.and_then(|o| o.child(element));
                    let Some(child) = map.get_mut(key) else {
                        continue;
                    };
                    if last_child.member && owned_child.is_none_or(FieldSet::is_empty) {
                        map.shift_remove(key);
                        continue;
                    }
                    if last_child.children.is_empty() {
                        continue;
                    }
                    let was_filled = is_filled_container(child);
                    self.schema_path.push(key.clone());
                    self.prune(child, last_child, owned_child, &[]);
                    self.schema_path.pop();
                    let is_root_metadata = self.schema_path.is_empty() && key == "metadata";
                    if was_filled
                        && is_empty_container(child)
                        && !owned_child.is_some_and(|o| o.member)
                        && !is_root_metadata
                    {
                        map.shift_remove(key);
                    }
                }
            }
            Value::Array(items) => {
                let kind = self.list_kind();
                let key_names: Vec<&str> = match &kind {
                    ListKind::Keyed(keys) => keys.iter().map(|k| k.name).collect(),
                    ListKind::Set => Vec::new(),
                    ListKind::Atomic => return,
                };
                let Ok(elements) = list_elements(items, &kind) else {
                    return;
                };
                let old_items = std::mem::take(items);
                for (mut item, element) in old_items.into_iter().zip(elements) {
                    let Some(last_child) = last.child(&element) else {
                        items.push(item);
                        continue;
                    };
                    let owned_child = owned.and_then(|o| o.child(&element));
                    if last_child.member && !owned_child.is_some_and(|o| o.member) {
                        continue;
                    }
                    if !last_child.children.is_empty() {
                        self.prune(&mut item, last_child, owned_child, &key_names);
                    }
                    items.push(item);
                }
            }
            _ => {}
        }
    }

    /// Upstream `Compare`: leaves (scalars, atomic values, empty containers)
    /// are added / removed / modified; a non-leaf present on one side only
    /// is itself added or removed as well as its contents.
    fn compare(
        &mut self,
        lhs: Option<&Value>,
        rhs: Option<&Value>,
        path: &mut Vec<PathElement>,
        out: &mut Comparison,
    ) {
        if let (Some(l), Some(r)) = (lhs, rhs)
            && shape(l) != shape(r)
        {
            out.modified.insert(path);
            if shape(r) != Shape::Scalar {
                let mut inside = FieldSet::default();
                let _ = self.field_set(r, &mut path.clone(), &mut inside, false);
                inside.member = false;
                if !inside.is_empty() {
                    out.added.node_mut(path).union_with(&inside);
                }
            }
            return;
        }
        let Some(value) = rhs.or(lhs) else {
            return;
        };
        let leaf = match value {
            Value::Object(_) => {
                let left = lhs.and_then(Value::as_object);
                let right = rhs.and_then(Value::as_object);
                if self.atomic_map()
                    || (left.is_none_or(Map::is_empty) && right.is_none_or(Map::is_empty))
                {
                    true
                } else {
                    if let Some(left) = left {
                        for (key, left_value) in left {
                            self.descend_field(
                                key,
                                Some(left_value),
                                right.and_then(|m| m.get(key)),
                                path,
                                out,
                            );
                        }
                    }
                    if let Some(right) = right {
                        for (key, right_value) in right {
                            if !left.is_some_and(|m| m.contains_key(key)) {
                                self.descend_field(key, None, Some(right_value), path, out);
                            }
                        }
                    }
                    false
                }
            }
            Value::Array(_) => {
                let left = lhs.and_then(Value::as_array);
                let right = rhs.and_then(Value::as_array);
                let kind = self.list_kind();
                if matches!(kind, ListKind::Atomic)
                    || (left.is_none_or(Vec::is_empty) && right.is_none_or(Vec::is_empty))
                {
                    true
                } else {
                    let empty: &[Value] = &[];
                    let left = left.map_or(empty, Vec::as_slice);
                    let right = right.map_or(empty, Vec::as_slice);
                    match (list_elements(left, &kind), list_elements(right, &kind)) {
                        (Ok(left_elements), Ok(right_elements)) => {
                            let left_pairs = unique_items(left, left_elements);
                            let right_pairs = unique_items(right, right_elements);
                            let left_by: HashMap<&PathElement, &Value> =
                                left_pairs.iter().map(|(e, v)| (e, *v)).collect();
                            let right_by: HashSet<&PathElement> =
                                right_pairs.iter().map(|(e, _)| e).collect();
                            for (element, right_value) in &right_pairs {
                                path.push(element.clone());
                                self.compare(
                                    left_by.get(element).copied(),
                                    Some(right_value),
                                    path,
                                    out,
                                );
                                path.pop();
                            }
                            for (element, left_value) in &left_pairs {
                                if !right_by.contains(element) {
                                    path.push(element.clone());
                                    self.compare(Some(left_value), None, path, out);
                                    path.pop();
                                }
                            }
                            false
                        }
                        _ => true,
                    }
                }
            }
            _ => true,
        };
        match (leaf, lhs, rhs) {
            (_, None, Some(_)) => out.added.insert(path),
            (_, Some(_), None) => out.removed.insert(path),
            (true, Some(l), Some(r)) if l != r => out.modified.insert(path),
            _ => {}
        }
    }

    fn descend_field(
        &mut self,
        key: &str,
        lhs: Option<&Value>,
        rhs: Option<&Value>,
        path: &mut Vec<PathElement>,
        out: &mut Comparison,
    ) {
        self.schema_path.push(key.to_string());
        path.push(PathElement::Field(key.to_string()));
        self.compare(lhs, rhs, path, out);
        path.pop();
        self.schema_path.pop();
    }
}

#[cfg(test)]
mod tests;
