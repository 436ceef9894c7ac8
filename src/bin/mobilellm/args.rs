//! A small argument parser: `--flag value`, `--switch`, repeated flags; unknown flags are errors.

use std::collections::HashMap;

pub struct Args {
    values: HashMap<String, Vec<String>>,
    switches: Vec<String>,
}

impl Args {
    /// `switch_names` are flags without a value; every other `--name` takes the next argument.
    pub fn parse(raw: &[String], switch_names: &[&str], value_names: &[&str]) -> Result<Args, String> {
        let mut values: HashMap<String, Vec<String>> = HashMap::new();
        let mut switches = Vec::new();
        let mut i = 0;
        while i < raw.len() {
            let a = raw[i].as_str();
            let name = a.trim_start_matches('-');
            if !a.starts_with('-') || name.is_empty() {
                return Err(format!("unexpected argument {a:?}"));
            }
            if switch_names.contains(&name) {
                switches.push(name.to_string());
                i += 1;
            } else if value_names.contains(&name) {
                let v = raw.get(i + 1).ok_or_else(|| format!("{a} needs a value"))?;
                values.entry(name.to_string()).or_default().push(v.clone());
                i += 2;
            } else {
                return Err(format!("unknown option {a}"));
            }
        }
        Ok(Args { values, switches })
    }

    pub fn has(&self, name: &str) -> bool {
        self.switches.iter().any(|s| s == name)
    }

    pub fn str(&self, name: &str) -> Option<&str> {
        self.values.get(name).and_then(|v| v.last()).map(String::as_str)
    }

    pub fn all(&self, name: &str) -> Vec<String> {
        self.values.get(name).cloned().unwrap_or_default()
    }

    pub fn required(&self, name: &str) -> Result<&str, String> {
        self.str(name).ok_or_else(|| format!("--{name} is required"))
    }

    pub fn num<T: std::str::FromStr>(&self, name: &str, default: T) -> Result<T, String> {
        match self.str(name) {
            None => Ok(default),
            Some(s) => s.parse().map_err(|_| format!("--{name}: {s:?} is not a valid number")),
        }
    }

    pub fn tokens(&self, name: &str) -> Result<Option<Vec<u32>>, String> {
        let Some(s) = self.str(name) else { return Ok(None) };
        s.split(',')
            .filter(|p| !p.trim().is_empty())
            .map(|p| p.trim().parse::<u32>().map_err(|_| format!("--{name}: {p:?} is not a token id")))
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }
}
