//! The pod-to-runtime translation against the in-process API server: environment from configMaps, secrets,
//! the downward API and services (order, precedence, expansion, optional references, error texts), and the
//! sandbox and container configs built from a pod.

use std::collections::BTreeMap;
use std::path::PathBuf;

use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Service};
use kube::api::{Api, PostParams};
use serde_json::json;
use skiff_kubelet::container_config::{self, ConfigError, NodeContext, termination_message_path};
use skiff_kubelet::volumes::{MountedVolumes, VolumeManager};
use skiff_runtime::cri;

struct Env {
    _server: skiff_apiserver::testing::InProcess,
    client: kube::Client,
}

async fn env() -> Env {
    let server = skiff_apiserver::testing::start_admin().await;
    let client = kube::Client::new(server.router.clone(), "default");
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let cm: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "app-config"},
        "data": {"DB_HOST": "db.internal", "MODE": "prod", "LOG_LEVEL": "info"}
    }))
    .unwrap();
    cms.create(&PostParams::default(), &cm).await.unwrap();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
    let s: Secret = serde_json::from_value(json!({
        "metadata": {"name": "creds"},
        "stringData": {"db": "s3cret", "user": "admin"}
    }))
    .unwrap();
    secrets.create(&PostParams::default(), &s).await.unwrap();
    let svcs: Api<Service> = Api::namespaced(client.clone(), "default");
    let svc: Service = serde_json::from_value(json!({
        "metadata": {"name": "my-db"},
        "spec": {"selector": {"app": "db"}, "ports": [{"name": "sql", "port": 5432}]}
    }))
    .unwrap();
    svcs.create(&PostParams::default(), &svc).await.unwrap();
    Env { _server: server, client }
}

fn node(dir: &std::path::Path) -> NodeContext {
    NodeContext {
        node_name: "node-1".into(),
        node_ip: "192.168.5.10".parse().unwrap(),
        cluster_dns: vec!["10.43.0.10".into()],
        cluster_domain: "cluster.local".into(),
        log_root: dir.join("logs"),
        cgroup_parent: PathBuf::from("/kubepods"),
    }
}

/// The config of `p`'s first container (index 0), with the volumes and node of a test dir.
async fn first_container_config(
    e: &Env,
    p: &Pod,
    dir: &std::path::Path,
) -> Result<cri::ContainerConfig, ConfigError> {
    container_config::container_config(p, &p.spec.as_ref().unwrap().containers[0], 0, &volumes(dir), &e.client, &node(dir))
        .await
}

fn pod(spec: serde_json::Value) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": "web", "namespace": "default", "uid": "uid-1234",
                     "labels": {"app": "web"}, "annotations": {"team": "shop"}},
        "spec": spec,
        "status": {"podIP": "10.42.0.7", "podIPs": [{"ip": "10.42.0.7"}]}
    }))
    .unwrap()
}

fn volumes(dir: &std::path::Path) -> MountedVolumes {
    MountedVolumes { paths: BTreeMap::new(), pod_dir: dir.join("pods/uid-1234"), ..Default::default() }
}

fn env_of(c: &cri::ContainerConfig) -> Vec<(String, String)> {
    c.spec.env.clone()
}

fn get<'a>(env: &'a [(String, String)], k: &str) -> Option<&'a str> {
    env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
}

