//! Reload transactions: re-evaluate what changed, validate the whole new
//! world, migrate state, run the old code's `before_reload`, then commit
//! (generation + 1), reconcile services, run the new code's `after_reload`.
//! Any error before the commit leaves the running generation untouched.

use std::collections::BTreeMap;

use moonlit_config::error::{ConfigError, ErrorKind};
use moonlit_config::modules::{content_hash, discover};
use moonlit_config::plan::{self, ModuleResult, Plan};
use moonlit_config::Evaluated;
use serde_json::{json, Value};

use super::{now_ms, Init};

/// One module of a generation.
#[derive(Clone)]
pub(crate) struct Module {
    pub hash: u64,
    pub eval: Evaluated,
}

/// A world evaluated but not yet in force.
pub(crate) struct Candidate {
    pub modules: BTreeMap<String, Module>,
    pub plan: Plan,
    pub errors: Vec<ConfigError>,
    pub changed: Vec<String>,
    pub removed: Vec<String>,
    /// (module, new state data, version) for modules with a `state`.
    pub states: Vec<(String, Value, i64)>,
    /// The declared network, and whether anything was declared.
    pub network: moonlit_net::NetworkSpec,
    pub network_declared: bool,
}

impl Init {
    /// Reads the configuration and evaluates what changed since the running
    /// generation (everything at boot). `only` limits a reload to modules.
    pub(crate) fn evaluate(&mut self, only: Option<&[String]>, boot: bool) -> Candidate {
        let dir = self.opts.config_dir.clone();
        let (files, io_errors) = discover(&dir);
        let mut errors: Vec<ConfigError> = io_errors;
        let mut modules = BTreeMap::new();
        let mut results = Vec::new();
        let mut changed = Vec::new();
        let selected = |n: &str| {
            only.is_none_or(|o| {
                o.iter().any(|m| {
                    m == n || format!("services/{m}") == n || format!("services/{m}.lua") == n
                })
            })
        };
        for f in &files {
            let prev = self.modules.get(&f.name);
            let lib_changed = prev.is_some_and(|p| {
                p.eval.libs.iter().any(|(path, h)| {
                    std::fs::read(dir.join(path)).map(|b| content_hash(&b)).ok() != Some(*h)
                })
            });
            let differs = boot || prev.is_none_or(|p| p.hash != f.hash || lib_changed);
            match (differs && selected(&f.name), prev) {
                (true, _) => {
                    changed.push(f.name.clone());
                    match self.rt.eval_module(&f.name, &f.source) {
                        Ok(ev) => {
                            results.push(ModuleResult {
                                module: f.name.clone(),
                                decls: Ok(ev.decls.clone()),
                            });
                            modules.insert(
                                f.name.clone(),
                                Module {
                                    hash: f.hash,
                                    eval: ev,
                                },
                            );
                        }
                        Err(e) => results.push(ModuleResult {
                            module: f.name.clone(),
                            decls: Err(e),
                        }),
                    }
                }
                (false, Some(p)) => {
                    results.push(ModuleResult {
                        module: f.name.clone(),
                        decls: Ok(p.eval.decls.clone()),
                    });
                    modules.insert(f.name.clone(), p.clone());
                }
                // New, but not among the modules this reload is about.
                (false, None) => {}
            }
        }
        let mut removed = Vec::new();
        for (name, m) in &self.modules {
            if files.iter().any(|f| &f.name == name) {
                continue;
            }
            if selected(name) {
                removed.push(name.clone());
            } else {
                results.push(ModuleResult {
                    module: name.clone(),
                    decls: Ok(m.eval.decls.clone()),
                });
                modules.insert(name.clone(), m.clone());
            }
        }
        let (mut plan, plan_errors) = plan::build(&results);
        errors.extend(plan_errors);
        if let Some(m) = &self.opts.main_cmd {
            crate::entry::add_main_service(&mut plan, m, &mut errors);
        }
        let (network, network_declared) = match super::network::spec_of(&modules) {
            Ok(n) => n,
            Err(e) => {
                errors.push(e);
                (self.net.spec.clone(), self.net.active)
            }
        };
        // State: migrated or carried over, checked to be plain data.
        let mut states = Vec::new();
        for name in &changed {
            let Some(m) = modules.get(name) else { continue };
            let Some(sd) = &m.eval.state else { continue };
            let old = self.rt.live_state(name);
            let data = match (&old, boot) {
                (Some((old_data, old_version)), false) => {
                    let arg = match self.rt.from_plain(old_data) {
                        Ok(v) => v,
                        Err(e) => {
                            errors.push(e);
                            continue;
                        }
                    };
                    match self
                        .rt
                        .call_hook(name, &m.eval.env, "migrate", (arg, *old_version))
                    {
                        Ok(Some(v)) => match self.rt.to_plain(&v, "migrate result") {
                            Ok(j) if j.is_object() || j.is_array() => Ok(j),
                            Ok(_) => Err(format!(
                                "{}: migrate must return a table of plain data",
                                sd.location
                            )),
                            Err(e) => Err(format!(
                                "{}: migrate returned data that is not plain: {e}",
                                sd.location
                            )),
                        },
                        Ok(None) => self
                            .rt
                            .to_plain(&mlua::Value::Table(sd.proxy.clone()), "state"),
                        Err(e) => Err(e.message),
                    }
                }
                _ => self
                    .rt
                    .to_plain(&mlua::Value::Table(sd.proxy.clone()), "state"),
            };
            match data {
                Ok(j) => states.push((name.clone(), j, sd.version)),
                Err(e) => errors.push(ConfigError::new(ErrorKind::Runtime, name, e)),
            }
        }
        Candidate {
            modules,
            plan,
            errors,
            changed,
            removed,
            states,
            network,
            network_declared,
        }
    }

