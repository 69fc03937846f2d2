//! Which fields are written (`-f`), and the default-mode rules that pick module, fields,
//! header and filter from the command line.

use crate::error::InputError;
use crate::fields::Schema;
use crate::filter::Filter;

/// The input name of field-selection errors.
pub const FIELDS_INPUT: &str = "--output-fields";

/// Field names of the ZMap 1 documentation's examples (`-f "response,saddr,daddr,sport,seq,ack,
/// in_cooldown,is_repeat,timestamp"`), as aliases of today's names.
const LEGACY_ALIASES: &[(&str, &str)] = &[
    ("response", "classification"),
    ("seq", "seqnum"),
    ("ack", "acknum"),
    ("in_cooldown", "cooldown"),
    ("is_repeat", "repeat"),
    ("timestamp", "timestamp_str"),
];

/// Looks a field up by name: the schema's own names (and the hyphenated spellings
/// [`Schema::index_of`] accepts) first, then the ZMap 1 documentation's names (`response`,
/// `seq`, `ack`, `in_cooldown`, `is_repeat`, `timestamp`) when the schema has no such field.
pub fn lookup_field(schema: &Schema, name: &str) -> Option<usize> {
    schema.index_of(name).or_else(|| {
        let canon = name.replace('-', "_");
        LEGACY_ALIASES
            .iter()
            .find(|(old, _)| *old == canon)
            .and_then(|(_, new)| schema.index_of(new))
    })
}

/// The ordered list of schema fields an output module writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldSelection {
    indices: Vec<usize>,
}

impl FieldSelection {
    /// Parses a `-f` value: comma-separated field names in the order to write them, or `*`
    /// for every field of the schema. Names may use the hyphenated aliases
    /// [`Schema::index_of`] accepts; blanks around names are ignored.
    pub fn parse(spec: &str, schema: &Schema) -> Result<Self, InputError> {
        if spec.trim() == "*" {
            return Ok(Self::all(schema));
        }
        let mut indices = Vec::new();
        let mut pos = 0;
        for part in spec.split(',') {
            let lead = part.len() - part.trim_start().len();
            let column = spec[..pos + lead].chars().count() + 1;
            let name = part.trim();
            if name.is_empty() {
                return Err(InputError::at_column(
                    FIELDS_INPUT,
                    column,
                    format!("empty field name (valid fields: {})", schema.names()),
                ));
            }
            if name == "*" {
                return Err(InputError::at_column(
                    FIELDS_INPUT,
                    column,
                    "\"*\" selects every field and must stand alone",
                ));
            }
            let Some(i) = lookup_field(schema, name) else {
                return Err(InputError::at_column(
                    FIELDS_INPUT,
                    column,
                    format!("unknown field \"{name}\" (valid fields: {})", schema.names()),
                ));
            };
            if indices.contains(&i) {
                return Err(InputError::at_column(
                    FIELDS_INPUT,
                    column,
                    format!("field \"{name}\" is selected twice"),
                ));
            }
            indices.push(i);
            pos += part.len() + 1;
        }
        Ok(Self { indices })
    }

    /// Every field of the schema, in schema order.
    pub fn all(schema: &Schema) -> Self {
        Self { indices: (0..schema.len()).collect() }
    }

    /// The selected schema indices, in output order.
    pub fn indices(&self) -> &[usize] {
        &self.indices
    }

    /// The canonical names of the selected fields, in output order.
    pub fn names<'s>(&'s self, schema: &'s Schema) -> impl Iterator<Item = &'static str> + 's {
        self.indices.iter().filter_map(|&i| schema.get(i).map(|f| f.name))
    }
}

/// The output options of the command line, as given (`None` = not given).
#[derive(Clone, Copy, Debug, Default)]
pub struct OutputRequest<'a> {
    /// `-O` / `--output-module`.
    pub module: Option<&'a str>,
    /// `-f` / `--output-fields`.
    pub fields: Option<&'a str>,
    /// `--output-filter`.
    pub filter: Option<&'a str>,
    /// `--no-header-row`.
    pub no_header_row: bool,
    /// How many target ports the scan has (`-p`).
    pub port_count: usize,
    /// The probe module has dynamic (repeated or nested) output and so needs `-O json`.
    pub module_requires_json: bool,
}

