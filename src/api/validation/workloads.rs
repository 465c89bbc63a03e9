//! Workloads (`pkg/apis/apps/validation`, `pkg/apis/batch/validation` and
//! the ReplicationController part of core): selectors and their match with
//! the template labels, replica counts, strategies, Job and CronJob fields.
//!
//! Owns: workload-level rules and the template's workload-specific rules
//! (restartPolicy, activeDeadlineSeconds). Must not: re-implement pod spec
//! checks (delegates to `pod`).

use serde_json::Value;

use super::cron::parse_standard;
use super::meta::{
    map_selector_matches, selector_is_empty, selector_matches, validate_label_selector,
};
use super::pod::{one_of, validate_pod_template};
use super::{Errs, IS_NEGATIVE, child, get, get_i64, get_str, go, str_or_empty};

/// The template's restartPolicy after defaulting (absent means `Always`).
fn template_restart_policy(template: Option<&Value>) -> &str {
    template
        .and_then(|t| get(t, "spec"))
        .and_then(|s| get_str(s, "restartPolicy"))
        .unwrap_or("Always")
}

fn template_labels(template: Option<&Value>) -> Option<&Value> {
    template
        .and_then(|t| get(t, "metadata"))
        .and_then(|m| get(m, "labels"))
}

/// Selector required, valid and non-empty (meta/v1 selectors).
fn selector_rules(e: &mut Errs, spec: &Value, path: &str, what: &str) {
    let sp = child(path, "selector");
    match get(spec, "selector") {
        None => e.required(&sp, ""),
        Some(sel) => {
            validate_label_selector(e, sel, &sp);
            if selector_is_empty(sel) {
                e.invalid(
                    &sp,
                    go::label_selector(Some(sel)),
                    &format!("empty selector is invalid for {what}"),
                );
            }
        }
    }
}

/// The template labels must match a (non-empty) meta/v1 selector.
fn template_matches_selector(e: &mut Errs, spec: &Value, path: &str) {
    let template = get(spec, "template");
    let labels = template_labels(template);
    let matches = match get(spec, "selector") {
        Some(sel) if !selector_is_empty(sel) => selector_matches(sel, labels),
        Some(_) => true,
        None => false,
    };
    if !matches {
        e.invalid(
            &child(path, "template.metadata.labels"),
            go::string_map(labels),
            "`selector` does not match template `labels`",
        );
    }
}

/// Validates the required `template` under `path`; returns it and its path.
fn checked_template<'a>(e: &mut Errs, spec: &'a Value, path: &str) -> (Option<&'a Value>, String) {
    let template = get(spec, "template");
    let tp = child(path, "template");
    match template {
        None => e.required(&tp, ""),
        Some(t) => validate_pod_template(e, t, &tp, true),
    }
    (template, tp)
}

/// The template's pod spec plus the "must be Always, no deadline" rules of
/// long-running workloads.
fn always_template(e: &mut Errs, spec: &Value, path: &str, owner: &str, dead_line_invalid: bool) {
    let (template, tp) = checked_template(e, spec, path);
    let rp = template_restart_policy(template);
    if rp != "Always" {
        e.not_supported(&child(&tp, "spec.restartPolicy"), go::q(rp), &["Always"]);
    }
    if let Some(ads) = template
        .and_then(|t| get(t, "spec"))
        .and_then(|s| get(s, "activeDeadlineSeconds"))
    {
        let ap = child(&tp, "spec.activeDeadlineSeconds");
        if dead_line_invalid {
            e.invalid(
                &ap,
                go::scalar(Some(ads)),
                "activeDeadlineSeconds must be nil for daemonset",
            );
        } else {
            e.forbidden(
                &ap,
                &format!("activeDeadlineSeconds in {owner} is not Supported"),
            );
        }
    }
}

/// `ValidatePodTemplateSpecForStatefulSet`: upstream checks only the
/// template's labels and annotations (its volumes may be claim templates),
/// then restartPolicy and activeDeadlineSeconds.
fn stateful_set_template(e: &mut Errs, spec: &Value) {
    let template = get(spec, "template");
    match template {
        None => e.required("spec.template", ""),
        Some(t) => {
            if let Some(meta) = get(t, "metadata") {
                super::meta::validate_labels(e, get(meta, "labels"), "spec.template.labels");
                super::meta::validate_annotations(
                    e,
                    get(meta, "annotations"),
                    "spec.template.annotations",
                );
            }
        }
    }
    let rp = template_restart_policy(template);
    if rp != "Always" {
        e.not_supported("spec.template.spec.restartPolicy", go::q(rp), &["Always"]);
    }
    if template
        .and_then(|t| get(t, "spec"))
        .and_then(|s| get(s, "activeDeadlineSeconds"))
        .is_some()
    {
        e.forbidden(
            "spec.template.spec.activeDeadlineSeconds",
            "activeDeadlineSeconds in StatefulSet is not Supported",
        );
    }
}

