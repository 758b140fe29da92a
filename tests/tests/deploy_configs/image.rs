//! `deploy/Dockerfile` and `deploy/supervisord.conf` read as data: which
//! repository file ends up at which image path, which directories the
//! service may write, and what supervisord runs.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail, ensure};

/// Where an image file comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A path relative to the build context (the workspace root).
    Context(String),
    /// A path in another build stage.
    Stage { stage: String, path: String },
}

/// One instruction, continuation lines joined.
#[derive(Debug)]
pub struct Instruction {
    pub keyword: String,
    pub args: String,
    /// The stage (`FROM … AS <name>`, or its index) it belongs to.
    pub stage: String,
}

/// The parts of the Dockerfile the deployment depends on.
#[derive(Debug)]
pub struct Dockerfile {
    pub instructions: Vec<Instruction>,
    /// Image path → source, for the final stage.
    pub files: BTreeMap<String, Source>,
    /// Directories made with `mkdir -p` in the final stage.
    pub created_dirs: BTreeSet<String>,
    /// Directories given to the service user with `chown -R`.
    pub service_dirs: BTreeSet<String>,
    /// `USER` of the final stage, e.g. `1000:1000`.
    pub user: String,
    pub exposed: BTreeSet<u64>,
    pub healthcheck: String,
    pub cmd: Vec<String>,
}

impl Dockerfile {
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let instructions = parse_instructions(&text)?;
        let last_stage = instructions
            .iter()
            .rev()
            .find(|i| i.keyword == "FROM")
            .map(|i| i.stage.clone())
            .context("no FROM")?;
        let mut d = Self {
            instructions: Vec::new(),
            files: BTreeMap::new(),
            created_dirs: BTreeSet::new(),
            service_dirs: BTreeSet::new(),
            user: String::new(),
            exposed: BTreeSet::new(),
            healthcheck: String::new(),
            cmd: Vec::new(),
        };
        for i in instructions.iter().filter(|i| i.stage == last_stage) {
            match i.keyword.as_str() {
                "COPY" | "ADD" => {
                    let copy = Copy::parse(&i.args)?;
                    let into_dir = copy.dest.ends_with('/') || copy.sources.len() > 1;
                    for src in &copy.sources {
                        let dest = if into_dir {
                            let base = Path::new(src)
                                .file_name()
                                .map(|n| n.to_string_lossy().into_owned());
                            format!(
                                "{}/{}",
                                copy.dest.trim_end_matches('/'),
                                base.unwrap_or_default()
                            )
                        } else {
                            copy.dest.clone()
                        };
                        let source = match &copy.from {
                            Some(stage) => Source::Stage {
                                stage: stage.clone(),
                                path: src.clone(),
                            },
                            None => Source::Context(src.clone()),
                        };
                        d.files.insert(dest, source);
                    }
                }
                "RUN" => {
                    for cmd in i.args.split("&&") {
                        let words: Vec<&str> = cmd.split_whitespace().collect();
                        match words.as_slice() {
                            ["mkdir", "-p", dirs @ ..] => {
                                d.created_dirs.extend(dirs.iter().map(|s| s.to_string()))
                            }
                            ["chown", "-R", owner, dirs @ ..]
                                if owner.starts_with("policy-engine") =>
                            {
                                d.service_dirs.extend(dirs.iter().map(|s| s.to_string()));
                            }
                            _ => {}
                        }
                    }
                }
                "USER" => d.user = i.args.trim().to_string(),
                "EXPOSE" => {
                    for p in i.args.split_whitespace() {
                        let port = p.split('/').next().unwrap_or(p);
                        d.exposed
                            .insert(port.parse().with_context(|| format!("EXPOSE {p}"))?);
                    }
                }
                "HEALTHCHECK" => d.healthcheck = i.args.clone(),
                "CMD" => {
                    d.cmd = serde_json::from_str(&i.args)
                        .context("CMD must be in exec (JSON array) form")?;
                }
                _ => {}
            }
        }
        d.instructions = instructions;
        Ok(d)
    }

    /// The `COPY`/`ADD` instructions of every stage.
    pub fn copies(&self) -> anyhow::Result<Vec<(String, Copy)>> {
        self.instructions
            .iter()
            .filter(|i| i.keyword == "COPY" || i.keyword == "ADD")
            .map(|i| Ok((i.stage.clone(), Copy::parse(&i.args)?)))
            .collect()
    }

    /// The `RUN` arguments of stage `stage`.
    pub fn runs(&self, stage: &str) -> Vec<&str> {
        self.instructions
            .iter()
            .filter(|i| i.keyword == "RUN" && i.stage == stage)
            .map(|i| i.args.as_str())
            .collect()
    }

    /// The repository file copied to `image_path`, if it comes from the context.
    pub fn context_source(&self, image_path: &str) -> Option<&str> {
        match self.files.get(image_path)? {
            Source::Context(p) => Some(p),
            Source::Stage { .. } => None,
        }
    }

    /// Whether `path` is inside a directory the service user owns.
    pub fn is_service_writable(&self, path: &str) -> bool {
        self.service_dirs.iter().any(|d| is_under(path, d))
    }

    /// Whether directory `path` exists in the image (made with `mkdir -p`).
    pub fn has_dir(&self, path: &str) -> bool {
        self.created_dirs.iter().any(|d| is_under(d, path))
    }

    /// The numeric uid of `USER`.
    pub fn uid(&self) -> anyhow::Result<u64> {
        let uid = self.user.split(':').next().unwrap_or_default();
        uid.parse().with_context(|| {
            format!(
                "USER `{}` is not numeric (Kubernetes runAsNonRoot needs a uid)",
                self.user
            )
        })
    }
}

