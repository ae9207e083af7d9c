//! A real node for the end-to-end tests: kubelet v1.20.2 (built with the
//! API server by `scripts/ensure-kube.sh`), Debian's containerd and runc,
//! the bridge CNI plugin, and images imported without a registry.
//!
//! Isolation (`../shared/notes/real-node.md` has the reasons): containerd
//! runs as PID 1 of its own PID and mount namespace, in which private
//! folders hide the host's `/run`, `/var/lib` and `/var/log` and private
//! files the sysctls the kubelet and the bridge plugin write; the kubelet
//! joins those namespaces. Dropping the [`Node`] (also on a panic) kills
//! that PID 1, which takes the kubelet, shims and containers with it, then
//! removes the cgroups and the bridge. If the test process dies without
//! unwinding, `setpriv --pdeathsig` kills the namespace all the same.
//!
//! Network: the node is `127.0.0.1` (kubelet and containerd's streaming
//! server on loopback, unique ports); pods with their own network namespace
//! get a link-local address (169.254.N.0/24, never 169.254.169.254 or
//! 169.254.170.23) on a bridge of this node only, with a single route: to
//! the agent's address 169.254.170.23. Pods that talk to moto or the API
//! server use `hostNetwork: true`.
//!
//! Long because it is one harness (namespaces, containerd, kubelet, images,
//! teardown); nothing here ships.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use serde_json::{json, Value};

use crate::harness::{
    free_port, kube_assets, spawn_env, static_release_bins, tail, workspace_root, Cluster, Proc,
};

/// The node's name (and InternalIP): `--hostname-override=127.0.0.1`.
pub const NODE_NAME: &str = "127.0.0.1";
/// The agent's IPv4 address, the one address pods in their own network
/// namespace are routed to.
pub const AGENT_ADDRESS: &str = "169.254.170.23";
/// The pause image every pod sandbox runs.
pub const PAUSE_IMAGE: &str = "localhost/pause:e2e";
/// The test client image: `/aws-sdk-probe` (aws-sdk-rust, static) and
/// busybox (`/bin/sh`, `cat`, `sleep`, ...).
pub const CLIENT_IMAGE: &str = "localhost/test-client:e2e";

fn run(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn need(path: &str, package: &str) -> Result<PathBuf> {
    let p = PathBuf::from(path);
    ensure!(
        p.exists(),
        "{path} is missing: install Debian's {package} (scripts/ensure-kube.sh does)"
    );
    Ok(p)
}

/// One free /24 of 169.254.0.0/16 for the node's pods: none of the host's
/// addresses in it, never the metadata (169.254.169.x) or agent
/// (169.254.170.x) ones.
fn pod_subnet() -> Result<u8> {
    let addrs = run(Command::new("ip").args(["-4", "-o", "addr", "show"]))?;
    let start = 10 + (std::process::id() % 150) as u8;
    for i in 0..150u8 {
        let n = 10 + (start - 10 + i) % 150;
        if !addrs.contains(&format!("169.254.{n}.")) {
            return Ok(n);
        }
    }
    bail!("no free 169.254.N.0/24 for the node's pods")
}

/// A docker-archive tarball (what `docker save` writes and `ctr images
/// import` reads) of one layer holding `rootfs`.
pub fn docker_archive(
    out: &Path,
    tag: &str,
    rootfs: &Path,
    entrypoint: &[&str],
    env: &[&str],
) -> Result<()> {
    let work = tempfile::tempdir()?;
    let layer = work.path().join("layer.tar");
    run(Command::new("tar")
        .args(["--numeric-owner", "--owner=0", "--group=0", "-cf"])
        .arg(&layer)
        .arg("-C")
        .arg(rootfs)
        .arg("."))?;
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &std::fs::read(&layer)?);
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    let config = json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Entrypoint": entrypoint, "Env": env},
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{hex}")]},
    });
    std::fs::write(work.path().join("config.json"), config.to_string())?;
    let manifest = json!([{"Config": "config.json", "RepoTags": [tag], "Layers": ["layer.tar"]}]);
    std::fs::write(work.path().join("manifest.json"), manifest.to_string())?;
    run(Command::new("tar")
        .arg("-cf")
        .arg(out)
        .arg("-C")
        .arg(work.path())
        .args(["manifest.json", "config.json", "layer.tar"]))?;
    Ok(())
}