/// `ValidatePositiveIntOrPercent` plus `IsNotMoreThan100Percent`.
fn int_or_percent(e: &mut Errs, v: Option<&Value>, path: &str, max_100: bool) {
    match v {
        Some(Value::String(s)) => {
            let ok = s
                .strip_suffix('%')
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
            if !ok {
                e.invalid(
                    path,
                    go::int_or_string(v),
                    "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')",
                );
            } else if max_100 && percent_value(v).is_some_and(|p| p > 100) {
                e.invalid(path, go::int_or_string(v), "must not be greater than 100%");
            }
        }
        Some(Value::Number(n)) if n.as_i64().is_some_and(|n| n < 0) => {
            e.invalid(path, n.to_string(), IS_NEGATIVE);
        }
        _ => {}
    }
}

fn percent_value(v: Option<&Value>) -> Option<i64> {
    v.and_then(Value::as_str)
        .and_then(|s| s.strip_suffix('%'))
        .and_then(|n| n.parse().ok())
}

/// `getIntOrPercentValue`: the number, or the percentage number.
fn int_or_percent_value(v: Option<&Value>) -> i64 {
    match v {
        Some(Value::Number(n)) => n.as_i64().unwrap_or(0),
        Some(Value::String(_)) => percent_value(v).unwrap_or(0),
        _ => 0,
    }
}

// ---------------------------------------------------------------------------

pub(super) fn validate_deployment(e: &mut Errs, obj: &Value) {
    let empty = Value::Null;
    let spec = get(obj, "spec").unwrap_or(&empty);
    let p = "spec";
    e.nonnegative("spec.replicas", get_i64(spec, "replicas"));
    selector_rules(e, spec, p, "deployment");
    template_matches_selector(e, spec, p);
    always_template(e, spec, p, "ReplicaSet", false);
    if let Some(strategy) = get(spec, "strategy") {
        let sp = "spec.strategy";
        let rolling = get(strategy, "rollingUpdate");
        match get_str(strategy, "type") {
            Some("Recreate") => {
                if rolling.is_some() {
                    e.forbidden(
                        "spec.strategy.rollingUpdate",
                        "may not be specified when strategy `type` is 'Recreate'",
                    );
                }
            }
            Some("RollingUpdate") | None => {
                if let Some(ru) = rolling {
                    let mu = get(ru, "maxUnavailable");
                    let ms = get(ru, "maxSurge");
                    int_or_percent(e, mu, "spec.strategy.rollingUpdate.maxUnavailable", false);
                    int_or_percent(e, ms, "spec.strategy.rollingUpdate.maxSurge", false);
                    if mu.is_some()
                        && ms.is_some()
                        && int_or_percent_value(mu) == 0
                        && int_or_percent_value(ms) == 0
                    {
                        e.invalid(
                            "spec.strategy.rollingUpdate.maxUnavailable",
                            go::int_or_string(mu),
                            "may not be 0 when `maxSurge` is 0",
                        );
                    }
                    if percent_value(mu).is_some_and(|v| v > 100) {
                        e.invalid(
                            "spec.strategy.rollingUpdate.maxUnavailable",
                            go::int_or_string(mu),
                            "must not be greater than 100%",
                        );
                    }
                }
            }
            Some(other) => e.not_supported(
                sp,
                format!(
                    "apps.DeploymentStrategy{{Type:{}, RollingUpdate:(*apps.RollingUpdateDeployment)(nil)}}",
                    go::q(other)
                ),
                &["Recreate", "RollingUpdate"],
            ),
        }
    }
    let min_ready = get_i64(spec, "minReadySeconds");
    e.nonnegative("spec.minReadySeconds", min_ready);
    e.nonnegative(
        "spec.revisionHistoryLimit",
        get_i64(spec, "revisionHistoryLimit"),
    );
    if let Some(pd) = get_i64(spec, "progressDeadlineSeconds") {
        e.nonnegative("spec.progressDeadlineSeconds", Some(pd));
        if pd <= min_ready.unwrap_or(0) {
            e.invalid(
                "spec.progressDeadlineSeconds",
                pd.to_string(),
                "must be greater than minReadySeconds",
            );
        }
    }
}