    /// Puts a candidate in force: states, modules, plan; the supervisor
    /// reconciles. Returns the per-service outcome.
    pub(crate) fn commit(&mut self, c: Candidate) -> BTreeMap<String, crate::supervisor::Outcome> {
        for (name, data, version) in &c.states {
            if let Some(sd) = c.modules.get(name).and_then(|m| m.eval.state.as_ref()) {
                if let Err(e) = self.rt.commit_state(name, &sd.proxy, data, *version) {
                    self.log(&format!("{name}: state: {e}"));
                }
            }
        }
        self.net.active |= c.network_declared;
        self.net.spec = c.network.clone();
        let now = now_ms();
        let (actions, outcomes) = self.sup.apply(&c.plan, now);
        self.sync_sockets();
        self.modules = c.modules;
        self.plan = c.plan;
        self.sync_timers();
        self.refresh_callbacks();
        self.perform(actions);
        self.apply_log_settings();
        outcomes
    }

    /// Log settings are supervisor fields: a reload applies them to the
    /// running services' pipes at once (file, rotation, timestamps, echo,
    /// buffer size).
    fn apply_log_settings(&mut self) {
        let specs: Vec<(String, moonlit_config::ServiceSpec)> = self
            .sup
            .services
            .iter()
            .map(|(n, s)| (n.clone(), s.spec.clone()))
            .collect();
        for (name, spec) in specs {
            let Some(l) = self.log_ids.get(&name).and_then(|id| self.logs.get_mut(id)) else {
                continue;
            };
            l.console = spec.console;
            l.ring.set_cap(spec.log_buffer);
            l.set_file_options(spec.log_rotate, spec.log_timestamps);
            if let Err(e) = l.set_file(spec.log_file.as_deref()) {
                self.log(&format!("{name}: {e}"));
            }
        }
    }

