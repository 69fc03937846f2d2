//! `--list-probe-modules`, `--list-output-modules`, `--list-output-fields`, and the module
//! help `-h` adds.

use rzmap_core::error::InputError;
use rzmap_core::fields::{FieldDef, Schema};
use rzmap_core::{output, probe};

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
    probe::list_probe_modules()
}

/// The output module names, one per line.
pub fn output_modules() -> String {
    output::list_output_modules()
}

fn unknown_probe(name: &str) -> InputError {
    let names: Vec<&str> = probe::REGISTRY.iter().map(|m| m.name).collect();
    InputError::new(
        "--probe-module",
        format!("unknown probe module \"{name}\" (available: {})", names.join(", ")),
    )
}

/// Every field a scan with this probe module produces: IP fields, module fields, system fields.
pub fn output_fields(module: &str) -> Result<String, InputError> {
    let info = probe::lookup(module).ok_or_else(|| unknown_probe(module))?;
    Ok(format_fields(Schema::for_module(info.fields).fields()))
}

/// `--list-output-fields --banner`: the `tcp_synscan` fields with `data` and `banner_class`.
pub fn banner_output_fields() -> String {
    format_fields(Schema::for_module(&rzmap_core::handshake::TCP_SYNSCAN_BANNER_FIELDS).fields())
}

/// The help of the selected probe and output modules, printed after the option help.
pub fn module_help(probe_name: &str, output_name: &str) -> String {
    let mut s = String::new();
    if let Some(info) = probe::lookup(probe_name) {
        s.push_str(&format!("\nProbe module ({}) help:\n{}\n", info.name, info.help.trim_end()));
    }
    if let Some(info) = output::find_module(output_name) {
        s.push_str(&format!("\nOutput module ({}) help:\n{}\n", info.name, info.help.trim_end()));
    }
    s
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

    #[test]
    fn synscan_fields_are_ip_module_system() {
        let text = output_fields("tcp_synscan").unwrap();
        let names: Vec<&str> = text.lines().map(|l| l.split_whitespace().next().unwrap()).collect();
        assert_eq!(&names[..6], ["saddr", "saddr_raw", "daddr", "daddr_raw", "ipid", "ttl"]);
        assert!(names.contains(&"sport") && names.contains(&"classification"));
        assert_eq!(
            &names[names.len() - 5..],
            ["repeat", "cooldown", "timestamp_str", "timestamp_ts", "timestamp_us"]
        );
        for line in text.lines() {
            let name = line.split_whitespace().next().unwrap();
            if name.len() <= 15 {
                assert!(&line[15..16] == " " && &line[22..24] == ": ", "{line}");
            }
        }
    }

    #[test]
    fn unknown_module_lists_the_known_ones() {
        let e = output_fields("nosuch").unwrap_err().to_string();
        assert!(
            e.starts_with(
                "--probe-module: unknown probe module \"nosuch\" (available: tcp_synscan"
            ),
            "{e}"
        );
    }

    #[test]
    fn listings_come_from_the_registries() {
        assert!(probe_modules().starts_with("tcp_synscan\n"));
        assert!(output_modules().starts_with("csv\njson\n"));
        let h = module_help("tcp_synscan", "csv");
        assert!(
            h.contains("Probe module (tcp_synscan) help:")
                && h.contains("Output module (csv) help:")
        );
    }
}