pub(super) fn validate_replica_set(e: &mut Errs, obj: &Value) {
    let empty = Value::Null;
    let spec = get(obj, "spec").unwrap_or(&empty);
    e.nonnegative("spec.replicas", get_i64(spec, "replicas"));
    e.nonnegative("spec.minReadySeconds", get_i64(spec, "minReadySeconds"));
    // Upstream's ReplicaSet message also says "deployment".
    selector_rules(e, spec, "spec", "deployment");
    template_matches_selector(e, spec, "spec");
    always_template(e, spec, "spec", "ReplicaSet", false);
}

pub(super) fn validate_stateful_set(e: &mut Errs, obj: &Value) {
    let empty = Value::Null;
    let spec = get(obj, "spec").unwrap_or(&empty);
    if let Some(p) = get_str(spec, "podManagementPolicy") {
        match p {
            "" => e.required("spec.podManagementPolicy", ""),
            "OrderedReady" | "Parallel" => {}
            other => e.invalid(
                "spec.podManagementPolicy",
                go::q(other),
                "must be 'OrderedReady' or 'Parallel'",
            ),
        }
    }
    if let Some(us) = get(spec, "updateStrategy") {
        let rolling = get(us, "rollingUpdate");
        match get_str(us, "type").unwrap_or("RollingUpdate") {
            "OnDelete" => {
                if rolling.is_some() {
                    e.invalid(
                        "spec.updateStrategy.rollingUpdate",
                        "apps.RollingUpdateStatefulSetStrategy{...}",
                        "only allowed for updateStrategy 'RollingUpdate'",
                    );
                }
            }
            "RollingUpdate" => {
                if let Some(ru) = rolling {
                    e.nonnegative(
                        "spec.updateStrategy.rollingUpdate.partition",
                        get_i64(ru, "partition"),
                    );
                    if let Some(mu) = get(ru, "maxUnavailable") {
                        int_or_percent(e, Some(mu), "spec.updateStrategy.rollingUpdate.maxUnavailable", true);
                        if int_or_percent_value(Some(mu)) == 0 {
                            e.invalid(
                                "spec.updateStrategy.rollingUpdate.maxUnavailable",
                                go::int_or_string(Some(mu)),
                                "cannot be 0",
                            );
                        }
                    }
                }
            }
            "" => e.required("spec.updateStrategy", ""),
            other => e.invalid(
                "spec.updateStrategy",
                format!(
                    "apps.StatefulSetUpdateStrategy{{Type:{}, RollingUpdate:(*apps.RollingUpdateStatefulSetStrategy)(nil)}}",
                    go::q(other)
                ),
                "must be 'RollingUpdate' or 'OnDelete'",
            ),
        }
    }
    if let Some(policy) = get(spec, "persistentVolumeClaimRetentionPolicy") {
        for k in ["whenDeleted", "whenScaled"] {
            if let Some(v) = get_str(policy, k) {
                one_of(
                    e,
                    &format!("spec.persistentVolumeClaimRetentionPolicy.{k}"),
                    v,
                    &["Retain", "Delete"],
                );
            }
        }
    }
    e.nonnegative("spec.replicas", get_i64(spec, "replicas"));
    e.nonnegative("spec.minReadySeconds", get_i64(spec, "minReadySeconds"));
    if let Some(o) = get(spec, "ordinals") {
        e.nonnegative("spec.ordinals.start", get_i64(o, "start"));
    }
    selector_rules(e, spec, "spec", "statefulset");
    template_matches_selector(e, spec, "spec");
    stateful_set_template(e, spec);
    for (i, t) in super::get_arr(spec, "volumeClaimTemplates")
        .iter()
        .enumerate()
    {
        let tp = super::index("spec.volumeClaimTemplates", i);
        let name = get(t, "metadata")
            .map(|m| str_or_empty(m, "name"))
            .unwrap_or("");
        if name.is_empty() {
            e.required(
                &child(&tp, "metadata.name"),
                "name or generateName is required",
            );
        } else {
            e.invalid_each(
                &child(&tp, "metadata.name"),
                name,
                super::names::dns1123_subdomain_errors(name),
            );
        }
        if let Some(s) = get(t, "spec") {
            super::core_kinds::validate_pvc_spec(e, s, &child(&tp, "spec"));
        }
    }
}