/// What the scan writes, resolved from an [`OutputRequest`].
#[derive(Clone, Debug)]
pub struct OutputPlan {
    /// Output module name (from the registry).
    pub module: &'static str,
    /// Fields to write, in order.
    pub fields: FieldSelection,
    /// Whether csv writes a header row.
    pub header: bool,
    /// The compiled `--output-filter` (accepts everything when none was given).
    pub filter: Filter,
    /// ZMap's default mode: the receive path itself drops unsuccessful and repeat responses
    /// (not through the filter).
    pub default_mode: bool,
}

/// Applies ZMap's output rules: when none of `-O`, `-f`, `--output-filter` is given (default
/// mode) the output is csv, field `saddr` (`saddr,sport` with several ports), no header, and
/// only successful first responses. Otherwise the module defaults to csv, the fields to the
/// same default list, the header is on unless `--no-header-row`, and the filter decides.
pub fn plan_output(req: &OutputRequest<'_>, schema: &Schema) -> Result<OutputPlan, InputError> {
    let default_mode = req.module.is_none() && req.fields.is_none() && req.filter.is_none();
    let module = match req.module {
        None => "csv",
        Some(name) => {
            super::find_module(name)
                .ok_or_else(|| {
                    InputError::new(
                        "--output-module",
                        format!(
                            "unknown output module \"{name}\" (available: {})",
                            super::module_names().join(", ")
                        ),
                    )
                })?
                .name
        }
    };
    if req.module_requires_json && module != "json" {
        return Err(InputError::new(
            "--output-module",
            format!(
                "the probe module's output is dynamic (repeated or nested fields) and needs -O json, not {module}"
            ),
        ));
    }
    let fields = match req.fields {
        Some(spec) => FieldSelection::parse(spec, schema)?,
        None => {
            let spec = if req.port_count > 1 { "saddr,sport" } else { "saddr" };
            // `sport` is missing from modules without ports: fall back to `saddr` alone.
            FieldSelection::parse(spec, schema)
                .or_else(|_| FieldSelection::parse("saddr", schema))?
        }
    };
    let filter = match req.filter {
        Some(expr) => Filter::compile(expr, schema)?,
        None => Filter::accept_all(),
    };
    Ok(OutputPlan {
        module,
        fields,
        header: !default_mode && !req.no_header_row,
        filter,
        default_mode,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fields::{FieldDef, FieldType};

    fn schema() -> Schema {
        Schema::for_module(&[
            FieldDef::new("sport", FieldType::Int, "TCP source port"),
            FieldDef::new("success", FieldType::Bool, "success"),
        ])
    }

    #[test]
    fn parses_in_given_order_with_aliases_and_star() {
        let s = schema();
        let f = FieldSelection::parse("sport, saddr,timestamp-str", &s).unwrap();
        assert_eq!(f.names(&s).collect::<Vec<_>>(), ["sport", "saddr", "timestamp_str"]);
        let all = FieldSelection::parse(" * ", &s).unwrap();
        assert_eq!(all.indices().len(), s.len());
        assert_eq!(all.names(&s).next(), Some("saddr"));
    }

    #[test]
    fn documented_zmap1_names_are_aliases() {
        let s = Schema::for_module(&[
            FieldDef::new("sport", FieldType::Int, "TCP source port"),
            FieldDef::new("seqnum", FieldType::Int, "TCP sequence number"),
            FieldDef::new("acknum", FieldType::Int, "TCP acknowledgement number"),
            FieldDef::new("classification", FieldType::Str, "packet classification"),
        ]);
        let f = FieldSelection::parse(
            "response,saddr,daddr,sport,seq,ack,in_cooldown,is_repeat,timestamp",
            &s,
        )
        .unwrap();
        assert_eq!(
            f.names(&s).collect::<Vec<_>>(),
            [
                "classification",
                "saddr",
                "daddr",
                "sport",
                "seqnum",
                "acknum",
                "cooldown",
                "repeat",
                "timestamp_str"
            ]
        );
        // a module's own field wins over an alias (icmp_echoscan has `seq`)
        let icmp = Schema::for_module(&[FieldDef::new("seq", FieldType::Int, "ICMP sequence")]);
        assert_eq!(lookup_field(&icmp, "seq"), icmp.index_of("seq"));
        assert_eq!(lookup_field(&icmp, "ack"), None);
    }

    #[test]
    fn errors_list_fields_and_name_the_column() {
        let s = schema();
        let e = FieldSelection::parse("saddr,bogus", &s).unwrap_err().to_string();
        assert!(
            e.starts_with(
                "--output-fields: column 7: unknown field \"bogus\" (valid fields: saddr, saddr_raw"
            ),
            "{e}"
        );
        assert!(e.contains("sport, success, repeat"), "{e}");
        let e = FieldSelection::parse("saddr,,sport", &s).unwrap_err().to_string();
        assert!(e.starts_with("--output-fields: column 7: empty field name"), "{e}");
        let e = FieldSelection::parse("saddr, saddr", &s).unwrap_err().to_string();
        assert!(
            e.starts_with("--output-fields: column 8: field \"saddr\" is selected twice"),
            "{e}"
        );
        let e = FieldSelection::parse("saddr,*", &s).unwrap_err().to_string();
        assert!(e.contains("column 7") && e.contains("must stand alone"), "{e}");
        assert!(FieldSelection::parse("", &s).is_err());
    }

    #[test]
    fn default_mode_rules() {
        let s = schema();
        let p = plan_output(&OutputRequest { port_count: 1, ..Default::default() }, &s).unwrap();
        assert!(p.default_mode && !p.header && p.module == "csv" && p.filter.is_accept_all());
        assert_eq!(p.fields.names(&s).collect::<Vec<_>>(), ["saddr"]);
        let p = plan_output(&OutputRequest { port_count: 3, ..Default::default() }, &s).unwrap();
        assert!(p.default_mode);
        assert_eq!(p.fields.names(&s).collect::<Vec<_>>(), ["saddr", "sport"]);
        // --no-header-row alone keeps default mode
        let p = plan_output(
            &OutputRequest { port_count: 1, no_header_row: true, ..Default::default() },
            &s,
        )
        .unwrap();
        assert!(p.default_mode && !p.header);
    }

    #[test]
    fn any_of_o_f_filter_leaves_default_mode() {
        let s = schema();
        for req in [
            OutputRequest { module: Some("csv"), ..Default::default() },
            OutputRequest { fields: Some("saddr"), ..Default::default() },
            OutputRequest { filter: Some(""), ..Default::default() },
        ] {
            let p = plan_output(&req, &s).unwrap();
            assert!(!p.default_mode && p.header, "{req:?}");
            assert_eq!(p.fields.names(&s).collect::<Vec<_>>(), ["saddr"]);
        }
        let p = plan_output(
            &OutputRequest {
                module: Some("json"),
                no_header_row: true,
                filter: Some("sport = 80"),
                ..Default::default()
            },
            &s,
        )
        .unwrap();
        assert!(!p.default_mode && !p.header && p.module == "json" && !p.filter.is_accept_all());
    }

    #[test]
    fn plan_errors() {
        let s = schema();
        let e = plan_output(&OutputRequest { module: Some("xml"), ..Default::default() }, &s)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "--output-module: unknown output module \"xml\" (available: csv, json, redis)"
        );
        let e =
            plan_output(&OutputRequest { module_requires_json: true, ..Default::default() }, &s)
                .unwrap_err()
                .to_string();
        assert!(e.contains("needs -O json"), "{e}");
        assert!(
            plan_output(
                &OutputRequest {
                    module: Some("json"),
                    module_requires_json: true,
                    ..Default::default()
                },
                &s
            )
            .is_ok()
        );
        let e = plan_output(&OutputRequest { filter: Some("ttl >"), ..Default::default() }, &s)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("--output-filter: column 6"), "{e}");
        // default fields without sport in the schema
        let icmp = Schema::for_module(&[FieldDef::new("type", FieldType::Int, "t")]);
        let p = plan_output(&OutputRequest { port_count: 2, ..Default::default() }, &icmp).unwrap();
        assert_eq!(p.fields.names(&icmp).collect::<Vec<_>>(), ["saddr"]);
    }
}