#[tokio::test]
async fn environment_follows_upstream_order_precedence_and_expansion() {
    let e = env().await;
    let dir = tempfile::tempdir().unwrap();
    let p = pod(json!({
        "nodeName": "node-1",
        "containers": [{
            "name": "app", "image": "busybox",
            "command": ["sh", "-c", "echo $(POD_NAME) $$(HOST) $(NOPE)"],
            "args": ["$(CFG_MODE)"],
            "resources": {"limits": {"memory": "64Mi", "cpu": "500m"}},
            "envFrom": [{"configMapRef": {"name": "app-config"}, "prefix": "CFG_"}, {"secretRef": {"name": "creds"}}],
            "env": [
                {"name": "CFG_MODE", "value": "override-$(CFG_LOG_LEVEL)"},
                {"name": "DB_PASS", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "db"}}},
                {"name": "HOST", "valueFrom": {"configMapKeyRef": {"name": "app-config", "key": "DB_HOST"}}},
                {"name": "URL", "value": "$(HOST):$(MY_DB_SERVICE_PORT)/$(LATER)"},
                {"name": "LATER", "value": "x"},
                {"name": "ESCAPED", "value": "$$(HOST)"},
                {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "POD_NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                {"name": "POD_UID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.uid"}}},
                {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
                {"name": "TEAM", "valueFrom": {"fieldRef": {"fieldPath": "metadata.annotations['team']"}}},
                {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
                {"name": "HOST_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}},
                {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                {"name": "MEM_MI", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}},
                {"name": "CPU_M", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu", "divisor": "1m"}}},
                {"name": "user", "value": "env-wins"}
            ]
        }]
    }));
    let c = first_container_config(&e, &p, dir.path()).await.unwrap();
    let env = env_of(&c);
    let names: Vec<&str> = env.iter().map(|(k, _)| k.as_str()).collect();
    // envFrom first (configMap keys in order with the prefix, then the secret's), then env, then services.
    assert_eq!(&names[..5], ["CFG_DB_HOST", "CFG_LOG_LEVEL", "CFG_MODE", "db", "user"]);
    assert_eq!(names[5], "DB_PASS");
    let first_service = names.iter().position(|n| n.ends_with("_SERVICE_HOST")).unwrap();
    assert!(names[first_service..].iter().all(|n| n.starts_with("KUBERNETES_") || n.starts_with("MY_DB_")));
    assert!(first_service > names.iter().position(|n| *n == "CPU_M").unwrap());

    assert_eq!(get(&env, "CFG_MODE"), Some("override-info"), "env replaces envFrom in place and expands");
    assert_eq!(get(&env, "user"), Some("env-wins"));
    assert_eq!(get(&env, "DB_PASS"), Some("s3cret"));
    assert_eq!(get(&env, "HOST"), Some("db.internal"));
    assert_eq!(get(&env, "URL"), Some("db.internal:5432/$(LATER)"), "only earlier variables and services expand");
    assert_eq!(get(&env, "ESCAPED"), Some("$(HOST)"));
    assert_eq!(get(&env, "POD_NAME"), Some("web"));
    assert_eq!(get(&env, "POD_NS"), Some("default"));
    assert_eq!(get(&env, "POD_UID"), Some("uid-1234"));
    assert_eq!(get(&env, "APP"), Some("web"));
    assert_eq!(get(&env, "TEAM"), Some("shop"));
    assert_eq!(get(&env, "NODE"), Some("node-1"));
    assert_eq!(get(&env, "HOST_IP"), Some("192.168.5.10"));
    assert_eq!(get(&env, "POD_IP"), Some("10.42.0.7"));
    assert_eq!(get(&env, "MEM_MI"), Some("64"));
    assert_eq!(get(&env, "CPU_M"), Some("500"));
    assert_eq!(get(&env, "KUBERNETES_SERVICE_HOST"), Some("10.43.0.1"));
    assert_eq!(get(&env, "KUBERNETES_SERVICE_PORT"), Some("443"));
    assert_eq!(get(&env, "KUBERNETES_PORT_443_TCP"), Some("tcp://10.43.0.1:443"));
    assert_eq!(get(&env, "MY_DB_SERVICE_PORT_SQL"), Some("5432"));
    let names_set: std::collections::BTreeSet<&str> = names.iter().copied().collect();
    assert_eq!(names_set.len(), names.len(), "no duplicate names");

    assert_eq!(c.spec.command, ["sh", "-c", "echo web $(HOST) $(NOPE)"]);
    assert_eq!(c.spec.args, ["override-info"]);
}

#[tokio::test]
async fn service_links_off_keeps_the_kubernetes_service() {
    let e = env().await;
    let dir = tempfile::tempdir().unwrap();
    let p = pod(json!({"enableServiceLinks": false, "containers": [{"name": "app", "image": "busybox"}]}));
    let c = first_container_config(&e, &p, dir.path()).await.unwrap();
    let env = env_of(&c);
    assert_eq!(get(&env, "KUBERNETES_SERVICE_HOST"), Some("10.43.0.1"));
    assert_eq!(get(&env, "MY_DB_SERVICE_HOST"), None);
}

async fn config_error(e: &Env, env: serde_json::Value) -> ConfigError {
    let dir = tempfile::tempdir().unwrap();
    let p = pod(json!({"containers": [{"name": "app", "image": "busybox", "env": env}]}));
    first_container_config(e, &p, dir.path()).await.unwrap_err()
}

#[tokio::test]
async fn missing_references_say_what_is_missing() {
    let e = env().await;
    let err =
        config_error(&e, json!([{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "nope", "key": "k"}}}])).await;
    assert_eq!(err.to_string(), "configmap \"nope\" not found");
    let err =
        config_error(&e, json!([{"name": "X", "valueFrom": {"secretKeyRef": {"name": "nope", "key": "k"}}}])).await;
    assert_eq!(err.to_string(), "secret \"nope\" not found");
    let err =
        config_error(&e, json!([{"name": "X", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "pw"}}}])).await;
    assert_eq!(err.to_string(), "couldn't find key pw in Secret default/creds");
    let err =
        config_error(&e, json!([{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "app-config", "key": "db"}}}]))
            .await;
    assert_eq!(err.to_string(), "couldn't find key db in ConfigMap default/app-config");
}