pub(super) fn validate_daemon_set(e: &mut Errs, obj: &Value) {
    let empty = Value::Null;
    let spec = get(obj, "spec").unwrap_or(&empty);
    selector_rules(e, spec, "spec", "daemonset");
    template_matches_selector(e, spec, "spec");
    always_template(e, spec, "spec", "DaemonSet", true);
    e.nonnegative("spec.minReadySeconds", get_i64(spec, "minReadySeconds"));
    e.nonnegative(
        "spec.templateGeneration",
        get_i64(spec, "templateGeneration"),
    );
    e.nonnegative(
        "spec.revisionHistoryLimit",
        get_i64(spec, "revisionHistoryLimit"),
    );
    if let Some(us) = get(spec, "updateStrategy") {
        match get_str(us, "type").unwrap_or("RollingUpdate") {
            "OnDelete" => {}
            "RollingUpdate" => {
                if let Some(ru) = get(us, "rollingUpdate") {
                    let rp = "spec.updateStrategy.rollingUpdate";
                    let mu = get(ru, "maxUnavailable");
                    let ms = get(ru, "maxSurge");
                    int_or_percent(e, mu, &child(rp, "maxUnavailable"), true);
                    int_or_percent(e, ms, &child(rp, "maxSurge"), true);
                    let has_unavailable = int_or_percent_value(mu) != 0;
                    let has_surge = int_or_percent_value(ms) != 0;
                    // Absent fields are defaulted (maxUnavailable 1, maxSurge 0).
                    if mu.is_some() || ms.is_some() {
                        let has_unavailable = has_unavailable || mu.is_none();
                        if has_unavailable && has_surge {
                            e.invalid(
                                &child(rp, "maxSurge"),
                                go::int_or_string(ms),
                                "may not be set when maxUnavailable is non-zero",
                            );
                        } else if !has_unavailable && !has_surge {
                            e.required(
                                &child(rp, "maxUnavailable"),
                                "cannot be 0 when maxSurge is 0",
                            );
                        }
                    }
                }
            }
            other => e.not_supported(
                "spec.updateStrategy",
                format!(
                    "apps.DaemonSetUpdateStrategy{{Type:{}, RollingUpdate:(*apps.RollingUpdateDaemonSet)(nil)}}",
                    go::q(other)
                ),
                &["RollingUpdate", "OnDelete"],
            ),
        }
    }
}

pub(super) fn validate_rc(e: &mut Errs, obj: &Value) {
    let empty = Value::Null;
    let spec = get(obj, "spec").unwrap_or(&empty);
    e.nonnegative("spec.minReadySeconds", get_i64(spec, "minReadySeconds"));
    let template = get(spec, "template");
    // An absent selector defaults to the template's labels.
    let selector = get(spec, "selector").or_else(|| template_labels(template));
    let selector_empty = selector
        .and_then(Value::as_object)
        .is_none_or(|m| m.is_empty());
    if selector_empty {
        e.required("spec.selector", "");
    }
    e.nonnegative("spec.replicas", get_i64(spec, "replicas"));
    if let Some(sel) = selector
        && !selector_empty
    {
        super::meta::validate_labels(e, Some(sel), "spec.selector");
        let labels = template_labels(template);
        if template.is_some() && !map_selector_matches(sel, labels) {
            e.invalid(
                "spec.template.metadata.labels",
                go::string_map(labels),
                "`selector` does not match template `labels`",
            );
        }
    }
    always_template(e, spec, "spec", "ReplicationController", false);
}

pub(super) fn validate_controller_revision(e: &mut Errs, obj: &Value) {
    e.nonnegative("revision", get_i64(obj, "revision"));
}

// ---------------------------------------------------------------------------
// Jobs

pub(super) fn validate_job(e: &mut Errs, obj: &Value) {
    let empty = Value::Null;
    let spec = get(obj, "spec").unwrap_or(&empty);
    // The server generates the selector unless `manualSelector` is set.
    let manual = super::get_bool(spec, "manualSelector") == Some(true);
    validate_job_spec(e, spec, "spec", manual);
}

