//! Unit tests for building runtime specs from containers, sandboxes and image configs.

use super::*;
use oci_spec::image::{ConfigBuilder, ImageConfigurationBuilder};
use oci_spec::runtime::LinuxNamespace;

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

fn image(entrypoint: &[&str], cmd: &[&str], env: &[&str], user: &str, workdir: &str) -> ImageConfiguration {
    let mut config = ConfigBuilder::default().env(s(env)).user(user.to_string());
    if !entrypoint.is_empty() {
        config = config.entrypoint(s(entrypoint));
    }
    if !cmd.is_empty() {
        config = config.cmd(s(cmd));
    }
    if !workdir.is_empty() {
        config = config.working_dir(workdir.to_string());
    }
    ImageConfigurationBuilder::default()
        .config(config.build().unwrap())
        .build()
        .unwrap()
}

fn busybox() -> ImageConfiguration {
    image(
        &["/bin/entry"],
        &["default-cmd"],
        &["PATH=/bin:/usr/bin", "LANG=C"],
        "",
        "/srv",
    )
}

struct Fixture {
    rootfs: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Self {
        let rootfs = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(rootfs.path().join("etc")).unwrap();
        std::fs::write(
            rootfs.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nweb:x:33:33::/var/www:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(rootfs.path().join("etc/group"), "root:x:0:\nweb:x:33:\nlogs:x:4:web\n").unwrap();
        Self { rootfs }
    }

    fn spec(&self, c: &ContainerConfig, sb: &SandboxConfig, img: &ImageConfiguration) -> Result<Spec, BundleError> {
        runtime_spec(c, sb, img, self.rootfs.path())
    }
}

fn container() -> ContainerConfig {
    ContainerConfig {
        id: "ctr-1".into(),
        name: "app".into(),
        hostname: Some("web-0".into()),
        ..Default::default()
    }
}

fn sandbox() -> SandboxConfig {
    SandboxConfig {
        network: NamespaceMode::Join("/var/run/netns/pod-1".into()),
        ipc: NamespaceMode::Join("/proc/100/ns/ipc".into()),
        uts: NamespaceMode::Join("/proc/100/ns/uts".into()),
        pid: NamespaceMode::Private,
        cgroup_parent: "/skiff/kubepods/pod1234".into(),
        resolv_conf: Some("/var/lib/skiff/pods/1234/resolv.conf".into()),
        hosts: Some("/var/lib/skiff/pods/1234/hosts".into()),
        hostname_file: Some("/var/lib/skiff/pods/1234/hostname".into()),
        shm: None,
    }
}

fn args_of(spec: &Spec) -> Vec<String> {
    spec.process().as_ref().unwrap().args().clone().unwrap()
}

fn caps_of(spec: &Spec) -> Capabilities {
    spec.process()
        .as_ref()
        .unwrap()
        .capabilities()
        .as_ref()
        .unwrap()
        .bounding()
        .clone()
        .unwrap()
}

fn namespaces_of(spec: &Spec) -> Vec<LinuxNamespace> {
    spec.linux().as_ref().unwrap().namespaces().clone().unwrap()
}

fn ns(spec: &Spec, typ: LinuxNamespaceType) -> Option<LinuxNamespace> {
    namespaces_of(spec).into_iter().find(|n| n.typ() == typ)
}

#[test]
fn command_and_args_follow_the_kubernetes_table() {
    let f = Fixture::new();
    let img = busybox();
    let cases: [(&[&str], &[&str], &[&str]); 4] = [
        (&[], &[], &["/bin/entry", "default-cmd"]),
        (&["/bin/cmd"], &[], &["/bin/cmd"]),
        (&[], &["a1", "a2"], &["/bin/entry", "a1", "a2"]),
        (&["/bin/cmd"], &["a1"], &["/bin/cmd", "a1"]),
    ];
    for (command, args, want) in cases {
        let c = ContainerConfig {
            command: s(command),
            args: s(args),
            ..container()
        };
        assert_eq!(
            args_of(&f.spec(&c, &sandbox(), &img).unwrap()),
            s(want),
            "command={command:?} args={args:?}"
        );
    }
    // No Entrypoint: Cmd alone, or args alone.
    let cmd_only = image(&[], &["sh"], &[], "", "");
    assert_eq!(
        args_of(&f.spec(&container(), &sandbox(), &cmd_only).unwrap()),
        s(&["sh"])
    );
    let c = ContainerConfig {
        args: s(&["echo", "hi"]),
        ..container()
    };
    assert_eq!(args_of(&f.spec(&c, &sandbox(), &cmd_only).unwrap()), s(&["echo", "hi"]));
    // Nothing at all is an error.
    let empty = image(&[], &[], &[], "", "");
    assert!(matches!(
        f.spec(&container(), &sandbox(), &empty),
        Err(BundleError::NoCommand)
    ));
}

#[test]
fn env_merges_image_then_container_and_defaults_path() {
    let f = Fixture::new();
    let c = ContainerConfig {
        env: vec![("LANG".into(), "en_US.UTF-8".into()), ("EXTRA".into(), "a=b".into())],
        ..container()
    };
    let spec = f.spec(&c, &sandbox(), &busybox()).unwrap();
    let env = spec.process().as_ref().unwrap().env().clone().unwrap();
    assert_eq!(
        env,
        s(&["HOSTNAME=web-0", "PATH=/bin:/usr/bin", "LANG=en_US.UTF-8", "EXTRA=a=b"])
    );

    let no_path = image(&["x"], &[], &["A=1"], "", "");
    let env = merge_env(no_path.config().as_ref().unwrap().env().as_ref().unwrap(), &[], None).unwrap();
    assert_eq!(env, vec!["A=1".to_string(), format!("PATH={DEFAULT_PATH}")]);
    let env = merge_env(&[], &[("PATH".into(), "/opt/bin".into())], None).unwrap();
    assert_eq!(env, s(&["PATH=/opt/bin"]));
    assert!(matches!(
        merge_env(&[], &[("A=B".into(), "x".into())], None),
        Err(BundleError::InvalidEnv(_))
    ));
}

#[test]
fn working_dir_prefers_container_then_image_then_root() {
    let f = Fixture::new();
    let cwd = |c: &ContainerConfig, img: &ImageConfiguration| {
        f.spec(c, &sandbox(), img)
            .unwrap()
            .process()
            .as_ref()
            .unwrap()
            .cwd()
            .clone()
    };
    let c = ContainerConfig {
        working_dir: Some("/work".into()),
        ..container()
    };
    assert_eq!(cwd(&c, &busybox()), PathBuf::from("/work"));
    assert_eq!(cwd(&container(), &busybox()), PathBuf::from("/srv"));
    assert_eq!(cwd(&container(), &image(&["x"], &[], &[], "", "")), PathBuf::from("/"));
}

#[test]
fn user_comes_from_the_rootfs_and_the_security_context() {
    let f = Fixture::new();
    let img = image(&["x"], &[], &[], "web", "");
    let spec = f.spec(&container(), &sandbox(), &img).unwrap();
    let user = spec.process().as_ref().unwrap().user().clone();
    assert_eq!((user.uid(), user.gid()), (33, 33));
    assert_eq!(user.additional_gids().clone(), Some(vec![4]));

    let c = ContainerConfig {
        user: UserConfig {
            run_as_user: Some(1000),
            run_as_group: Some(2000),
            supplemental_groups: vec![3000],
            ..Default::default()
        },
        ..container()
    };
    let user = f
        .spec(&c, &sandbox(), &img)
        .unwrap()
        .process()
        .as_ref()
        .unwrap()
        .user()
        .clone();
    assert_eq!(
        (user.uid(), user.gid(), user.additional_gids().clone()),
        (1000, 2000, Some(vec![3000]))
    );

    let bad = image(&["x"], &[], &[], "nobody-here", "");
    assert!(matches!(
        f.spec(&container(), &sandbox(), &bad),
        Err(BundleError::UnknownUser { .. })
    ));
}

#[test]
fn cpu_and_memory_follow_the_kubelet() {
    let shares = |req: Option<u64>, lim: Option<u64>| ResourceConfig {
        cpu_request_millis: req,
        cpu_limit_millis: lim,
        ..Default::default()
    };
    // No requests or limits: minimum shares, no quota.
    assert_eq!(shares(None, None).cpu_shares(), 2);
    assert_eq!(shares(None, None).cpu_quota(), None);
    // Request only: shares from the request, no quota.
    assert_eq!(shares(Some(250), None).cpu_shares(), 256);
    assert_eq!(shares(Some(250), None).cpu_quota(), None);
    assert_eq!(shares(Some(1), None).cpu_shares(), 2, "tiny requests get the minimum");
    // Limit only: request defaults to the limit.
    assert_eq!(shares(None, Some(500)).cpu_shares(), 512);
    assert_eq!(shares(None, Some(500)).cpu_quota(), Some(50_000));
    // Both.
    assert_eq!(shares(Some(100), Some(2000)).cpu_shares(), 102);
    assert_eq!(shares(Some(100), Some(2000)).cpu_quota(), Some(200_000));
    assert_eq!(
        shares(None, Some(5)).cpu_quota(),
        Some(MIN_CPU_QUOTA_US),
        "quota has a floor"
    );

    let f = Fixture::new();
    let c = ContainerConfig {
        resources: ResourceConfig::from_quantities(Some("100m"), Some("0.5"), Some("128Mi"), Some(64)).unwrap(),
        ..container()
    };
    let spec = f.spec(&c, &sandbox(), &busybox()).unwrap();
    let res = spec.linux().as_ref().unwrap().resources().clone().unwrap();
    let cpu = res.cpu().clone().unwrap();
    assert_eq!(
        (cpu.shares(), cpu.quota(), cpu.period()),
        (Some(102), Some(50_000), Some(100_000))
    );
    assert_eq!(res.memory().unwrap().limit(), Some(128 * 1024 * 1024));
    assert_eq!(res.pids().unwrap().limit(), 64);

    let spec = f.spec(&container(), &sandbox(), &busybox()).unwrap();
    let res = spec.linux().as_ref().unwrap().resources().clone().unwrap();
    let cpu = res.cpu().clone().unwrap();
    assert_eq!((cpu.shares(), cpu.quota(), cpu.period()), (Some(2), None, None));
    assert!(res.memory().is_none() && res.pids().is_none());
    assert!(ResourceConfig::from_quantities(Some("lots"), None, None, None).is_err());
}

#[test]
fn defaults_mask_paths_and_keep_the_default_capabilities() {
    let f = Fixture::new();
    let spec = f.spec(&container(), &sandbox(), &busybox()).unwrap();
    let linux = spec.linux().as_ref().unwrap();
    let masked = linux.masked_paths().clone().unwrap();
    for p in [
        "/proc/kcore",
        "/proc/keys",
        "/proc/timer_list",
        "/proc/sched_debug",
        "/sys/firmware",
        "/proc/scsi",
    ] {
        assert!(masked.contains(&p.to_string()), "{p} masked");
    }
    assert_eq!(linux.readonly_paths().clone().unwrap(), s(READONLY_PATHS));
    let caps = caps_of(&spec);
    assert_eq!(caps.len(), DEFAULT_CAPABILITIES.len());
    assert!(caps.contains(&Capability::NetRaw) && !caps.contains(&Capability::SysAdmin));
    let process = spec.process().as_ref().unwrap();
    assert_eq!(
        process.no_new_privileges(),
        Some(false),
        "unset allowPrivilegeEscalation allows it, as the kubelet"
    );
    let sys = spec
        .mounts()
        .as_ref()
        .unwrap()
        .iter()
        .find(|m| m.destination() == Path::new("/sys"))
        .unwrap();
    assert!(sys.options().as_ref().unwrap().contains(&"ro".to_string()));
    let devices = linux.resources().as_ref().unwrap().devices().clone().unwrap();
    assert!(!devices[0].allow(), "device access denied by default");

    let c = ContainerConfig {
        allow_privilege_escalation: Some(false),
        ..container()
    };
    let spec = f.spec(&c, &sandbox(), &busybox()).unwrap();
    assert_eq!(spec.process().as_ref().unwrap().no_new_privileges(), Some(true));
}

#[test]
fn privileged_unmasks_and_grants_every_capability() {
    let f = Fixture::new();
    let c = ContainerConfig {
        privileged: true,
        allow_privilege_escalation: Some(false),
        capabilities: CapabilitiesConfig {
            drop: s(&["ALL"]),
            ..Default::default()
        },
        ..container()
    };
    let spec = f.spec(&c, &sandbox(), &busybox()).unwrap();
    let linux = spec.linux().as_ref().unwrap();
    assert!(linux.masked_paths().is_none() && linux.readonly_paths().is_none());
    assert_eq!(caps_of(&spec).len(), ALL_CAPABILITIES.len());
    assert!(caps_of(&spec).contains(&Capability::SysAdmin));
    assert_eq!(spec.process().as_ref().unwrap().no_new_privileges(), Some(false));
    let sys = spec
        .mounts()
        .as_ref()
        .unwrap()
        .iter()
        .find(|m| m.destination() == Path::new("/sys"))
        .unwrap();
    assert!(sys.options().as_ref().unwrap().contains(&"rw".to_string()));
    assert!(linux.resources().as_ref().unwrap().devices().clone().unwrap()[0].allow());
}

#[test]
fn capabilities_add_and_drop_with_or_without_prefix() {
    let set = |add: &[&str], drop: &[&str]| {
        capability_set(
            false,
            &CapabilitiesConfig {
                add: s(add),
                drop: s(drop),
            },
        )
    };
    let caps = set(&["NET_ADMIN", "CAP_SYS_TIME", "sys_ptrace"], &["CAP_NET_RAW", "MKNOD"]).unwrap();
    assert!(caps.contains(&Capability::NetAdmin));
    assert!(caps.contains(&Capability::SysTime));
    assert!(caps.contains(&Capability::SysPtrace));
    assert!(!caps.contains(&Capability::NetRaw));
    assert!(!caps.contains(&Capability::Mknod));
    assert_eq!(caps.len(), DEFAULT_CAPABILITIES.len() + 3 - 2);

    let only = set(&["NET_BIND_SERVICE"], &["ALL"]).unwrap();
    assert_eq!(only, [Capability::NetBindService].into_iter().collect());
    let all_but = set(&["ALL"], &["CAP_CHOWN"]).unwrap();
    assert_eq!(all_but.len(), ALL_CAPABILITIES.len() - 1);
    assert!(!all_but.contains(&Capability::Chown));
    assert!(matches!(set(&["CAP_FLY"], &[]), Err(BundleError::UnknownCapability(n)) if n == "CAP_FLY"));
}

#[test]
fn host_network_has_no_network_namespace() {
    let f = Fixture::new();
    let sb = SandboxConfig {
        network: NamespaceMode::Host,
        uts: NamespaceMode::Host,
        ..sandbox()
    };
    let spec = f.spec(&container(), &sb, &busybox()).unwrap();
    assert!(ns(&spec, LinuxNamespaceType::Network).is_none());
    assert!(ns(&spec, LinuxNamespaceType::Uts).is_none());
    assert!(spec.hostname().is_none(), "no hostname without a UTS namespace");
    assert!(ns(&spec, LinuxNamespaceType::Mount).is_some());
    assert_eq!(
        ns(&spec, LinuxNamespaceType::Ipc).unwrap().path().clone(),
        Some("/proc/100/ns/ipc".into())
    );

    let spec = f.spec(&container(), &sandbox(), &busybox()).unwrap();
    assert_eq!(
        ns(&spec, LinuxNamespaceType::Network).unwrap().path().clone(),
        Some("/var/run/netns/pod-1".into())
    );
    assert_eq!(spec.hostname().as_deref(), Some("web-0"));
}

#[test]
fn pid_namespace_is_own_or_shared() {
    let f = Fixture::new();
    let spec = f.spec(&container(), &sandbox(), &busybox()).unwrap();
    assert_eq!(ns(&spec, LinuxNamespaceType::Pid).unwrap().path(), &None);
    let sb = SandboxConfig {
        pid: NamespaceMode::Join("/proc/100/ns/pid".into()),
        ..sandbox()
    };
    let spec = f.spec(&container(), &sb, &busybox()).unwrap();
    assert_eq!(
        ns(&spec, LinuxNamespaceType::Pid).unwrap().path().clone(),
        Some("/proc/100/ns/pid".into())
    );
    let sb = SandboxConfig {
        pid: NamespaceMode::Host,
        ..sandbox()
    };
    assert!(ns(&f.spec(&container(), &sb, &busybox()).unwrap(), LinuxNamespaceType::Pid).is_none());
    let sb = SandboxConfig {
        pid: NamespaceMode::Join("relative/pid".into()),
        ..sandbox()
    };
    assert!(matches!(
        f.spec(&container(), &sb, &busybox()),
        Err(BundleError::NotAbsolute { .. })
    ));
}

#[test]
fn cgroups_path_is_absolute_under_the_parent() {
    let f = Fixture::new();
    let spec = f.spec(&container(), &sandbox(), &busybox()).unwrap();
    let path = spec.linux().as_ref().unwrap().cgroups_path().clone().unwrap();
    assert_eq!(path, PathBuf::from("/skiff/kubepods/pod1234/ctr-1"));
    assert!(path.is_absolute());
    let sb = SandboxConfig {
        cgroup_parent: "kubepods/pod1234".into(),
        ..sandbox()
    };
    assert!(matches!(
        f.spec(&container(), &sb, &busybox()),
        Err(BundleError::NotAbsolute {
            what: "cgroup parent",
            ..
        })
    ));
    for id in ["", "../escape", ".."] {
        let c = ContainerConfig {
            id: id.into(),
            ..container()
        };
        assert!(
            matches!(f.spec(&c, &sandbox(), &busybox()), Err(BundleError::InvalidId(_))),
            "{id:?}"
        );
    }
}

#[test]
fn mounts_defaults_pod_files_and_volumes() {
    let f = Fixture::new();
    let c = ContainerConfig {
        read_only_root_filesystem: true,
        mounts: vec![
            MountConfig {
                host_path: "/data/sub".into(),
                container_path: "/data/sub".into(),
                read_only: true,
                propagation: Propagation::None,
            },
            MountConfig {
                host_path: "/data".into(),
                container_path: "/data".into(),
                read_only: false,
                propagation: Propagation::HostToContainer,
            },
            MountConfig {
                host_path: "/pod/shm".into(),
                container_path: "/dev/shm".into(),
                read_only: false,
                propagation: Propagation::None,
            },
        ],
        ..container()
    };
    let spec = f.spec(&c, &sandbox(), &busybox()).unwrap();
    assert_eq!(spec.root().as_ref().unwrap().readonly(), Some(true));
    let mounts = spec.mounts().clone().unwrap();
    let dests: Vec<&Path> = mounts.iter().map(|m| m.destination().as_path()).collect();
    for d in [
        "/proc",
        "/dev",
        "/dev/pts",
        "/dev/mqueue",
        "/sys",
        "/sys/fs/cgroup",
        "/etc/resolv.conf",
        "/etc/hosts",
        "/etc/hostname",
    ] {
        assert!(dests.contains(&Path::new(d)), "{d} mounted");
    }
    assert_eq!(
        dests.iter().filter(|d| **d == Path::new("/dev/shm")).count(),
        1,
        "volume replaces the default /dev/shm"
    );
    let pos = |d: &str| dests.iter().position(|x| *x == Path::new(d)).unwrap();
    assert!(pos("/data") < pos("/data/sub"), "parents before children");
    let opts = |d: &str| mounts[pos(d)].options().clone().unwrap();
    assert_eq!(opts("/data"), s(&["rbind", "rslave", "rw"]));
    assert_eq!(opts("/data/sub"), s(&["rbind", "rprivate", "ro"]));
    assert!(
        opts("/etc/resolv.conf").contains(&"ro".to_string()),
        "pod files read-only with a read-only root"
    );
    assert_eq!(
        spec.linux().as_ref().unwrap().rootfs_propagation().as_deref(),
        Some("rslave")
    );

    let spec = f.spec(&container(), &sandbox(), &busybox()).unwrap();
    let shm = spec
        .mounts()
        .as_ref()
        .unwrap()
        .iter()
        .find(|m| m.destination() == Path::new("/dev/shm"))
        .unwrap()
        .clone();
    assert_eq!(shm.typ().as_deref(), Some("tmpfs"));
    assert!(shm
        .options()
        .as_ref()
        .unwrap()
        .contains(&format!("size={}", 64 * 1024 * 1024)));
}

#[test]
fn full_spec_serializes_with_the_expected_fields() {
    let f = Fixture::new();
    let c = ContainerConfig {
        tty: true,
        sysctls: vec![("net.ipv4.ip_unprivileged_port_start".into(), "0".into())],
        oom_score_adj: Some(-997),
        resources: ResourceConfig {
            cpu_request_millis: Some(1000),
            cpu_limit_millis: Some(1500),
            memory_limit_bytes: Some(1 << 30),
            pids_limit: Some(100),
        },
        ..container()
    };
    let spec = f.spec(&c, &sandbox(), &busybox()).unwrap();
    let json: serde_json::Value = serde_json::to_value(&spec).unwrap();
    assert_eq!(json["ociVersion"], OCI_VERSION);
    assert_eq!(json["root"]["path"], f.rootfs.path().to_str().unwrap());
    assert_eq!(json["hostname"], "web-0");
    assert_eq!(json["process"]["terminal"], true);
    assert_eq!(
        json["process"]["args"],
        serde_json::json!(["/bin/entry", "default-cmd"])
    );
    assert_eq!(json["process"]["cwd"], "/srv");
    assert_eq!(json["process"]["oomScoreAdj"], -997);
    assert_eq!(
        json["process"]["rlimits"],
        serde_json::json!([{"type": "RLIMIT_NOFILE", "hard": 1048576, "soft": 1048576}])
    );
    assert!(json["process"]["capabilities"]["bounding"]
        .as_array()
        .unwrap()
        .contains(&"CAP_NET_RAW".into()));
    assert_eq!(json["linux"]["cgroupsPath"], "/skiff/kubepods/pod1234/ctr-1");
    assert_eq!(
        json["linux"]["resources"]["cpu"],
        serde_json::json!({"shares": 1024, "quota": 150000, "period": 100000})
    );
    assert_eq!(json["linux"]["resources"]["memory"]["limit"], 1i64 << 30);
    assert_eq!(json["linux"]["resources"]["pids"]["limit"], 100);
    assert_eq!(json["linux"]["sysctl"]["net.ipv4.ip_unprivileged_port_start"], "0");
    let types: Vec<&str> = json["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["pid", "ipc", "uts", "network", "mount"]);
}

#[test]
fn written_config_json_parses_back() {
    let f = Fixture::new();
    let spec = f.spec(&container(), &sandbox(), &busybox()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("bundles/ctr-1");
    write_bundle(&bundle, &spec).unwrap();
    let back = Spec::load(bundle.join("config.json")).unwrap();
    assert_eq!(back, spec);
    // Rewriting replaces the file and leaves no temporary behind.
    write_bundle(&bundle, &spec).unwrap();
    let names: Vec<_> = std::fs::read_dir(&bundle)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("config.json")]);
}

#[test]
fn relative_rootfs_is_rejected() {
    let c = container();
    let err = runtime_spec(&c, &sandbox(), &busybox(), Path::new("rootfs")).unwrap_err();
    assert!(matches!(err, BundleError::NotAbsolute { what: "rootfs", .. }));
}
