//! What a container will run, from its pod template and its image's
//! configuration: the argument vector, the working directory and the user
//! and groups it runs as.
//!
//! * **Arguments** (Kubernetes, "Define a command and arguments"):
//!   `command` replaces the image's Entrypoint and then its Cmd is not
//!   used; `args` replaces Cmd. Both expand `$(NAME)` against the
//!   container's environment.
//! * **User and groups** (the CRI and containerd's image user handling):
//!   `runAsUser` / `runAsGroup` of the container, else of the pod, override
//!   the image's `User` (`uid`, `uid:gid`, `name` or `name:group`, names
//!   looked up in the image's `/etc/passwd` and `/etc/group`). The
//!   supplementary groups are the primary group, the groups of
//!   `/etc/group` naming the user (when the image's user is used by name),
//!   the pod's `supplementalGroups` and its `fsGroup`.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::env::{expand, Expected};

/// One line of an image's `/etc/passwd`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswdEntry {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

/// One line of an image's `/etc/group`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupEntry {
    pub name: String,
    pub gid: u32,
    pub members: Vec<String>,
}

/// What the policy needs from an image (its config blob and the user
/// databases in its layers).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageConfig {
    pub env: Vec<String>,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub working_dir: String,
    pub user: String,
    pub passwd: Vec<PasswdEntry>,
    pub group: Vec<GroupEntry>,
    /// The config's `Volumes`: directories the runtime mounts a fresh
    /// volume on.
    pub volumes: Vec<String>,
}

/// Parse `/etc/passwd` text (`name:x:uid:gid:gecos:home:shell`), skipping
/// comments and lines that do not have that shape.
pub fn parse_passwd(text: &str) -> Vec<PasswdEntry> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() >= 4).then_some(())?;
            Some(PasswdEntry {
                name: f[0].to_string(),
                uid: f[2].parse().ok()?,
                gid: f[3].parse().ok()?,
            })
        })
        .collect()
}

/// Parse `/etc/group` text (`name:x:gid:member,member`).
pub fn parse_group(text: &str) -> Vec<GroupEntry> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() >= 3).then_some(())?;
            Some(GroupEntry {
                name: f[0].to_string(),
                gid: f[2].parse().ok()?,
                members: f
                    .get(3)
                    .map(|m| {
                        m.split(',')
                            .filter(|s| !s.is_empty())
                            .map(str::to_string)
                            .collect()
                    })
                    .unwrap_or_default(),
            })
        })
        .collect()
}

/// The user a container's process runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: BTreeSet<u32>,
}

/// Why a container's process cannot be decided.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContainerError {
    #[error("{at}: {reason}")]
    Invalid { at: String, reason: String },
    /// The image names a user or group its own databases do not define.
    #[error("image user {user:?}: {reason}")]
    User { user: String, reason: String },
}

