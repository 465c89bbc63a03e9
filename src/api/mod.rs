//! The API model, free of HTTP: the kinds table, selectors, per-kind
//! defaulting/validation/tables, patch algorithms, protobuf decoding,
//! CRD schemas and OpenAPI documents. Pure functions over JSON values.

pub mod convert;
pub mod crd_schema;
pub mod defaults;
pub mod kinds;
pub mod openapi;
pub mod patch;
pub mod protobuf;
pub mod quantity;
pub mod selector;
pub mod table;
pub mod typed;
pub mod validation;
