//! The environment a service starts with, beyond the clean defaults that
//! config::spawn gives every child (PATH, and HOME/USER/LOGNAME for a
//! `user`). In order, later wins:
//!
//! 1. `env_inherit`: names or `PREFIX_*` patterns (`true`: all) taken from
//!    PID 1's own environment: a container's `-e` variables, the kernel's
//!    command-line assignments in a VM;
//! 2. `moonlit.setenv(k, v)` from Lua (init.lua), for every service started
//!    afterwards;
//! 3. the service's `env = { ... }`;
//! 4. its `env_file`s, read at every start (systemd's precedence:
//!    EnvironmentFile= overrides Environment=).

use std::collections::BTreeMap;

use moonlit_config::plan::ServiceSpec;

/// Does `name` match an `env_inherit` entry?
fn inherited(patterns: &[String], name: &str) -> bool {
    patterns.iter().any(|p| match p.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => p == name,
    })
}

/// The variables for one start of `spec`; an unreadable or malformed
/// env_file is the start's error, naming the file and line.
pub fn service_env(
    spec: &ServiceSpec,
    global: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, String> {
    let mut env = BTreeMap::new();
    if !spec.env_inherit.is_empty() {
        for (k, v) in std::env::vars_os() {
            if let (Some(k), Some(v)) = (k.to_str(), v.to_str()) {
                if inherited(&spec.env_inherit, k) {
                    env.insert(k.to_string(), v.to_string());
                }
            }
        }
    }
    env.extend(global.iter().map(|(k, v)| (k.clone(), v.clone())));
    env.extend(spec.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    for f in &spec.env_file {
        env.extend(moonlit_config::envfile::load(f)?);
    }
    Ok(env)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_and_precedence() {
        assert!(inherited(&["DB_*".into()], "DB_URL"));
        assert!(!inherited(&["DB_*".into()], "XDB_URL"));
        assert!(inherited(&["*".into()], "ANY"));
        assert!(inherited(&["HOME".into()], "HOME"));
        assert!(!inherited(&["HOME".into()], "HOMEX"));
        let dir = std::env::temp_dir().join(format!("moonlit-envset-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("env");
        std::fs::write(&f, "B=from-file\n").unwrap();
        let mut spec = ServiceSpec::new("x", "test");
        spec.env.insert("A".into(), "from-env".into());
        spec.env.insert("B".into(), "from-env".into());
        spec.env_file = vec![f.display().to_string(), "-/nonexistent/x".into()];
        let global = BTreeMap::from([
            ("A".to_string(), "global".to_string()),
            ("G".to_string(), "g".to_string()),
        ]);
        let env = service_env(&spec, &global).unwrap();
        assert_eq!(env["A"], "from-env");
        assert_eq!(env["B"], "from-file");
        assert_eq!(env["G"], "g");
        spec.env_file.push("/nonexistent/required".into());
        let e = service_env(&spec, &global).unwrap_err();
        assert!(e.contains("/nonexistent/required"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