/// The pause image: a static C program that sleeps until SIGTERM/SIGINT.
pub fn pause_archive(dir: &Path) -> Result<PathBuf> {
    let rootfs = dir.join("pause-rootfs");
    std::fs::create_dir_all(&rootfs)?;
    let src = dir.join("pause.c");
    std::fs::write(
        &src,
        "#include <signal.h>\n#include <unistd.h>\nstatic void done(int s) { (void)s; _exit(0); }\n\
         int main(void) { signal(SIGTERM, done); signal(SIGINT, done); for (;;) pause(); }\n",
    )?;
    run(Command::new("gcc")
        .args(["-static", "-Os", "-o"])
        .arg(rootfs.join("pause"))
        .arg(&src))?;
    let out = dir.join("pause.tar");
    docker_archive(&out, PAUSE_IMAGE, &rootfs, &["/pause"], &[])?;
    Ok(out)
}

/// Builds `aws-sdk-probe` statically (release, crt-static, as the project's
/// image is built) and returns its path.
pub fn static_probe() -> Result<PathBuf> {
    let bin = static_release_bins(&["e2e-tests"], &["aws-sdk-probe"])?.join("aws-sdk-probe");
    let ldd = Command::new("ldd").arg(&bin).output()?;
    let said =
        String::from_utf8_lossy(&ldd.stdout).to_string() + &String::from_utf8_lossy(&ldd.stderr);
    ensure!(
        said.contains("statically linked") || said.contains("not a dynamic executable"),
        "{} is not static: {said}",
        bin.display()
    );
    Ok(bin)
}

/// The test client image: the static aws-sdk-probe and busybox-static.
pub fn client_archive(dir: &Path) -> Result<PathBuf> {
    let rootfs = dir.join("client-rootfs");
    std::fs::create_dir_all(rootfs.join("bin"))?;
    std::fs::create_dir_all(rootfs.join("tmp"))?;
    std::fs::copy(static_probe()?, rootfs.join("aws-sdk-probe"))?;
    std::fs::copy(
        need("/bin/busybox", "busybox-static")?,
        rootfs.join("bin/busybox"),
    )?;
    for applet in ["sh", "cat", "sleep", "ls", "id", "stat", "wget", "env"] {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet))?;
    }
    let out = dir.join("client.tar");
    docker_archive(
        &out,
        CLIENT_IMAGE,
        &rootfs,
        &["/bin/sleep", "3600"],
        &["PATH=/bin:/"],
    )?;
    Ok(out)
}

/// The project's image (`scripts/build-image.sh`) saved as a docker archive.
/// Returns the archive and the image reference.
pub fn project_archive(dir: &Path) -> Result<(PathBuf, String)> {
    let out = run(Command::new("bash")
        .arg(workspace_root().join("scripts/build-image.sh"))
        .stderr(Stdio::inherit()))?;
    let image = out
        .lines()
        .last()
        .context("build-image.sh printed nothing")?
        .to_string();
    let tar = dir.join("project.tar");
    let _ = std::fs::remove_file(&tar);
    run(Command::new("podman")
        .args([
            "--runtime",
            "runc",
            "--cgroup-manager=cgroupfs",
            "save",
            "--format",
            "docker-archive",
            "-o",
        ])
        .arg(&tar)
        .arg(&image))?;
    Ok((tar, image))
}

/// containerd, kubelet and kube-controller-manager (its ServiceAccount
/// token controller only, so that pods may mount their ServiceAccount's
/// token as on a real cluster), torn down on drop.
pub struct Node {
    pub dir: PathBuf,
    /// `setpriv --pdeathsig KILL unshare ... sh -c '... exec containerd'`.
    namespace: Child,
    containerd_pid: u32,
    socket: PathBuf,
    kubelet: Option<Proc>,
    controller_manager: Option<Proc>,
    /// The bridge of this node's pods (deleted on drop).
    pub bridge: String,
    /// N of the pods' 169.254.N.0/24.
    pub subnet: u8,
    /// Test-made links deleted on drop (e.g. the agent's interface).
    links: Vec<String>,
    pub kubelet_port: u16,
    /// Seconds from the kubelet's start until the Node was Ready.
    pub ready_after: Duration,
}