/// A `COPY`/`ADD` instruction.
#[derive(Debug)]
pub struct Copy {
    pub from: Option<String>,
    pub sources: Vec<String>,
    pub dest: String,
}

impl Copy {
    fn parse(args: &str) -> anyhow::Result<Self> {
        let mut from = None;
        let mut paths = Vec::new();
        for word in args.split_whitespace() {
            if let Some(flag) = word.strip_prefix("--") {
                if let Some(stage) = flag.strip_prefix("from=") {
                    from = Some(stage.to_string());
                }
            } else {
                paths.push(word.to_string());
            }
        }
        ensure!(
            !args.trim_start().starts_with('['),
            "use the plain form of COPY: {args}"
        );
        let Some(dest) = paths.pop() else {
            bail!("COPY without a destination: {args}");
        };
        ensure!(!paths.is_empty(), "COPY without a source: {args}");
        Ok(Self {
            from,
            sources: paths,
            dest,
        })
    }
}

fn parse_instructions(text: &str) -> anyhow::Result<Vec<Instruction>> {
    let mut out = Vec::new();
    let mut stage = String::new();
    let mut stages = 0;
    let mut pending = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || trimmed.is_empty() {
            continue;
        }
        if let Some(part) = trimmed.strip_suffix('\\') {
            pending.push_str(part);
            pending.push(' ');
            continue;
        }
        pending.push_str(trimmed);
        let full = std::mem::take(&mut pending);
        let (keyword, args) = full
            .split_once(char::is_whitespace)
            .unwrap_or((full.as_str(), ""));
        let keyword = keyword.to_ascii_uppercase();
        if keyword == "FROM" {
            let words: Vec<&str> = args.split_whitespace().collect();
            stage = match words.as_slice() {
                [.., as_kw, name] if as_kw.eq_ignore_ascii_case("as") => name.to_string(),
                _ => stages.to_string(),
            };
            stages += 1;
        }
        ensure!(
            !stage.is_empty() || keyword == "ARG",
            "`{keyword}` before the first FROM"
        );
        out.push(Instruction {
            keyword,
            args: args.trim().to_string(),
            stage: stage.clone(),
        });
    }
    ensure!(
        pending.is_empty(),
        "the Dockerfile ends inside a continued line"
    );
    Ok(out)
}

/// The patterns of a `.dockerignore` file.
pub fn dockerignore(path: &Path) -> anyhow::Result<Vec<String>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.trim_start_matches("./").trim_end_matches('/').to_string())
        .collect())
}