/// `validateJobSpec` at `path`. `selector_required` only with a manual
/// selector: otherwise the registry generates it (and, inside a CronJob's
/// jobTemplate, the Job's registry does later).
fn validate_job_spec(e: &mut Errs, spec: &Value, path: &str, selector_required: bool) {
    let sp = child(path, "selector");
    match get(spec, "selector") {
        None => {
            if selector_required {
                e.required(&sp, "");
            }
        }
        Some(sel) => {
            validate_label_selector(e, sel, &sp);
            let labels = template_labels(get(spec, "template"));
            if !selector_matches(sel, labels) {
                e.invalid(
                    &child(path, "template.metadata.labels"),
                    go::string_map(labels),
                    "`selector` does not match template `labels`",
                );
            }
        }
    }
    for k in [
        "parallelism",
        "completions",
        "activeDeadlineSeconds",
        "backoffLimit",
        "ttlSecondsAfterFinished",
        "backoffLimitPerIndex",
        "maxFailedIndexes",
    ] {
        e.nonnegative(&child(path, k), get_i64(spec, k));
    }
    if let Some(mode) = get_str(spec, "completionMode") {
        if mode != "NonIndexed" && mode != "Indexed" {
            e.not_supported(
                &child(path, "completionMode"),
                go::q(mode),
                &["NonIndexed", "Indexed"],
            );
        }
        if mode == "Indexed" && get(spec, "completions").is_none() {
            e.required(
                &child(path, "completions"),
                "when completion mode is Indexed",
            );
        }
    }
    if let Some(p) = get_str(spec, "podReplacementPolicy") {
        one_of(
            e,
            &child(path, "podReplacementPolicy"),
            p,
            &["Failed", "TerminatingOrFailed"],
        );
    }
    let (template, tp) = checked_template(e, spec, path);
    let rp = template_restart_policy(template);
    if rp != "OnFailure" && rp != "Never" {
        e.required(
            &child(&tp, "spec.restartPolicy"),
            "valid values: \"OnFailure\", \"Never\"",
        );
    }
}

pub(super) fn validate_cron_job(e: &mut Errs, obj: &Value) {
    let empty = Value::Null;
    let spec = get(obj, "spec").unwrap_or(&empty);
    let schedule = str_or_empty(spec, "schedule");
    if schedule.is_empty() {
        e.required("spec.schedule", "");
    } else {
        if let Err(msg) = parse_standard(schedule) {
            e.invalid("spec.schedule", go::q(schedule), &msg);
        }
        if schedule.contains("TZ") {
            e.invalid(
                "spec.schedule",
                go::q(schedule),
                "cannot use TZ or CRON_TZ in schedule, use timeZone field instead",
            );
        }
    }
    e.nonnegative(
        "spec.startingDeadlineSeconds",
        get_i64(spec, "startingDeadlineSeconds"),
    );
    if let Some(tz) = get_str(spec, "timeZone") {
        validate_time_zone(e, tz, "spec.timeZone");
    }
    if let Some(p) = get_str(spec, "concurrencyPolicy") {
        one_of(
            e,
            "spec.concurrencyPolicy",
            p,
            &["Allow", "Forbid", "Replace"],
        );
    }
    match get(spec, "jobTemplate") {
        None => e.required("spec.jobTemplate", ""),
        Some(jt) => {
            if let Some(meta) = get(jt, "metadata") {
                super::meta::validate_labels(
                    e,
                    get(meta, "labels"),
                    "spec.jobTemplate.metadata.labels",
                );
                super::meta::validate_annotations(
                    e,
                    get(meta, "annotations"),
                    "spec.jobTemplate.metadata.annotations",
                );
            }
            let js = get(jt, "spec").unwrap_or(&empty);
            validate_job_spec(e, js, "spec.jobTemplate.spec", false);
        }
    }
    e.nonnegative(
        "spec.successfulJobsHistoryLimit",
        get_i64(spec, "successfulJobsHistoryLimit"),
    );
    e.nonnegative(
        "spec.failedJobsHistoryLimit",
        get_i64(spec, "failedJobsHistoryLimit"),
    );
}

/// `validateTimeZone`, without the time zone database: the syntax of an
/// IANA name (each `/` part `[A-Za-z.\-_0-9+]{1,14}`, not `.`/`..`, not
/// starting with `-`) and not `Local`.
fn validate_time_zone(e: &mut Errs, tz: &str, path: &str) {
    if tz.is_empty() {
        e.invalid(path, go::q(tz), "timeZone must be nil or non-empty string");
        return;
    }
    for part in tz.split('/') {
        let chars_ok = !part.is_empty()
            && part.len() <= 14
            && part
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'+'));
        if part == "." || part == ".." || part.starts_with('-') || !chars_ok {
            e.invalid(path, go::q(tz), &format!("unknown time zone {tz}"));
            return;
        }
    }
    if tz.eq_ignore_ascii_case("Local") {
        e.invalid(
            path,
            go::q(tz),
            "timeZone must be an explicit time zone as defined in https://www.iana.org/time-zones",
        );
    }
}
