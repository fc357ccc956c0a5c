//! The cluster manifests in `deploy/`, checked without a cluster: the Kubernetes YAML parsed,
//! and the commands of both the Kubernetes pods and the Slurm batch scripts run by the shell
//! with stand-ins for `trailstop` and `srun` that record what they were asked to run.
//! (`scripts/check-slurm` runs the Slurm scripts on a real single-node Slurm.)

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn yaml(rel: &str) -> Value {
    serde_yaml_ng::from_str(&read(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// A folder with stand-ins: `trailstop` writes its arguments (one a line) and
/// RAYON_NUM_THREADS to `$RECORD`; `srun` appends its options to `$RECORD.srun` and runs the
/// rest of its command line.
struct Fakes {
    dir: tempfile::TempDir,
}

impl Fakes {
    fn new() -> Fakes {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        let write = |name: &str, text: &str| {
            let p = bin.join(name);
            std::fs::write(&p, text).unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        };
        write(
            "trailstop",
            "#!/bin/sh\nprintf '%s\\n' \"$@\" > \"$RECORD\"\necho \"RAYON_NUM_THREADS=$RAYON_NUM_THREADS\" >> \"$RECORD.env\"\n",
        );
        write(
            "srun",
            "#!/bin/sh\nwhile [ \"${1#-}\" != \"$1\" ]; do echo \"$1\" >> \"$RECORD.srun\"; shift; done\nexec \"$@\"\n",
        );
        Fakes { dir }
    }

    fn record(&self) -> PathBuf {
        self.dir.path().join("record")
    }

    /// Runs `program args` from an empty folder with only PATH (stand-ins first), RECORD and
    /// `env`: no SLURM_* or other variable of the caller's.
    fn run(&self, program: &str, args: &[&str], env: &[(&str, &str)]) -> Run {
        for f in ["", ".env", ".srun"] {
            let _ = std::fs::remove_file(format!("{}{f}", self.record().display()));
        }
        let cwd = self.dir.path().join("cwd");
        std::fs::create_dir_all(&cwd).unwrap();
        let path = format!(
            "{}:{}",
            self.dir.path().join("bin").display(),
            std::env::var("PATH").unwrap()
        );
        let out: Output = Command::new(program)
            .args(args)
            .current_dir(&cwd)
            .env_clear()
            .env("PATH", path)
            .env("RECORD", self.record())
            .envs(env.iter().copied())
            .output()
            .unwrap();
        let lines = |suffix: &str| -> Option<Vec<String>> {
            std::fs::read_to_string(format!("{}{suffix}", self.record().display()))
                .ok()
                .map(|t| t.lines().map(str::to_string).collect())
        };
        Run {
            code: out.status.code(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            trailstop: lines(""),
            env: lines(".env").unwrap_or_default(),
            srun: lines(".srun").unwrap_or_default(),
        }
    }
}

#[derive(Debug)]
struct Run {
    code: Option<i32>,
    stderr: String,
    /// The stand-in `trailstop`'s arguments; None when it did not run.
    trailstop: Option<Vec<String>>,
    env: Vec<String>,
    srun: Vec<String>,
}

impl Run {
    fn ran(&self) -> &[String] {
        assert_eq!(self.code, Some(0), "failed: {}", self.stderr);
        self.trailstop.as_deref().expect("trailstop did not run")
    }

    fn refused(&self, why: &str) {
        assert_eq!(self.code, Some(2), "not refused: {self:?}");
        assert!(self.trailstop.is_none(), "ran trailstop: {self:?}");
        assert!(
            self.stderr.contains(why),
            "{why:?} not in {:?}",
            self.stderr
        );
    }
}

/// The value after `flag` in `args`.
fn after<'a>(args: &'a [String], flag: &str) -> &'a str {
    let i = args
        .iter()
        .position(|a| a == flag)
        .unwrap_or_else(|| panic!("no {flag} in {args:?}"));
    &args[i + 1]
}

// ---- Kubernetes --------------------------------------------------------------------------------

/// The container of a Job and the claim mounted at each of its mount paths.
fn pod(job: &Value) -> (&Value, Vec<(String, String)>) {
    let spec = &job["spec"]["template"]["spec"];
    let containers = spec["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 1);
    let c = &containers[0];
    let mounts = c["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let name = m["name"].as_str().unwrap();
            let vol = spec["volumes"]
                .as_array()
                .unwrap()
                .iter()
                .find(|v| v["name"] == name)
                .unwrap_or_else(|| panic!("no volume {name}"));
            let claim = vol["persistentVolumeClaim"]["claimName"]
                .as_str()
                .unwrap_or_else(|| panic!("volume {name} is not a claim"));
            (
                m["mountPath"].as_str().unwrap().to_string(),
                claim.to_string(),
            )
        })
        .collect();
    (c, mounts)
}

/// The claim a path is on, and the path inside the volume.
fn on_volume(mounts: &[(String, String)], path: &str) -> (String, String) {
    mounts
        .iter()
        .find_map(|(at, claim)| {
            path.strip_prefix(at.as_str())
                .filter(|rest| rest.starts_with('/'))
                .map(|rest| (claim.clone(), rest.to_string()))
        })
        .unwrap_or_else(|| panic!("{path} is on no mounted volume"))
}

#[test]
fn indexed_job_shards_by_its_completions_into_what_the_merge_reads() {
    let sweep = yaml("deploy/kubernetes/sweep-indexed-job.yaml");
    let merge = yaml("deploy/kubernetes/merge-job.yaml");
    let pvc = yaml("deploy/kubernetes/results-pvc.yaml");
    assert_eq!(sweep["kind"], "Job");
    assert_eq!(sweep["spec"]["completionMode"], "Indexed");
    let n = sweep["spec"]["completions"].as_u64().expect("completions");
    assert!(sweep["spec"]["parallelism"].as_u64().unwrap() <= n);
    let (c, sweep_mounts) = pod(&sweep);
    let env: Vec<(String, String)> = c["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let v = e["value"].as_str().expect("env values are strings");
            (e["name"].as_str().unwrap().to_string(), v.to_string())
        })
        .collect();
    let shards = env.iter().find(|(k, _)| k == "SHARDS").expect("SHARDS");
    assert_eq!(shards.1, n.to_string(), "SHARDS must equal completions");
    assert_eq!(c["command"], serde_json::json!(["/bin/sh", "-c"]));
    let script = c["args"][0].as_str().unwrap();

    // What each pod runs, by its JOB_COMPLETION_INDEX (Kubernetes sets it; 0..completions-1).
    let fakes = Fakes::new();
    let pod_run = |k: u64| {
        let k = k.to_string();
        let mut vars: Vec<(&str, &str)> = env.iter().map(|(n, v)| (&**n, &**v)).collect();
        vars.push(("JOB_COMPLETION_INDEX", &k));
        fakes.run("sh", &["-c", script], &vars)
    };
    let mut out_dir = None;
    for k in [0, n / 2, n - 1] {
        let run = pod_run(k);
        let args = run.ran();
        assert_eq!(args[0], "sweep");
        assert!(root().join(&args[1]).is_file(), "no scenario {}", args[1]);
        assert_eq!(after(args, "--shard"), format!("{k}/{n}"));
        let out = after(args, "--out").to_string();
        assert!(
            out_dir.get_or_insert(out.clone()) == &out,
            "shards write to one folder"
        );
    }
    // An index the Job would only give with more completions than SHARDS.
    pod_run(n).refused("set SHARDS to the Job's completions");
    let shards_out = out_dir.unwrap();

    // The merge reads exactly that folder, on the same claim mounted at the same path, from
    // the same working directory (the report reruns the scenario's relative paths).
    assert_eq!(merge["kind"], "Job");
    let (m, merge_mounts) = pod(&merge);
    let cmd: Vec<String> = m["command"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    assert_eq!(cmd[..2], ["trailstop", "merge"]);
    let merged = after(&cmd, "--out");
    let inputs: Vec<&String> = cmd[2..]
        .iter()
        .take_while(|a| !a.starts_with("--"))
        .collect();
    assert_eq!(
        inputs,
        [&shards_out],
        "the merge reads what the shards write"
    );
    assert!(!merged.starts_with(&format!("{shards_out}/")) && merged != shards_out);
    let (claim, _) = on_volume(&sweep_mounts, &shards_out);
    assert_eq!(on_volume(&merge_mounts, &shards_out).0, claim);
    assert_eq!(on_volume(&merge_mounts, merged).0, claim);
    assert_eq!(
        sweep_mounts, merge_mounts,
        "both mount the same claims at the same paths"
    );
    assert_eq!(c["workingDir"], m["workingDir"]);
    assert_eq!(c["image"], m["image"]);

    // The claim is one of the manifests, shareable between nodes.
    assert_eq!(pvc["kind"], "PersistentVolumeClaim");
    assert_eq!(pvc["metadata"]["name"], claim.as_str());
    assert!(
        pvc["spec"]["accessModes"]
            .as_array()
            .unwrap()
            .contains(&Value::from("ReadWriteMany"))
    );
    let readme = read("README.md");
    for f in [
        "results-pvc.yaml",
        "sweep-indexed-job.yaml",
        "merge-job.yaml",
    ] {
        assert!(readme.contains(&format!("kubectl apply -f deploy/kubernetes/{f}")));
    }
}

// ---- Slurm -------------------------------------------------------------------------------------

const ARRAY: &str = "deploy/slurm/sweep-array.sbatch";
const MERGE: &str = "deploy/slurm/merge.sbatch";

/// The `#SBATCH --key=value` directives of a batch script.
fn directives(rel: &str) -> Vec<(String, String)> {
    read(rel)
        .lines()
        .filter_map(|l| l.strip_prefix("#SBATCH --"))
        .map(|d| {
            let (k, v) = d.split_once('=').unwrap_or((d, ""));
            (
                k.to_string(),
                v.split_whitespace().next().unwrap_or("").to_string(),
            )
        })
        .collect()
}

fn directive(rel: &str, key: &str) -> String {
    directives(rel)
        .into_iter()
        .find(|(k, _)| k == key)
        .unwrap_or_else(|| panic!("{rel}: no #SBATCH --{key}"))
        .1
}

/// The environment Slurm gives array task `k` of an array numbered `ids` (job 77), 2 CPUs.
fn task_env(ids: &[u32], k: u32) -> Vec<(&'static str, String)> {
    vec![
        ("SLURM_ARRAY_JOB_ID", "77".into()),
        ("SLURM_ARRAY_TASK_ID", k.to_string()),
        ("SLURM_ARRAY_TASK_COUNT", ids.len().to_string()),
        (
            "SLURM_ARRAY_TASK_MIN",
            ids.iter().min().unwrap().to_string(),
        ),
        (
            "SLURM_ARRAY_TASK_MAX",
            ids.iter().max().unwrap().to_string(),
        ),
        ("SLURM_CPUS_PER_TASK", "2".into()),
    ]
}

fn run_array(fakes: &Fakes, env: &[(&str, String)]) -> Run {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    fakes.run("bash", &[root().join(ARRAY).to_str().unwrap()], &env)
}

#[test]
fn slurm_array_shards_by_its_size_and_refuses_other_numberings() {
    let fakes = Fakes::new();
    for (ids, k) in [(0..4, 0), (0..4, 3), (0..16, 15), (0..20, 19)] {
        let ids: Vec<u32> = ids.collect();
        let run = run_array(&fakes, &task_env(&ids, k));
        let args = run.ran();
        assert_eq!(args[..2], ["sweep", "scenarios/quickstart.toml"]);
        assert_eq!(after(args, "--shard"), format!("{k}/{}", ids.len()));
        assert_eq!(after(args, "--out"), "reports/sweep-77-shards");
        // The task's CPUs: for srun (which does not inherit them) and for the sweep's threads.
        assert!(
            run.srun.contains(&"--cpus-per-task=2".to_string()),
            "{run:?}"
        );
        assert_eq!(run.env, ["RAYON_NUM_THREADS=2"]);
    }
    // Not 0..N-1: 1-4, 0-6:2, 0-3,5; and no array at all.
    run_array(&fakes, &task_env(&[1, 2, 3, 4], 1)).refused("shards need 0..3");
    run_array(&fakes, &task_env(&[0, 2, 4, 6], 2)).refused("shards need 0..3");
    run_array(&fakes, &task_env(&[0, 1, 2, 3, 5], 5)).refused("shards need 0..4");
    run_array(&fakes, &[]).refused("not an array task");
    // Running one shard of an earlier sweep again: SHARDS and OUT say which.
    let mut again = task_env(&[5], 5);
    again.push(("SHARDS", "16".into()));
    run_array(&fakes, &again).refused("set OUT");
    again.push(("OUT", "reports/sweep-12-shards".into()));
    let run = run_array(&fakes, &again);
    assert_eq!(after(run.ran(), "--shard"), "5/16");
    assert_eq!(after(run.ran(), "--out"), "reports/sweep-12-shards");
    again[6].1 = "5".into();
    run_array(&fakes, &again).refused("task 5 is not a shard of 5");
    // The grid and scenario are the caller's to choose.
    let mut other = task_env(&[0, 1], 1);
    other.push(("SCENARIO", "s.toml".into()));
    other.push(("SWEEP_ARGS", "--grid a=1,2 --no-band".into()));
    let run = run_array(&fakes, &other);
    assert_eq!(
        run.ran()[1..6],
        ["s.toml", "--quiet", "--grid", "a=1,2", "--no-band"]
    );
    // No shard count written into the script's code (the array's default size is a directive).
    for line in read(ARRAY)
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
    {
        assert!(!line.contains("16"), "a fixed shard count: {line}");
    }
}

#[test]
fn slurm_merge_reads_what_the_array_writes_and_is_cancelled_if_a_shard_fails() {
    let fakes = Fakes::new();
    // Where task 0 of array job 77 writes, and what the merge given SWEEP_JOB=77 reads.
    let array = run_array(&fakes, &task_env(&[0, 1], 0));
    let shards = after(array.ran(), "--out");
    let env = [("SWEEP_JOB", "77"), ("SLURM_CPUS_PER_TASK", "2")];
    let run = fakes.run("bash", &[root().join(MERGE).to_str().unwrap()], &env);
    assert_eq!(run.ran(), ["merge", shards, "--out", "reports/sweep-77"]);
    assert!(run.srun.contains(&"--cpus-per-task=2".to_string()));
    let run = fakes.run(
        "bash",
        &[root().join(MERGE).to_str().unwrap()],
        &[("OUT", "a"), ("MERGED", "b")],
    );
    assert_eq!(run.ran(), ["merge", "a", "--out", "b"]);
    fakes
        .run("bash", &[root().join(MERGE).to_str().unwrap()], &[])
        .refused("set SWEEP_JOB");

    // Cancelled rather than left pending when a shard fails.
    assert_eq!(directive(MERGE, "kill-on-invalid-dep"), "yes");
    // The logs go where Slurm can open them in a fresh clone: a folder in the repository.
    for rel in [ARRAY, MERGE] {
        let log = directive(rel, "output");
        let dir = Path::new(&log).parent().unwrap();
        assert_eq!(dir, Path::new("reports/slurm"), "{rel}");
        let kept = dir.join("README.md");
        assert!(
            root().join(&kept).is_file(),
            "{} is not in the repository",
            kept.display()
        );
        if root().join(".git").exists() {
            let tracked = Command::new("git")
                .args(["ls-files", "--error-unmatch"])
                .arg(&kept)
                .current_dir(root())
                .output();
            if let Ok(o) = tracked {
                assert!(o.status.success(), "{} is not tracked", kept.display());
            }
        }
    }
    // The README's commands are the scripts' own.
    let readme = read("README.md");
    let block = readme
        .split("<!-- scripts/check-slurm runs this block")
        .nth(1)
        .and_then(|r| r.split("```sh\n").nth(1))
        .and_then(|r| r.split("```").next())
        .expect("the README's Slurm block");
    for rel in [ARRAY, MERGE] {
        let text = read(rel);
        for line in block.lines() {
            assert!(
                text.contains(&format!("#   {line}\n")),
                "{rel} does not show: {line}"
            );
        }
    }
}

// ---- Kubernetes: `trailstop live` --------------------------------------------------------------

/// Every document of a multi-document YAML file.
fn documents(rel: &str) -> Vec<Value> {
    let text = read(rel);
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap_or_else(|e| panic!("{rel}: {e}")))
        .collect()
}

fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

/// `deploy/kubernetes/live.yaml`: one replica of a StatefulSet; the config's database on the
/// claim template's volume; /healthz on the config's port as liveness and readiness; the keys
/// from a Secret as the variables the config names, never inline; Prometheus annotations on
/// that port; a grace period for what is in flight.
#[test]
fn live_statefulset_has_each_property_the_runner_needs() {
    let rel = "deploy/kubernetes/live.yaml";
    let docs = documents(rel);
    assert!(
        of_kind(&docs, "Secret").is_empty(),
        "no Secret (with keys) in {rel}"
    );
    let cms = of_kind(&docs, "ConfigMap");
    let sts = of_kind(&docs, "StatefulSet");
    assert_eq!((cms.len(), sts.len()), (1, 1), "{rel}");
    let (cm, sts) = (cms[0], sts[0]);
    let spec = &sts["spec"];
    assert_eq!(spec["replicas"], 1, "exactly one writer per database");
    let pod = &spec["template"]["spec"];
    let containers = pod["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 1);
    let c = &containers[0];

    // The config the container is given is the ConfigMap's, and trailstop accepts it.
    let args: Vec<&str> = c["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(args[0], "live");
    let config_path = Path::new(args[1]);
    let mounts = c["volumeMounts"].as_array().unwrap();
    let mount_of = |path: &Path| -> &Value {
        mounts
            .iter()
            .filter(|m| path.starts_with(m["mountPath"].as_str().unwrap()))
            .max_by_key(|m| m["mountPath"].as_str().unwrap().len())
            .unwrap_or_else(|| panic!("{} is on no volume", path.display()))
    };
    let cfg_mount = mount_of(config_path);
    let volumes = pod["volumes"].as_array().unwrap();
    let cfg_volume = volumes
        .iter()
        .find(|v| v["name"] == cfg_mount["name"])
        .unwrap();
    assert_eq!(cfg_volume["configMap"]["name"], cm["metadata"]["name"]);
    let file = config_path.file_name().unwrap().to_str().unwrap();
    let text = cm["data"][file]
        .as_str()
        .expect("the config file in the ConfigMap");
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join(file);
    std::fs::write(&local, text).unwrap();
    let config = trailstop::live::LiveConfig::load(&local, &[]).unwrap();

    // The database on the claim template's volume (not the ConfigMap, not an emptyDir).
    let db_mount = mount_of(&config.db);
    let claims = spec["volumeClaimTemplates"].as_array().unwrap();
    assert!(
        claims
            .iter()
            .any(|t| t["metadata"]["name"] == db_mount["name"]),
        "{} is on a persistent volume",
        config.db.display()
    );
    assert!(
        !volumes.iter().any(|v| v["name"] == db_mount["name"]),
        "the database's volume is the claim's, not a pod volume"
    );
    assert_eq!(db_mount["readOnly"], Value::Null);

    // /healthz on the config's port, as liveness and readiness.
    let port = config.listen.port();
    let named = |p: &Value| -> u16 {
        if let Some(n) = p.as_u64() {
            return n as u16;
        }
        let name = p.as_str().unwrap();
        c["ports"]
            .as_array()
            .unwrap()
            .iter()
            .find(|q| q["name"] == name)
            .and_then(|q| q["containerPort"].as_u64())
            .unwrap_or_else(|| panic!("no port {name}")) as u16
    };
    for probe in ["livenessProbe", "readinessProbe"] {
        let get = &c[probe]["httpGet"];
        assert_eq!(get["path"], "/healthz", "{probe}");
        assert_eq!(named(&get["port"]), port, "{probe}");
    }
    assert!(
        !config.listen.ip().is_loopback(),
        "the probes reach the pod's address"
    );

    // The keys: exactly the variables the config names, each from a Secret, none inline.
    let env = c["env"].as_array().unwrap();
    for var in [&config.venue.api_key_env, &config.venue.api_secret_env] {
        let e = env
            .iter()
            .find(|e| e["name"] == var.as_str())
            .unwrap_or_else(|| panic!("{var} is not set"));
        assert_eq!(e["value"], Value::Null, "{var} inline");
        assert!(e["valueFrom"]["secretKeyRef"]["name"].is_string(), "{var}");
        assert!(e["valueFrom"]["secretKeyRef"]["key"].is_string(), "{var}");
    }
    assert!(
        env.iter()
            .all(|e| e["value"].is_null() || !e["name"].as_str().unwrap().contains("KEY")),
        "no key inline"
    );

    // Scraped on the config's port and path.
    let ann = &spec["template"]["metadata"]["annotations"];
    assert_eq!(ann["prometheus.io/scrape"], "true");
    assert_eq!(ann["prometheus.io/port"], port.to_string());
    assert_eq!(ann["prometheus.io/path"], "/metrics");

    // SIGTERM, then time for in-flight commands (5 attempts of 5 s at most) before SIGKILL.
    let grace = pod["terminationGracePeriodSeconds"].as_u64().unwrap();
    assert!(grace >= 30, "grace {grace} s");
}