impl Node {
    /// Starts the node for `cluster`, imports the pause image, and waits
    /// until the Node object is Ready.
    pub async fn start(cluster: &Cluster) -> Result<Node> {
        let assets = kube_assets()?;
        let kubelet_bin = assets.join("kubelet");
        ensure!(
            kubelet_bin.exists(),
            "{} is missing (scripts/ensure-kube.sh builds it)",
            kubelet_bin.display()
        );
        let containerd = need("/usr/bin/containerd", "containerd")?;
        need("/usr/sbin/runc", "runc")?;
        need("/usr/lib/cni/bridge", "containernetworking-plugins")?;
        let dir = cluster.dir.path().join("node");
        let d = &dir;
        for sub in [
            "run",
            "varlib",
            "varlog",
            "sysctl",
            "cni",
            "cni-ipam",
            "kubelet",
            "pki",
            "volume-plugins",
            "opt",
            "images",
        ] {
            std::fs::create_dir_all(d.join(sub))?;
        }
        let subnet = pod_subnet()?;
        let kubelet_port = free_port();
        let bridge = format!("pi{kubelet_port}");
        let socket = d.join("containerd.sock");
        std::fs::write(
            d.join("containerd.toml"),
            format!(
                r#"version = 2
root = "{d}/containerd-root"
state = "{d}/containerd-state"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = "{sock}"
[ttrpc]
  address = "{sock}.ttrpc"
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "{d}/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  disable_apparmor = true
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{d}/cni"
"#,
                d = d.display(),
                sock = socket.display(),
            ),
        )?;
        std::fs::write(
            d.join("cni/10-e2e.conflist"),
            json!({
                "cniVersion": "0.4.0",
                "name": "e2e",
                "plugins": [{
                    "type": "bridge",
                    "bridge": bridge,
                    "isGateway": true,
                    "ipMasq": false,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": format!("169.254.{subnet}.0/24")}]],
                        "routes": [{"dst": format!("{AGENT_ADDRESS}/32")}],
                        "dataDir": d.join("cni-ipam"),
                    }
                }]
            })
            .to_string(),
        )?;
        // The sysctls the kubelet and the bridge plugin set get private copies.
        let sysctls = [
            "vm/overcommit_memory",
            "vm/panic_on_oom",
            "kernel/panic",
            "kernel/panic_on_oops",
            "kernel/keys/root_maxkeys",
            "kernel/keys/root_maxbytes",
            "net/ipv4/ip_forward",
        ];
        let mut script = String::from("set -e\n");
        for (from, to) in [
            ("run", "/run"),
            ("varlib", "/var/lib"),
            ("varlog", "/var/log"),
        ] {
            script += &format!("mount --bind '{}' {to}\n", d.join(from).display());
        }
        for s in sysctls {
            let copy = d.join("sysctl").join(s.replace('/', "_"));
            std::fs::write(
                &copy,
                std::fs::read(format!("/proc/sys/{s}")).unwrap_or_default(),
            )?;
            script += &format!("mount --bind '{}' /proc/sys/{s}\n", copy.display());
        }
        script += &format!(
            "exec '{}' --config '{}'\n",
            containerd.display(),
            d.join("containerd.toml").display()
        );
        let log = std::fs::File::create(d.join("containerd.log"))?;
        let namespace = Command::new("setpriv")
            .args([
                "--pdeathsig",
                "KILL",
                "--",
                "unshare",
                "--fork",
                "--kill-child",
                "--pid",
                "--mount-proc",
                "--mount",
                "--propagation",
                "private",
                "sh",
                "-c",
            ])
            .arg(&script)
            .stdout(log.try_clone()?)
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .context("starting containerd in its own namespaces")?;
        let mut node = Node {
            dir: dir.clone(),
            namespace,
            containerd_pid: 0,
            socket: socket.clone(),
            kubelet: None,
            controller_manager: None,
            bridge,
            subnet,
            links: Vec::new(),
            kubelet_port,
            ready_after: Duration::ZERO,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !(socket.exists() && node.containerd_pid != 0) {
            let children = std::fs::read_to_string(format!(
                "/proc/{0}/task/{0}/children",
                node.namespace.id()
            ))
            .unwrap_or_default();
            node.containerd_pid = children
                .split_whitespace()
                .next()
                .and_then(|p| p.parse().ok())
                .unwrap_or(0);
            if let Ok(Some(status)) = node.namespace.try_wait() {
                bail!(
                    "containerd exited ({status}):\n{}",
                    tail(&d.join("containerd.log"))
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "containerd did not start in 30 s:\n{}",
                    tail(&d.join("containerd.log"))
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        node.import(&pause_archive(&d.join("images"))?)?;

        // The kubelet's configuration: everything on loopback and in `d`.
        let healthz_port = free_port();
        std::fs::write(
            d.join("kubelet.yaml"),
            json!({
                "apiVersion": "kubelet.config.k8s.io/v1beta1",
                "kind": "KubeletConfiguration",
                "address": "127.0.0.1",
                "port": kubelet_port,
                "readOnlyPort": 0,
                "healthzBindAddress": "127.0.0.1",
                "healthzPort": healthz_port,
                "cgroupDriver": "cgroupfs",
                "cgroupsPerQOS": false,
                "enforceNodeAllocatable": [],
                "failSwapOn": false,
                "evictionHard": {},
                "imageGCHighThresholdPercent": 100,
                "imageGCLowThresholdPercent": 99,
                "makeIPTablesUtilChains": false,
                "nodeStatusUpdateFrequency": "1s",
                "volumePluginDir": d.join("volume-plugins"),
                "authentication": {"anonymous": {"enabled": true}, "webhook": {"enabled": false}},
                "authorization": {"mode": "AlwaysAllow"},
            })
            .to_string(),
        )?;
        let ns = node.containerd_pid.to_string();
        let args: Vec<String> = vec![
            "-t".into(),
            ns,
            "-m".into(),
            "-p".into(),
            kubelet_bin.display().to_string(),
            format!("--config={}", d.join("kubelet.yaml").display()),
            format!("--kubeconfig={}", cluster.kubeconfig.display()),
            "--container-runtime=remote".into(),
            format!("--container-runtime-endpoint=unix://{}", socket.display()),
            format!("--root-dir={}", d.join("kubelet").display()),
            format!("--cert-dir={}", d.join("pki").display()),
            format!("--hostname-override={NODE_NAME}"),
            format!("--pod-infra-container-image={PAUSE_IMAGE}"),
            "--v=1".into(),
        ];
        let started = Instant::now();
        // Without it, the in-tree ECR credential provider probes
        // 169.254.169.254 at start.
        node.kubelet = Some(spawn_env(
            "kubelet",
            Path::new("/usr/bin/nsenter"),
            &args,
            d,
            &[("AWS_EC2_METADATA_DISABLED", "true")],
        )?);
        node.controller_manager = Some(start_token_controller(cluster, &assets)?);
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if let Ok(n) = cluster.get(&format!("/api/v1/nodes/{NODE_NAME}")).await {
                let ready = n["status"]["conditions"].as_array().is_some_and(|c| {
                    c.iter()
                        .any(|c| c["type"] == "Ready" && c["status"] == "True")
                });
                if ready {
                    node.ready_after = started.elapsed();
                    return Ok(node);
                }
            }
            for p in [&node.kubelet, &node.controller_manager]
                .into_iter()
                .flatten()
            {
                if p.exited() {
                    bail!("{} exited:\n{}\n{}", p.name, tail(&p.log), node.logs());
                }
            }
            if Instant::now() > deadline {
                bail!("the node was not Ready in 90 s:\n{}", node.logs());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Imports a docker-archive tarball into containerd's `k8s.io` namespace.
    pub fn import(&self, archive: &Path) -> Result<()> {
        run(Command::new("ctr")
            .arg("--address")
            .arg(&self.socket)
            .args(["-n", "k8s.io", "images", "import"])
            .arg(archive))?;
        Ok(())
    }

    /// A veth pair made by the test (for the agent's `setup-link
    /// --interface`, on kernels without dummy links); deleted on drop.
    pub fn add_veth(&mut self) -> Result<String> {
        let name = format!("pa{}", self.kubelet_port);
        run(Command::new("ip").args([
            "link",
            "add",
            &name,
            "type",
            "veth",
            "peer",
            "name",
            &format!("pb{}", self.kubelet_port),
        ]))?;
        self.links.push(name.clone());
        Ok(name)
    }

    /// A link some step of the test may make on the host (deleted on drop
    /// if it exists).
    pub fn delete_on_drop(&mut self, link: &str) {
        self.links.push(link.to_string());
    }

    /// containerd's PID (PID 1 of the node's namespace) on the host.
    pub fn containerd_pid(&self) -> u32 {
        self.containerd_pid
    }

    /// The links this node made and deletes on drop.
    pub fn links(&self) -> Vec<String> {
        self.links.clone()
    }

    pub fn logs(&self) -> String {
        let mut s = format!(
            "--- containerd:\n{}",
            tail(&self.dir.join("containerd.log"))
        );
        for p in [&self.kubelet, &self.controller_manager]
            .into_iter()
            .flatten()
        {
            s += &format!("\n--- {}:\n{}", p.name, tail(&p.log));
        }
        s
    }
}

fn start_token_controller(cluster: &Cluster, assets: &Path) -> Result<Proc> {
    let d = cluster.dir.path();
    spawn_env(
        "kube-controller-manager",
        &assets.join("kube-controller-manager"),
        &[
            format!("--kubeconfig={}", cluster.kubeconfig.display()),
            "--leader-elect=false".into(),
            "--bind-address=127.0.0.1".into(),
            "--port=0".into(),
            "--secure-port=0".into(),
            "--controllers=serviceaccount-token".into(),
            format!(
                "--service-account-private-key-file={}",
                d.join("sa.key").display()
            ),
            format!("--root-ca-file={}", cluster.serving_ca_file().display()),
        ],
        d,
        &[],
    )
}

impl Drop for Node {
    fn drop(&mut self) {
        // `unshare --fork` ignores SIGTERM; SIGKILL makes its PID 1
        // (containerd) and with it every process of the namespace die.
        let _ = self.namespace.kill();
        let _ = self.namespace.wait();
        self.kubelet = None;
        self.controller_manager = None;
        // The namespace's processes are gone a moment later; then their
        // cgroups can be removed.
        let deadline = Instant::now() + Duration::from_secs(10);
        while Path::new(&format!("/proc/{}", self.containerd_pid)).exists()
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(100));
        }
        remove_pod_cgroups(Instant::now() + Duration::from_secs(10));
        for link in self.links.iter().chain(std::iter::once(&self.bridge)) {
            let _ = Command::new("ip")
                .args(["link", "del", link])
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// Removes the containers' cgroups (`<controller>/k8s.io/<id>`), retrying
/// while their last processes exit.
fn remove_pod_cgroups(deadline: Instant) {
    loop {
        let mut left = false;
        for controller in std::fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
        {
            let parent = controller.path().join("k8s.io");
            for entry in std::fs::read_dir(&parent).into_iter().flatten().flatten() {
                if entry.path().is_dir() && std::fs::remove_dir(entry.path()).is_err() {
                    left = true;
                }
            }
        }
        if !left || Instant::now() > deadline {
            // The parents too, once no node uses them (fails otherwise).
            for controller in std::fs::read_dir("/sys/fs/cgroup")
                .into_iter()
                .flatten()
                .flatten()
            {
                let _ = std::fs::remove_dir(controller.path().join("k8s.io"));
            }
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Waits until the pod's phase is one of `phases` (or a container waits
/// with an error reason), returning the pod.
pub async fn wait_pod(cluster: &Cluster, ns: &str, name: &str, phases: &[&str]) -> Result<Value> {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let pod = cluster
            .get(&format!("/api/v1/namespaces/{ns}/pods/{name}"))
            .await?;
        let phase = pod["status"]["phase"].as_str().unwrap_or_default();
        if phases.contains(&phase) {
            return Ok(pod);
        }
        if Instant::now() > deadline {
            bail!("pod {ns}/{name} not {phases:?} in 90 s: {}", pod["status"]);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// `kubectl` (v1.20.2, from the same build as the API server) against the
/// cluster: returns stdout, or fails with stderr.
pub fn kubectl(cluster: &Cluster, args: &[&str]) -> Result<String> {
    let out = kubectl_output(cluster, args)?;
    if !out.status.success() {
        bail!(
            "kubectl {} failed ({}): {}{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `kubectl` with its whole output, whatever its exit status.
pub fn kubectl_output(cluster: &Cluster, args: &[&str]) -> Result<std::process::Output> {
    let bin = kube_assets()?.join("kubectl");
    Ok(Command::new(bin)
        .arg(format!("--kubeconfig={}", cluster.kubeconfig.display()))
        .args(args)
        .stdin(Stdio::null())
        .output()?)
}