#[tokio::test]
async fn optional_references_are_not_errors() {
    let e = env().await;
    let dir = tempfile::tempdir().unwrap();
    let p = pod(json!({"containers": [{"name": "app", "image": "busybox",
    "envFrom": [{"configMapRef": {"name": "absent", "optional": true}},
                {"secretRef": {"name": "absent", "optional": true}}],
    "env": [
        {"name": "A", "valueFrom": {"configMapKeyRef": {"name": "absent", "key": "k", "optional": true}}},
        {"name": "B", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "absent", "optional": true}}},
        {"name": "C", "valueFrom": {"configMapKeyRef": {"name": "app-config", "key": "absent", "optional": true}}},
        {"name": "D", "value": "kept"}
    ]}]}));
    let c = first_container_config(&e, &p, dir.path()).await.unwrap();
    let env = env_of(&c);
    assert_eq!(get(&env, "A"), None);
    assert_eq!(get(&env, "B"), None);
    assert_eq!(get(&env, "C"), None);
    assert_eq!(get(&env, "D"), Some("kept"));
}

#[tokio::test]
async fn sandbox_config_from_the_pod() {
    let dir = tempfile::tempdir().unwrap();
    let long = "a".repeat(62) + "-b";
    let mut p = pod(json!({
        "hostname": "", "subdomain": "headless",
        "securityContext": {"sysctls": [{"name": "net.core.somaxconn", "value": "1024"}]},
        "hostAliases": [{"ip": "10.1.1.1", "hostnames": ["foo.local", "bar.local"]}],
        "containers": [{"name": "app", "image": "busybox",
                        "ports": [{"containerPort": 80, "hostPort": 8080}, {"containerPort": 53, "protocol": "UDP"}]}]
    }));
    p.metadata.name = Some(long.clone());
    let n = node(dir.path());
    let s = container_config::sandbox_config(&p, &n).await.unwrap();
    assert_eq!(s.hostname, "a".repeat(62), "cut to 63 characters without the trailing '-'");
    assert_eq!(s.name, long);
    assert_eq!(s.namespace, "default");
    assert_eq!(s.uid, "uid-1234");
    assert_eq!(s.log_directory, dir.path().join(format!("logs/default_{long}_uid-1234")));
    assert_eq!(s.port_mappings.len(), 1);
    assert_eq!((s.port_mappings[0].host_port, s.port_mappings[0].container_port), (8080, 80));
    assert_eq!(s.port_mappings[0].protocol, "tcp");
    assert_eq!(s.sysctls, [("net.core.somaxconn".to_string(), "1024".to_string())]);
    assert_eq!(s.host_aliases, [("10.1.1.1".to_string(), vec!["foo.local".to_string(), "bar.local".to_string()])]);
    assert_eq!(s.labels[cri::labels::POD_NAME], long);
    assert_eq!(s.labels[cri::labels::POD_UID], "uid-1234");
    assert_eq!(s.labels["app"], "web");
    assert_eq!(s.annotations["team"], "shop");
    assert_eq!(
        s.annotations[container_config::annotations::HOSTNAME_FQDN],
        format!("{}.headless.default.svc.cluster.local", "a".repeat(62))
    );
    let dns = s.dns.unwrap();
    assert_eq!(dns.servers, ["10.43.0.10"]);
    assert_eq!(&dns.searches[..3], ["default.svc.cluster.local", "svc.cluster.local", "cluster.local"]);
    assert_eq!(dns.options, ["ndots:5"]);
    assert!(!s.host_network);

    let hn = pod(json!({"hostNetwork": true, "hostPID": true, "hostname": "Bad_Name", "containers": []}));
    let err = container_config::sandbox_config(&hn, &n).await.unwrap_err();
    assert!(err.to_string().contains("is not a valid DNS label"), "{err}");
    let hn = pod(json!({"hostNetwork": true, "hostPID": true, "shareProcessNamespace": true, "containers": []}));
    let s = container_config::sandbox_config(&hn, &n).await.unwrap();
    assert!(s.host_network && s.host_pid && s.share_process_namespace && !s.host_ipc);
    assert!(s.dns.is_none(), "ClusterFirst on the host network uses the host's resolv.conf");
}

