//! BuildKit's `bflag`: `--name[=value]` flags of one instruction.

use std::collections::BTreeMap;

/// BuildKit's flag set for one instruction.
pub(super) struct Flags<'a> {
    args: &'a [String],
    defs: BTreeMap<&'static str, FlagKind>,
    values: BTreeMap<&'static str, Vec<String>>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum FlagKind {
    Bool,
    String,
    Strings,
}

impl<'a> Flags<'a> {
    pub(super) fn new(args: &'a [String], defs: &[(&'static str, FlagKind)]) -> Self {
        Flags {
            args,
            defs: defs.iter().copied().collect(),
            values: BTreeMap::new(),
        }
    }

    pub(super) fn parse(&mut self) -> Result<(), String> {
        for a in self.args {
            if a == "--" {
                return Ok(());
            }
            let Some(body) = a.strip_prefix("--") else {
                return Err(format!("arg should start with -- : {a}"));
            };
            let (name, value) = match body.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (body, None),
            };
            let flag_name = format!("--{name}");
            let Some((&key, &kind)) = self.defs.get_key_value(name) else {
                return Err(format!("unknown flag: {flag_name}"));
            };
            if self.values.contains_key(key) && kind != FlagKind::Strings {
                return Err(format!("duplicate flag specified: {flag_name}"));
            }
            let v = match kind {
                FlagKind::Bool => {
                    if value == Some("") {
                        return Err(format!("missing a value on flag: {flag_name}"));
                    }
                    match value.unwrap_or("").to_lowercase().as_str() {
                        "true" | "" => "true".to_string(),
                        "false" => "false".to_string(),
                        _ => {
                            return Err(format!(
                                "expecting boolean value for flag {flag_name}, not: {}",
                                value.unwrap_or("")
                            ));
                        }
                    }
                }
                FlagKind::String | FlagKind::Strings => match value {
                    Some(v) => v.to_string(),
                    None => return Err(format!("missing a value on flag: {flag_name}")),
                },
            };
            self.values.entry(key).or_default().push(v);
        }
        Ok(())
    }

    pub(super) fn string(&self, name: &str) -> String {
        self.values
            .get(name)
            .and_then(|v| v.last().cloned())
            .unwrap_or_default()
    }
    pub(super) fn strings(&self, name: &str) -> Vec<String> {
        self.values.get(name).cloned().unwrap_or_default()
    }
    pub(super) fn opt_bool(&self, name: &str) -> Option<bool> {
        self.values
            .get(name)
            .and_then(|v| v.last())
            .map(|v| v == "true")
    }
    pub(super) fn bool(&self, name: &str) -> bool {
        self.opt_bool(name).unwrap_or(false)
    }
    pub(super) fn used(&self, name: &str) -> bool {
        self.values.contains_key(name)
    }
}