fn strings(v: Option<&Value>, at: &str) -> Result<Option<Vec<String>>, ContainerError> {
    let Some(v) = v else { return Ok(None) };
    let invalid = || ContainerError::Invalid {
        at: at.to_string(),
        reason: "not a sequence of strings".into(),
    };
    v.as_array()
        .ok_or_else(invalid)?
        .iter()
        .map(|s| s.as_str().map(str::to_string).ok_or_else(invalid))
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// The argument vector of `container` (at `at`) over `image`, each
/// argument expanded against `env`.
pub fn args(
    container: &Value,
    at: &str,
    image: &ImageConfig,
    env: &[(String, Expected)],
) -> Result<Vec<Expected>, ContainerError> {
    let command = strings(container.get("command"), &format!("{at}/command"))?;
    let args = strings(container.get("args"), &format!("{at}/args"))?;
    let (entry, cmd) = match (command, args) {
        (Some(c), Some(a)) => (c, a),
        (Some(c), None) => (c, vec![]),
        (None, Some(a)) => (image.entrypoint.clone(), a),
        (None, None) => (image.entrypoint.clone(), image.cmd.clone()),
    };
    let expand_all = container.get("command").is_some() || container.get("args").is_some();
    Ok(entry
        .iter()
        .chain(&cmd)
        .map(|a| {
            // Only what the pod YAML wrote is expanded; the image's own
            // arguments reach the process as they are.
            if expand_all {
                expand(a, env)
            } else {
                Expected::Parts(vec![crate::env::Part::Text(a.clone())])
            }
        })
        .collect())
}

fn security_int(sc: Option<&Value>, key: &str) -> Option<i64> {
    sc.and_then(|s| s.get(key)).and_then(Value::as_i64)
}

/// The user of `container` in a pod with `pod_spec`, over `image`.
pub fn user(
    container: &Value,
    pod_spec: &Value,
    image: &ImageConfig,
) -> Result<User, ContainerError> {
    let csc = container.get("securityContext");
    let psc = pod_spec.get("securityContext");
    let id = |key: &str| -> Result<Option<u32>, ContainerError> {
        match security_int(csc, key).or_else(|| security_int(psc, key)) {
            None => Ok(None),
            Some(v) => u32::try_from(v)
                .map(Some)
                .map_err(|_| ContainerError::Invalid {
                    at: format!("securityContext.{key}"),
                    reason: format!("{v} is not a user or group id"),
                }),
        }
    };
    let bad = |reason: String| ContainerError::User {
        user: image.user.clone(),
        reason,
    };
    // The image's user, resolved as the runtime does.
    let (user_part, group_part) = match image.user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (image.user.as_str(), None),
    };
    let by_name = !user_part.is_empty() && user_part.parse::<u32>().is_err();
    let (mut uid, mut gid, name) = if user_part.is_empty() {
        (0, 0, Some("root".to_string()))
    } else if let Ok(n) = user_part.parse::<u32>() {
        let entry = image.passwd.iter().find(|p| p.uid == n);
        (n, entry.map_or(0, |p| p.gid), entry.map(|p| p.name.clone()))
    } else {
        let p = image
            .passwd
            .iter()
            .find(|p| p.name == user_part)
            .ok_or_else(|| bad("not in the image's /etc/passwd".into()))?;
        (p.uid, p.gid, Some(p.name.clone()))
    };
    if let Some(g) = group_part {
        gid = match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => image
                .group
                .iter()
                .find(|e| e.name == g)
                .map(|e| e.gid)
                .ok_or_else(|| bad(format!("group {g:?} is not in the image's /etc/group")))?,
        };
    }
    let run_as_user = id("runAsUser")?;
    if let Some(u) = run_as_user {
        uid = u;
        // The passwd entry of that uid gives the primary group.
        gid = image
            .passwd
            .iter()
            .find(|p| p.uid == u)
            .map_or(0, |p| p.gid);
    }
    if let Some(g) = id("runAsGroup")? {
        gid = g;
    }
    let mut additional = BTreeSet::from([gid]);
    let member = if run_as_user.is_some() {
        image
            .passwd
            .iter()
            .find(|p| p.uid == uid)
            .map(|p| p.name.clone())
    } else if by_name {
        name
    } else {
        name.filter(|_| !user_part.is_empty())
    };
    if let Some(n) = member {
        additional.extend(
            image
                .group
                .iter()
                .filter(|g| g.members.contains(&n))
                .map(|g| g.gid),
        );
    }
    if let Some(list) = psc.and_then(|s| s.get("supplementalGroups")) {
        for g in list.as_array().into_iter().flatten() {
            let g = g
                .as_u64()
                .and_then(|g| u32::try_from(g).ok())
                .ok_or_else(|| ContainerError::Invalid {
                    at: "securityContext.supplementalGroups".into(),
                    reason: format!("{g} is not a group id"),
                })?;
            additional.insert(g);
        }
    }
    if let Some(g) = security_int(psc, "fsGroup").and_then(|g| u32::try_from(g).ok()) {
        additional.insert(g);
    }
    Ok(User {
        uid,
        gid,
        additional_gids: additional,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn image() -> ImageConfig {
        ImageConfig {
            entrypoint: vec!["/entrypoint.sh".into()],
            cmd: vec!["serve".into(), "--port=80".into()],
            user: "app".into(),
            passwd: parse_passwd("root:x:0:0:root:/root:/bin/sh\n# comment\napp:x:1000:1000::/home/app:/bin/sh\nbroken line\n"),
            group: parse_group("root:x:0:\napp:x:1000:\nwheel:x:10:app,other\nbad:x:notanumber:\n"),
            ..Default::default()
        }
    }

    fn texts(v: &[Expected]) -> Vec<String> {
        v.iter().map(|e| e.exact().unwrap()).collect()
    }

    #[test]
    fn command_and_args_replace_the_images_entrypoint_and_cmd() {
        let img = image();
        let env = vec![(
            "N".to_string(),
            Expected::Parts(vec![crate::env::Part::Text("7".into())]),
        )];
        let a = |c: Value| texts(&args(&c, "/c", &img, &env).unwrap());
        assert_eq!(a(json!({})), ["/entrypoint.sh", "serve", "--port=80"]);
        assert_eq!(a(json!({"args": ["x$(N)"]})), ["/entrypoint.sh", "x7"]);
        assert_eq!(a(json!({"command": ["/bin/sh"]})), ["/bin/sh"]);
        assert_eq!(
            a(json!({"command": ["/bin/sh"], "args": ["-c", "$(N)"]})),
            ["/bin/sh", "-c", "7"]
        );
        let e = args(&json!({"args": "x"}), "/c", &img, &env).unwrap_err();
        assert_eq!(e.to_string(), "/c/args: not a sequence of strings");
    }

    #[test]
    fn users_and_groups_resolve_like_the_runtime() {
        let img = image();
        let u = user(&json!({}), &json!({}), &img).unwrap();
        assert_eq!((u.uid, u.gid), (1000, 1000));
        assert_eq!(u.additional_gids, BTreeSet::from([10, 1000]));

        let pod =
            json!({"securityContext": {"runAsUser": 0, "supplementalGroups": [5], "fsGroup": 7}});
        let u = user(&json!({}), &pod, &img).unwrap();
        assert_eq!((u.uid, u.gid), (0, 0));
        assert_eq!(u.additional_gids, BTreeSet::from([0, 5, 7]));

        // The container's securityContext wins over the pod's.
        let c = json!({"securityContext": {"runAsUser": 2, "runAsGroup": 1}});
        let u = user(&c, &pod, &img).unwrap();
        assert_eq!((u.uid, u.gid), (2, 1));
        assert_eq!(u.additional_gids, BTreeSet::from([1, 5, 7]));

        let mut named = image();
        named.user = "app:wheel".into();
        assert_eq!(user(&json!({}), &json!({}), &named).unwrap().gid, 10);
        named.user = "1000:3".into();
        let u = user(&json!({}), &json!({}), &named).unwrap();
        assert_eq!((u.uid, u.gid), (1000, 3));
        named.user = "nobody".into();
        let e = user(&json!({}), &json!({}), &named).unwrap_err();
        assert_eq!(
            e.to_string(),
            "image user \"nobody\": not in the image's /etc/passwd"
        );
        named.user = String::new();
        let u = user(&json!({}), &json!({}), &named).unwrap();
        assert_eq!((u.uid, u.gid), (0, 0));

        let e = user(
            &json!({"securityContext": {"runAsUser": -1}}),
            &json!({}),
            &img,
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("-1 is not a user or group id"),
            "{e}"
        );
    }
}