#[tokio::test]
async fn security_resources_mounts_and_termination_message() {
    let e = env().await;
    let dir = tempfile::tempdir().unwrap();
    let n = node(dir.path());
    let pods_root = dir.path().join("pods");
    let vm = VolumeManager::new(pods_root.clone(), e.client.clone());
    let p = pod(json!({
        "securityContext": {"runAsUser": 1000, "runAsGroup": 3000, "fsGroup": 2000, "supplementalGroups": [4000]},
        "volumes": [{"name": "data", "emptyDir": {}}],
        "containers": [{
            "name": "app", "image": "busybox", "workingDir": "/work", "tty": true, "stdin": true,
            "terminationMessagePath": "/tmp/msg",
            "securityContext": {"runAsUser": 1001, "privileged": false, "readOnlyRootFilesystem": true,
                                "allowPrivilegeEscalation": false,
                                "capabilities": {"add": ["NET_ADMIN"], "drop": ["ALL"]}},
            "resources": {"requests": {"cpu": "250m", "memory": "128Mi"}, "limits": {"cpu": "250m", "memory": "128Mi"}},
            "env": [{"name": "SUB", "value": "from-env"}],
            "volumeMounts": [
                {"name": "data", "mountPath": "/data", "readOnly": true},
                {"name": "data", "mountPath": "/conf", "subPath": "conf/app"},
                {"name": "data", "mountPath": "/expr", "subPathExpr": "x/$(SUB)", "mountPropagation": "HostToContainer"}
            ]
        }]
    }));
    let mounted = vm.setup(&p).await.unwrap();
    let container = &p.spec.as_ref().unwrap().containers[0];
    let c = container_config::container_config(&p, container, 2, &mounted, &e.client, &n).await.unwrap();
    let s = &c.spec;
    assert_eq!(s.user.run_as_user, Some(1001), "container level wins");
    assert_eq!(s.user.run_as_group, Some(3000));
    assert_eq!(s.user.supplemental_groups, [4000, 2000], "supplementalGroups then fsGroup");
    assert!(s.read_only_root_filesystem && !s.privileged && s.tty && s.stdin);
    assert_eq!(s.allow_privilege_escalation, Some(false));
    assert_eq!(s.capabilities.add, ["NET_ADMIN"]);
    assert_eq!(s.capabilities.drop, ["ALL"]);
    assert_eq!(s.working_dir.as_deref(), Some("/work"));
    assert_eq!(s.resources.cpu_request_millis, Some(250));
    assert_eq!(s.resources.cpu_limit_millis, Some(250));
    assert_eq!(s.resources.memory_limit_bytes, Some(128 << 20));
    assert_eq!(s.oom_score_adj, Some(-997), "Guaranteed");
    assert_eq!(s.hostname.as_deref(), Some("web"));

    let data = &mounted.paths["data"];
    let by_target: BTreeMap<String, &skiff_runtime::bundle::MountConfig> =
        s.mounts.iter().map(|m| (m.container_path.display().to_string(), m)).collect();
    assert_eq!(&by_target["/data"].host_path, data);
    assert!(by_target["/data"].read_only);
    assert_eq!(by_target["/conf"].host_path, data.canonicalize().unwrap().join("conf/app"));
    assert!(data.join("conf/app").is_dir(), "a missing subPath is created");
    assert_eq!(by_target["/expr"].host_path, data.canonicalize().unwrap().join("x/from-env"));
    assert_eq!(by_target["/expr"].propagation, skiff_runtime::bundle::Propagation::HostToContainer);
    let tm = termination_message_path(&mounted.pod_dir, "app", 2);
    assert_eq!(by_target["/tmp/msg"].host_path, tm);
    assert_eq!(std::fs::read(&tm).unwrap(), b"", "the termination message file exists, empty");

    assert_eq!(c.labels[cri::labels::CONTAINER_NAME], "app");
    assert_eq!(c.labels[cri::labels::POD_UID], "uid-1234");
    assert_eq!(c.annotations[container_config::annotations::RESTART_COUNT], "2");
    assert_eq!(c.annotations[container_config::annotations::TERMINATION_MESSAGE_PATH], "/tmp/msg");
    assert_eq!(c.log_path, PathBuf::from("app/2.log"));
    assert_eq!(c.image, "busybox");

    // A subPath escaping the volume and an unknown volume are refused with the mount named.
    let mut bad = p.clone();
    bad.spec.as_mut().unwrap().containers[0].volume_mounts.as_mut().unwrap()[1].sub_path = Some("../../etc".into());
    let err =
        container_config::container_config(&bad, &bad.spec.as_ref().unwrap().containers[0], 0, &mounted, &e.client, &n)
            .await
            .unwrap_err();
    assert!(matches!(err, ConfigError::SubPath { .. }), "{err}");
    assert!(err.to_string().contains("must not contain '..'"), "{err}");
    let mut bad = p.clone();
    bad.spec.as_mut().unwrap().containers[0].volume_mounts.as_mut().unwrap()[0].name = "ghost".into();
    let err =
        container_config::container_config(&bad, &bad.spec.as_ref().unwrap().containers[0], 0, &mounted, &e.client, &n)
            .await
            .unwrap_err();
    assert_eq!(err.to_string(), "cannot find volume \"ghost\" to mount into container \"app\"");

    // runAsNonRoot with runAsUser 0 is refused; Bidirectional needs privileged.
    let mut root = p.clone();
    let csc = root.spec.as_mut().unwrap().containers[0].security_context.as_mut().unwrap();
    csc.run_as_user = Some(0);
    csc.run_as_non_root = Some(true);
    let err = container_config::container_config(
        &root,
        &root.spec.as_ref().unwrap().containers[0],
        0,
        &mounted,
        &e.client,
        &n,
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("runAsUser breaks non-root policy"), "{err}");
    let mut bidi = p.clone();
    bidi.spec.as_mut().unwrap().containers[0].volume_mounts.as_mut().unwrap()[0].mount_propagation =
        Some("Bidirectional".into());
    let err = container_config::container_config(
        &bidi,
        &bidi.spec.as_ref().unwrap().containers[0],
        0,
        &mounted,
        &e.client,
        &n,
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("only to privileged"), "{err}");

    vm.teardown("uid-1234").await.unwrap();
    assert!(!pods_root.join("uid-1234").exists());
}

#[tokio::test]
async fn burstable_and_best_effort_scores() {
    let e = env().await;
    let dir = tempfile::tempdir().unwrap();
    let p = pod(json!({"containers": [{"name": "a", "image": "busybox"}]}));
    let c = first_container_config(&e, &p, dir.path()).await.unwrap();
    assert_eq!(c.spec.oom_score_adj, Some(1000));
    let p = pod(json!({"containers": [{"name": "a", "image": "busybox", "resources": {"requests": {"cpu": "100m"}}}]}));
    let c = first_container_config(&e, &p, dir.path()).await.unwrap();
    assert_eq!(c.spec.oom_score_adj, Some(999), "Burstable without a memory request");
}
