//! Sets of field paths, as structured-merge-diff models them, and their
//! `fieldsV1` wire format: `f:<field>`, `k:{"name":"x"}` for an item of a keyed
//! list, `v:"value"` for an item of a set, `i:<n>` for an index, `.` for a
//! path that is itself in the set and also has children. Also the
//! `.spec.containers[name="x"].image` text used in conflict messages.
//! Must not: know about objects, schemas or managers; recursion is bounded by
//! the depth of the (already depth-checked) values the sets come from.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::canonical;

/// One step of a field path. The derived order (fields, then keys, then
/// values, then indices; each by text) is the order fieldsV1 is written in.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum PathElement {
    Field(String),
    /// Canonical JSON object of the key fields, sorted by name.
    Key(String),
    /// Canonical JSON of a set item.
    Value(String),
    Index(i64),
}

impl PathElement {
    pub(crate) fn key(fields: &[(&str, &Value)]) -> PathElement {
        let mut sorted: Vec<(&str, &Value)> = fields.to_vec();
        sorted.sort_by(|a, b| a.0.cmp(b.0));
        let mut out = String::from("{");
        for (i, (name, value)) in sorted.into_iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(&Value::String(name.to_string()).to_string());
            out.push(':');
            out.push_str(&canonical(value));
        }
        out.push('}');
        PathElement::Key(out)
    }

    fn encode(&self) -> String {
        match self {
            PathElement::Field(name) => format!("f:{name}"),
            PathElement::Key(key) => format!("k:{key}"),
            PathElement::Value(value) => format!("v:{value}"),
            PathElement::Index(index) => format!("i:{index}"),
        }
    }

    fn decode(text: &str) -> Result<PathElement, String> {
        let (kind, rest) = text
            .split_once(':')
            .ok_or_else(|| format!("invalid path element {text:?}"))?;
        match kind {
            "f" => Ok(PathElement::Field(rest.to_string())),
            "k" => match serde_json::from_str::<Value>(rest) {
                Ok(Value::Object(map)) => {
                    let fields: Vec<(&str, &Value)> =
                        map.iter().map(|(k, v)| (k.as_str(), v)).collect();
                    Ok(PathElement::key(&fields))
                }
                _ => Err(format!("invalid key path element {text:?}")),
            },
            "v" => serde_json::from_str::<Value>(rest)
                .map(|v| PathElement::Value(canonical(&v)))
                .map_err(|_| format!("invalid value path element {text:?}")),
            "i" => rest
                .parse()
                .map(PathElement::Index)
                .map_err(|_| format!("invalid index path element {text:?}")),
            _ => Err(format!("invalid path element {text:?}")),
        }
    }

    /// Upstream's `PathElement.String()`: `.name`, `[k=v,k2=v2]`, `[=v]`, `[3]`.
    fn write_display(&self, out: &mut String) {
        match self {
            PathElement::Field(name) => {
                out.push('.');
                out.push_str(name);
            }
            PathElement::Key(key) => {
                out.push('[');
                if let Ok(Value::Object(fields)) = serde_json::from_str::<Value>(key) {
                    let parts: Vec<String> =
                        fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    out.push_str(&parts.join(","));
                }
                out.push(']');
            }
            PathElement::Value(value) => {
                out.push_str("[=");
                out.push_str(value);
                out.push(']');
            }
            PathElement::Index(index) => out.push_str(&format!("[{index}]")),
        }
    }
}

/// `.spec.template.spec.containers[name="nginx"].image`
pub(crate) fn path_string(path: &[PathElement]) -> String {
    let mut out = String::new();
    for element in path {
        element.write_display(&mut out);
    }
    out
}

/// A set of paths stored as a trie: each node is a path; `member` says the
/// path itself is in the set. Empty non-member nodes are never kept.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct FieldSet {
    pub(crate) member: bool,
    pub(crate) children: BTreeMap<PathElement, FieldSet>,
}

impl FieldSet {
    pub(crate) fn is_empty(&self) -> bool {
        !self.member && self.children.values().all(FieldSet::is_empty)
    }

    pub(crate) fn insert(&mut self, path: &[PathElement]) {
        self.node_mut(path).member = true;
    }

    /// The node for `path`, created if missing.
    pub(crate) fn node_mut(&mut self, path: &[PathElement]) -> &mut FieldSet {
        let mut node = self;
        for element in path {
            node = node.children.entry(element.clone()).or_default();
        }
        node
    }

    pub(crate) fn child(&self, element: &PathElement) -> Option<&FieldSet> {
        self.children.get(element)
    }

    pub(crate) fn union_with(&mut self, other: &FieldSet) {
        self.member |= other.member;
        for (element, theirs) in &other.children {
            self.children
                .entry(element.clone())
                .or_default()
                .union_with(theirs);
        }
    }

    pub(crate) fn union(&self, other: &FieldSet) -> FieldSet {
        let mut out = self.clone();
        out.union_with(other);
        out
    }

    /// Paths in `self` that are not in `other` (exact paths: a member of
    /// `other` does not remove `self`'s paths below it).
    pub(crate) fn difference(&self, other: &FieldSet) -> FieldSet {
        let mut out = FieldSet {
            member: self.member && !other.member,
            children: BTreeMap::new(),
        };
        for (element, mine) in &self.children {
            let child = match other.children.get(element) {
                Some(theirs) => mine.difference(theirs),
                None => mine.clone(),
            };
            if !child.is_empty() {
                out.children.insert(element.clone(), child);
            }
        }
        out
    }