    /// A reload transaction (SIGHUP, `ctl reload`, the watch). Returns the
    /// reply for `ctl reload`.
    pub(crate) fn reload(
        &mut self,
        only: Option<&[String]>,
        dry_run: bool,
        trigger: &str,
    ) -> Value {
        let t = now_ms();
        if self.shutdown.is_some() {
            return json!({"ok": false, "error": "the system is shutting down"});
        }
        // Whatever the outcome, the evaluation ran code the idle loop does not.
        self.pages.touched(t);
        let c = self.evaluate(only, false);
        if c.changed.is_empty() && c.removed.is_empty() {
            return json!({
                "ok": true, "message": "no changes", "generation": self.generation,
                "changed": [], "removed": [], "services": {}
            });
        }
        let mut errors = c.errors.clone();
        // The old code's before_reload hooks, for what changes or goes.
        if errors.is_empty() && !dry_run {
            for name in c.changed.iter().chain(c.removed.iter()) {
                if let Some(m) = self.modules.get(name).cloned() {
                    if let Err(e) = self.rt.call_hook(name, &m.eval.env, "before_reload", ()) {
                        errors.push(e);
                    }
                }
            }
        }
        let messages: Vec<String> = errors.iter().map(|e| e.message.clone()).collect();
        if !errors.is_empty() {
            for m in &messages {
                self.log(&format!("reload ({trigger}) rejected: {m}"));
            }
            let report = json!({
                "ok": false,
                "error": format!("reload rejected, generation {} stays in force: {}", self.generation, messages.join("; ")),
                "errors": messages,
                "generation": self.generation,
                "changed": c.changed,
                "removed": c.removed,
                "dry_run": dry_run,
            });
            if !dry_run {
                self.last_reload = Some(report.clone());
            }
            return report;
        }
        if dry_run {
            let outcomes = self.sup.diff(&c.plan);
            let network: Vec<String> = if self.net.active || c.network_declared {
                match self.net_plan(&c.network) {
                    Ok(ch) => ch.iter().map(|c| c.to_string()).collect(),
                    Err(e) => vec![format!("cannot plan: {e}")],
                }
            } else {
                Vec::new()
            };
            return json!({
                "ok": true, "dry_run": true, "generation": self.generation,
                "changed": c.changed, "removed": c.removed, "services": outcomes,
                "network": network,
            });
        }
        let changed = c.changed.clone();
        let removed = c.removed.clone();
        let outcomes = self.commit(c);
        let network = if self.net.active {
            let spec = self.net.spec.clone();
            self.net_apply(&spec)
        } else {
            Vec::new()
        };
        self.generation += 1;
        self.transactions += 1;
        self.config_errors.clear();
        // The new code's after_reload hooks run as tasks (they may block).
        for name in &changed {
            let f = self.modules.get(name).and_then(|m| {
                match m.eval.env.raw_get::<mlua::Value>("after_reload") {
                    Ok(mlua::Value::Function(f)) => Some(f),
                    _ => None,
                }
            });
            if let Some(f) = f {
                let label = format!("{name} after_reload");
                let (id, step) = self.rt.start_task(&label, f, ());
                self.task_names.insert(id, label);
                self.handle_step(id, step);
            }
        }
        let ms = now_ms().saturating_sub(t);
        let touched: Vec<String> = outcomes
            .iter()
            .filter(|(_, o)| **o != crate::supervisor::Outcome::Unchanged)
            .map(|(n, o)| {
                format!(
                    "{n} {}",
                    serde_json::to_value(o)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default()
                )
            })
            .collect();
        self.log(&format!(
            "reload ({trigger}): generation {} in {ms} ms; modules changed: {}; services: {}",
            self.generation,
            if changed.is_empty() && removed.is_empty() {
                "none".to_string()
            } else {
                changed
                    .iter()
                    .chain(removed.iter())
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            },
            if touched.is_empty() {
                "none changed".to_string()
            } else {
                touched.join(", ")
            }
        ));
        let report = json!({
            "ok": true, "generation": self.generation, "changed": changed, "removed": removed,
            "services": outcomes, "network": network, "ms": ms,
        });
        self.last_reload = Some(report.clone());
        report
    }
}