/// Whether a context path is excluded by one of `patterns` (plain paths
/// and `**/<name>` patterns; other globs are not interpreted).
pub fn is_ignored(path: &str, patterns: &[String]) -> bool {
    let path = path.trim_start_matches("./").trim_end_matches('/');
    patterns.iter().any(|p| {
        if let Some(name) = p.strip_prefix("**/") {
            !name.contains('*') && path.split('/').any(|c| c == name)
        } else {
            !p.contains('*') && is_under(path, p)
        }
    })
}

/// Whether `path` is `dir` or inside it.
pub fn is_under(path: &str, dir: &str) -> bool {
    let dir = dir.trim_end_matches('/');
    path == dir
        || path
            .strip_prefix(dir)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// `supervisord.conf`: sections of `key = value`.
#[derive(Debug)]
pub struct Supervisord {
    pub sections: BTreeMap<String, BTreeMap<String, String>>,
}

/// A `[program:<name>]` section.
#[derive(Debug)]
pub struct Program<'a> {
    pub name: &'a str,
    pub argv: Vec<&'a str>,
    pub priority: i64,
    pub settings: &'a BTreeMap<String, String>,
}

impl Program<'_> {
    /// The value of `--<flag>=` on the command line.
    pub fn flag(&self, flag: &str) -> Option<&str> {
        let prefix = format!("--{flag}=");
        self.argv
            .iter()
            .find_map(|a| a.strip_prefix(prefix.as_str()))
    }
}

impl Supervisord {
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let mut sections: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        let mut current: Option<String> = None;
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with(';') || line.starts_with('#') {
                continue;
            }
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                ensure!(
                    !sections.contains_key(name),
                    "line {}: section [{name}] twice",
                    n + 1
                );
                sections.insert(name.to_string(), BTreeMap::new());
                current = Some(name.to_string());
                continue;
            }
            let (Some(section), Some((k, v))) = (current.as_ref(), line.split_once('=')) else {
                bail!(
                    "line {}: expected `key=value` inside a section: {line}",
                    n + 1
                );
            };
            // An inline comment starts with whitespace and `;`.
            let v = v.split(" ;").next().unwrap_or(v).trim();
            if let Some(s) = sections.get_mut(section) {
                s.insert(k.trim().to_string(), v.to_string());
            }
        }
        Ok(Self { sections })
    }

    /// `[supervisord]` setting `key`.
    pub fn main(&self, key: &str) -> Option<&str> {
        self.sections
            .get("supervisord")?
            .get(key)
            .map(String::as_str)
    }

    pub fn programs(&self) -> anyhow::Result<Vec<Program<'_>>> {
        let mut out = Vec::new();
        for (section, settings) in &self.sections {
            let Some(name) = section.strip_prefix("program:") else {
                continue;
            };
            let command = settings
                .get("command")
                .with_context(|| format!("[{section}] has no command"))?;
            let priority = settings
                .get("priority")
                .map_or(Ok(999), |p| p.parse())
                .context("priority")?;
            out.push(Program {
                name,
                argv: command.split_whitespace().collect(),
                priority,
                settings,
            });
        }
        Ok(out)
    }

    /// Every file supervisord writes: its log and pid file, the programs' logs.
    pub fn written_files(&self) -> anyhow::Result<Vec<String>> {
        let mut out: Vec<String> = ["logfile", "pidfile"]
            .iter()
            .filter_map(|k| self.main(k).map(str::to_string))
            .collect();
        for p in self.programs()? {
            for k in ["stdout_logfile", "stderr_logfile"] {
                match p.settings.get(k).map(String::as_str) {
                    Some(f) if f.starts_with('/') && !f.starts_with("/dev/") => {
                        out.push(f.to_string())
                    }
                    Some(_) => {}
                    None => bail!(
                        "[program:{}] has no {k}: supervisord would write it to a temp dir",
                        p.name
                    ),
                }
            }
        }
        Ok(out)
    }
}

/// Parent directory of an absolute image path.
pub fn parent(path: &str) -> String {
    Path::new(path)
        .parent()
        .map_or_else(PathBuf::new, Path::to_path_buf)
        .display()
        .to_string()
}
