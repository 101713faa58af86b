//! End-to-end: CustomResourceDefinitions with the real kubectl against the built `skiff server`: apply a
//! CRD and objects, `get` with printer columns, short names and the `all` category, `explain` from the
//! CRD's schema, an invalid object refused with the schema's message, and deleting the CRD.

mod e2e;

use std::time::Duration;

use e2e::{eventually, Server};

const CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: crontabs.stable.example.com
spec:
  group: stable.example.com
  scope: Namespaced
  names:
    plural: crontabs
    singular: crontab
    kind: CronTab
    shortNames: [ct]
    categories: [all]
  versions:
  - name: v1
    served: true
    storage: true
    subresources:
      status: {}
    additionalPrinterColumns:
    - name: Spec
      type: string
      jsonPath: .spec.cronSpec
    - name: Replicas
      type: integer
      jsonPath: .spec.replicas
    - name: Age
      type: date
      jsonPath: .metadata.creationTimestamp
    schema:
      openAPIV3Schema:
        type: object
        description: A CronTab runs an image on a schedule.
        properties:
          spec:
            type: object
            description: The desired schedule and image of a CronTab.
            x-kubernetes-validations:
            - rule: self.replicas <= 5
              message: at most five replicas are allowed
            properties:
              cronSpec:
                type: string
                description: The cron schedule, five fields.
                pattern: '^(\d+|\*)(/\d+)?(\s+(\d+|\*)(/\d+)?){4}$'
              image:
                type: string
              replicas:
                type: integer
                default: 1
"#;

const OBJECTS: &str = r#"
apiVersion: stable.example.com/v1
kind: CronTab
metadata:
  name: nightly
spec:
  cronSpec: "0 3 * * *"
  image: busybox
  replicas: 2
---
apiVersion: stable.example.com/v1
kind: CronTab
metadata:
  name: hourly
spec:
  cronSpec: "0 * * * *"
  image: busybox
"#;

#[test]
fn crd_apply_get_explain_validate_delete() {
    let s = Server::start();
    let out = s.ok_stdin(&["apply", "-f", "-"], CRD);
    assert!(out.contains("customresourcedefinition.apiextensions.k8s.io/crontabs.stable.example.com created"), "{out}");
    s.ok(&["wait", "--for=condition=Established", "--timeout=30s", "crd/crontabs.stable.example.com"]);

    // kubectl refreshes discovery when a kind is not known yet; the objects are applied once served.
    let out = eventually("the CronTabs to be applied", Duration::from_secs(30), || {
        let out = s.kubectl_with(e2e::KUBECTL, &["apply", "-f", "-"], Some(OBJECTS));
        out.status.success().then(|| String::from_utf8(out.stdout).unwrap())
    });
    assert!(out.contains("crontab.stable.example.com/nightly created"), "{out}");

    let table = s.ok(&["get", "crontabs"]);
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("NAME") && lines[0].contains("SPEC") && lines[0].contains("REPLICAS") && lines[0].contains("AGE"), "{table}");
    let nightly = lines.iter().find(|l| l.starts_with("nightly")).expect("a nightly row");
    assert!(nightly.contains("0 3 * * *") && nightly.split_whitespace().any(|c| c == "2"), "{table}");
    let hourly = lines.iter().find(|l| l.starts_with("hourly")).expect("an hourly row");
    assert!(hourly.split_whitespace().any(|c| c == "1"), "defaulted replicas: {table}");
    assert!(s.ok(&["get", "ct"]).contains("nightly"), "short name");
    assert!(s.ok(&["get", "all"]).contains("crontab.stable.example.com/nightly"), "the all category");

    let explain = s.ok(&["explain", "crontabs.spec"]);
    assert!(explain.contains("The desired schedule and image of a CronTab."), "{explain}");
    assert!(explain.contains("cronSpec") && explain.contains("The cron schedule, five fields."), "{explain}");

    let bad = OBJECTS.replace("replicas: 2", "replicas: 9").replace("0 3 * * *", "tomorrow");
    let err = s.fails_stdin(&["apply", "-f", "-"], &bad);
    assert!(err.contains(r#"The CronTab "nightly" is invalid"#), "{err}");
    assert!(err.contains("spec.cronSpec: Invalid value: \"tomorrow\": spec.cronSpec in body should match"), "{err}");
    let err = s.fails_stdin(&["apply", "-f", "-"], &OBJECTS.replace("replicas: 2", "replicas: 9"));
    assert!(err.contains("spec: Invalid value: \"object\": at most five replicas are allowed"), "{err}");

    let out = s.ok(&["delete", "crd", "crontabs.stable.example.com"]);
    assert!(out.contains("deleted"), "{out}");
    // Depending on kubectl's discovery cache it names the missing type or the missing resource.
    let err = s.fails(&["get", "crontabs.stable.example.com"]);
    assert!(err.contains("the server doesn't have a resource type") || err.contains("the server could not find the requested resource"), "{err}");
    let crds = s.ok(&["get", "crd"]);
    assert!(!crds.contains("crontabs.stable.example.com"), "{crds}");
}