    /// Paths in `self` that are neither in `other` nor below a member of it.
    pub(crate) fn recursive_difference(&self, other: &FieldSet) -> FieldSet {
        if other.member {
            return FieldSet::default();
        }
        let mut out = FieldSet {
            member: self.member,
            children: BTreeMap::new(),
        };
        for (element, mine) in &self.children {
            let child = match other.children.get(element) {
                Some(theirs) => mine.recursive_difference(theirs),
                None => mine.clone(),
            };
            if !child.is_empty() {
                out.children.insert(element.clone(), child);
            }
        }
        out
    }

    pub(crate) fn intersection(&self, other: &FieldSet) -> FieldSet {
        let mut out = FieldSet {
            member: self.member && other.member,
            children: BTreeMap::new(),
        };
        for (element, mine) in &self.children {
            if let Some(theirs) = other.children.get(element) {
                let child = mine.intersection(theirs);
                if !child.is_empty() {
                    out.children.insert(element.clone(), child);
                }
            }
        }
        out
    }

    /// Every member path, parents before children, siblings in set order.
    pub(crate) fn paths(&self) -> Vec<Vec<PathElement>> {
        let mut out = Vec::new();
        let mut prefix = Vec::new();
        self.collect_paths(&mut prefix, &mut out);
        out
    }

    fn collect_paths(&self, prefix: &mut Vec<PathElement>, out: &mut Vec<Vec<PathElement>>) {
        if self.member {
            out.push(prefix.clone());
        }
        for (element, child) in &self.children {
            prefix.push(element.clone());
            child.collect_paths(prefix, out);
            prefix.pop();
        }
    }

    pub(crate) fn to_fields_v1(&self) -> Value {
        Value::Object(self.encode())
    }

    fn encode(&self) -> Map<String, Value> {
        let mut out = Map::new();
        if self.member && self.children.values().any(|c| !c.is_empty()) {
            out.insert(".".to_string(), Value::Object(Map::new()));
        }
        for (element, child) in &self.children {
            if !child.is_empty() {
                out.insert(element.encode(), Value::Object(child.encode()));
            }
        }
        out
    }

    /// Parses a `fieldsV1` object. A key whose value is `{}` is a member
    /// leaf; `.` marks a member that also has children.
    pub(crate) fn from_fields_v1(value: &Value) -> Result<FieldSet, String> {
        let Value::Object(map) = value else {
            return Err("fieldsV1 must be a JSON object".to_string());
        };
        let mut out = FieldSet::default();
        for (key, child_value) in map {
            if key == "." {
                out.member = true;
                continue;
            }
            let element = PathElement::decode(key)?;
            let mut child = FieldSet::from_fields_v1(child_value)?;
            if child_value.as_object().is_some_and(Map::is_empty) {
                child.member = true;
            }
            out.children.entry(element).or_default().union_with(&child);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn field(name: &str) -> PathElement {
        PathElement::Field(name.to_string())
    }

    #[test]
    fn fields_v1_round_trip_and_order() {
        let v1 = json!({
            "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
            "f:spec": {
                "f:containers": {
                    "k:{\"name\":\"nginx\"}": {".": {}, "f:image": {}, "f:name": {},
                        "f:ports": {"k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {".": {}, "f:containerPort": {}}}}
                },
                "f:replicas": {}
            },
            "f:finalizers": {"v:\"a\"": {}}
        });
        let set = FieldSet::from_fields_v1(&v1).unwrap();
        let back = set.to_fields_v1();
        assert_eq!(back, v1);
        let order: Vec<&String> = back.as_object().unwrap().keys().collect();
        assert_eq!(order, vec!["f:finalizers", "f:metadata", "f:spec"]);
        let strings: Vec<String> = set.paths().iter().map(|p| path_string(p)).collect();
        assert_eq!(
            strings,
            vec![
                ".finalizers[=\"a\"]",
                ".metadata.labels",
                ".metadata.labels.app",
                ".spec.containers[name=\"nginx\"]",
                ".spec.containers[name=\"nginx\"].image",
                ".spec.containers[name=\"nginx\"].name",
                ".spec.containers[name=\"nginx\"].ports[containerPort=80,protocol=\"TCP\"]",
                ".spec.containers[name=\"nginx\"].ports[containerPort=80,protocol=\"TCP\"].containerPort",
                ".spec.replicas",
            ]
        );
    }

    #[test]
    fn key_elements_are_canonical() {
        let a =
            FieldSet::from_fields_v1(&json!({"k:{\"protocol\":\"TCP\",\"containerPort\":80}": {}}))
                .unwrap();
        let b =
            FieldSet::from_fields_v1(&json!({"k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {}}))
                .unwrap();
        assert_eq!(a, b);
        for bad in [
            json!({"x:1": {}}),
            json!({"k:[1]": {}}),
            json!({"f:a": 1}),
            json!({"i:x": {}}),
            json!([]),
        ] {
            assert!(FieldSet::from_fields_v1(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn set_algebra() {
        let mut a = FieldSet::default();
        a.insert(&[field("spec"), field("replicas")]);
        a.insert(&[field("spec"), field("paused")]);
        a.insert(&[field("status")]);
        let mut b = FieldSet::default();
        b.insert(&[field("spec"), field("replicas")]);
        b.insert(&[field("status"), field("x")]);

        let inter = a.intersection(&b);
        assert_eq!(inter.paths(), vec![vec![field("spec"), field("replicas")]]);
        let diff = a.difference(&b);
        assert_eq!(
            diff.paths(),
            vec![vec![field("spec"), field("paused")], vec![field("status")]]
        );
        let mut status = FieldSet::default();
        status.insert(&[field("status")]);
        assert_eq!(
            b.recursive_difference(&status).paths(),
            vec![vec![field("spec"), field("replicas")]]
        );
        assert_eq!(b.difference(&status), b);
        assert!(a.difference(&a).is_empty());
        assert_eq!(a.union(&b).paths().len(), 4);
    }
}
