//! The sidecar injection into a PodSpec (an instance Pod's `spec`, or a Job's
//! `spec.template.spec`), on the JSON CloudNativePG sent: fields this code does not know
//! are kept as they are, so the patch touches only what the sidecar needs.

use serde_json::{json, Map, Value};

use super::{
    CERTIFICATES_PATH, CERTIFICATES_VOLUME, HEALTHCHECK_COMMAND, PLUGINS_PATH, PLUGINS_VOLUME,
    SIDECAR_CONTAINER,
};

/// Everything the sidecar container is made of, resolved from the Cluster and its stores.
#[derive(Debug, Clone)]
pub(crate) struct Sidecar {
    /// `$SIDECAR_IMAGE`.
    pub(crate) image: String,
    /// `Cluster.spec.imagePullPolicy`, when set.
    pub(crate) pull_policy: Option<String>,
    /// `instance …` or `restore`.
    pub(crate) args: Vec<String>,
    /// NAMESPACE … CUSTOM_CNPG_VERSION, then the stores' `instanceSidecarConfiguration.env`;
    /// after the main container's env in the sidecar (first name wins).
    pub(crate) env: Vec<Value>,
    /// Projected Secret sources of the `barman-certificates` volume; empty removes it.
    pub(crate) certificates: Vec<Value>,
    /// The store's `instanceSidecarConfiguration.resources`, when set.
    pub(crate) resources: Option<Value>,
}

/// Why a PodSpec cannot take the sidecar.
#[derive(Debug)]
pub(crate) enum InjectError {
    /// `containers` has no entry with the main container's name.
    NoMainContainer,
    /// A field that must be a list or an object is something else.
    Shape(&'static str),
}

/// Injects `sidecar` beside the container `main` of `spec` (reference 2.11).
///
/// Idempotent: injecting into an already injected spec changes nothing, which is what
/// keeps CloudNativePG's EVALUATE from rolling Pods for no reason.
pub(crate) fn inject(spec: &mut Value, main: &str, sidecar: &Sidecar) -> Result<(), InjectError> {
    let spec = spec.as_object_mut().ok_or(InjectError::Shape("spec"))?;
    let main_index = list(spec, "containers")?
        .iter()
        .position(|c| c.get("name").and_then(Value::as_str) == Some(main))
        .ok_or(InjectError::NoMainContainer)?;

    // The plugin socket directory, shared by the instance manager and the sidecar. An
    // existing `plugins` volume is kept as it is (upstream does the same).
    let volumes = list_mut(spec, "volumes")?;
    if !volumes.iter().any(|v| name_of(v) == Some(PLUGINS_VOLUME)) {
        volumes.push(json!({"name": PLUGINS_VOLUME, "emptyDir": {}}));
    }
    let main_container = list_mut(spec, "containers")?
        .get_mut(main_index)
        .and_then(Value::as_object_mut)
        .ok_or(InjectError::Shape("containers"))?;
    ensure_mount(
        list_mut(main_container, "volumeMounts")?,
        json!({"name": PLUGINS_VOLUME, "mountPath": PLUGINS_PATH}),
    );
    let main_container = main_container.clone();

    let mut mounts = Vec::new();
    if sidecar.certificates.is_empty() {
        list_mut(spec, "volumes")?.retain(|v| name_of(v) != Some(CERTIFICATES_VOLUME));
    } else {
        let volume = json!({
            "name": CERTIFICATES_VOLUME,
            "projected": {"sources": sidecar.certificates},
        });
        let volumes = list_mut(spec, "volumes")?;
        match volumes
            .iter_mut()
            .find(|v| name_of(v) == Some(CERTIFICATES_VOLUME))
        {
            Some(existing) => *existing = volume,
            None => volumes.push(volume),
        }
        mounts.push(json!({"name": CERTIFICATES_VOLUME, "mountPath": CERTIFICATES_PATH}));
    }
    // Every mount of the main container, merged by mount path: CloudNativePG mounts the
    // same `scratch-data` volume twice (/run and /controller), and merging by volume name
    // (as upstream does) would drop one of them from the sidecar.
    for mount in main_container
        .get("volumeMounts")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        ensure_mount(&mut mounts, mount.clone());
    }
    if sidecar.certificates.is_empty() {
        mounts.retain(|m| name_of(m) != Some(CERTIFICATES_VOLUME));
    }

    // First name wins: the main container's own env (PGDATA, POD_NAME, NAMESPACE, …),
    // then ours, then the stores'.
    let mut env: Vec<Value> = Vec::new();
    let main_env = main_container
        .get("env")
        .and_then(Value::as_array)
        .into_iter()
        .flatten();
    for var in main_env.chain(sidecar.env.iter()) {
        let name = name_of(var);
        if name.is_some() && !env.iter().any(|e| name_of(e) == name) {
            env.push(var.clone());
        }
    }

    let mut container = Map::new();
    container.insert("name".into(), json!(SIDECAR_CONTAINER));
    container.insert("image".into(), json!(sidecar.image));
    if let Some(policy) = sidecar.pull_policy.as_deref().filter(|p| !p.is_empty()) {
        container.insert("imagePullPolicy".into(), json!(policy));
    }
    container.insert("args".into(), json!(sidecar.args));
    container.insert("env".into(), Value::Array(env));
    container.insert("volumeMounts".into(), Value::Array(mounts));
    if let Some(resources) = &sidecar.resources {
        container.insert("resources".into(), resources.clone());
    }
    // A native sidecar: an init container that keeps running beside the main one.
    container.insert("restartPolicy".into(), json!("Always"));
    container.insert(
        "startupProbe".into(),
        json!({
            "exec": {"command": HEALTHCHECK_COMMAND},
            "periodSeconds": 1,
            "failureThreshold": 30,
            "timeoutSeconds": 5,
        }),
    );
    container.insert(
        "securityContext".into(),
        json!({
            "allowPrivilegeEscalation": false,
            "runAsNonRoot": true,
            "privileged": false,
            "readOnlyRootFilesystem": true,
            "seccompProfile": {"type": "RuntimeDefault"},
            "capabilities": {"drop": ["ALL"]},
        }),
    );
    let container = Value::Object(container);

    let init = list_mut(spec, "initContainers")?;
    let mut replaced = false;
    for existing in init.iter_mut() {
        if name_of(existing) == Some(SIDECAR_CONTAINER) {
            *existing = container.clone();
            replaced = true;
        }
    }
    if !replaced {
        init.push(container);
    }
    Ok(())
}

/// Adds `mount`, or replaces the mount at the same `mountPath`.
fn ensure_mount(mounts: &mut Vec<Value>, mount: Value) {
    let path = mount.get("mountPath").cloned();
    match mounts
        .iter_mut()
        .find(|m| m.get("mountPath") == path.as_ref())
    {
        Some(existing) => *existing = mount,
        None => mounts.push(mount),
    }
}

fn name_of(v: &Value) -> Option<&str> {
    v.get("name").and_then(Value::as_str)
}

fn list<'a>(obj: &'a Map<String, Value>, key: &'static str) -> Result<&'a [Value], InjectError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(a)) => Ok(a),
        Some(_) => Err(InjectError::Shape(key)),
    }
}

/// The list at `key`, created empty when absent or `null`.
fn list_mut<'a>(
    obj: &'a mut Map<String, Value>,
    key: &'static str,
) -> Result<&'a mut Vec<Value>, InjectError> {
    let slot = obj.entry(key).or_insert(Value::Null);
    if slot.is_null() {
        *slot = Value::Array(Vec::new());
    }
    slot.as_array_mut().ok_or(InjectError::Shape(key))
}
