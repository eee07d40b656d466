//! AWS shared configuration files (`~/.aws/credentials`, `~/.aws/config`) read the
//! way boto3 reads them for barman's `-P/--aws-profile` and `AWS_PROFILE`: static
//! keys, session token, region and endpoint URL of one profile. Pure parsing: the
//! caller reads the files.

use std::collections::BTreeMap;

/// What one profile sets. `None` fields are not set by the profile. Each key is
/// taken from the credentials file's section when it is there and not empty, else
/// from the config file's.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ProfileSettings {
    /// `aws_access_key_id`: the access key id.
    pub access_key_id: Option<String>,
    /// `aws_secret_access_key`: the secret access key.
    pub secret_access_key: Option<String>,
    /// `aws_session_token`: the session token of temporary credentials.
    pub session_token: Option<String>,
    /// `region`: the region requests are signed for.
    pub region: Option<String>,
    /// `endpoint_url`: the endpoint to use instead of AWS's.
    pub endpoint_url: Option<String>,
}

impl std::fmt::Debug for ProfileSettings {
    // Never print secrets.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProfileSettings")
            .field("has_keys", &self.access_key_id.is_some())
            .field("region", &self.region)
            .field("endpoint_url", &self.endpoint_url)
            .finish_non_exhaustive()
    }
}

type Sections = BTreeMap<String, BTreeMap<String, String>>;

/// INI sections as Python's configparser reads these files: `[name]` headers,
/// `key = value` or `key: value`, option names lower-cased, `#`/`;` comment lines,
/// indented lines belong to the previous key (nested service settings) and are
/// ignored here.
fn parse_ini(text: &str) -> Sections {
    let mut sections = Sections::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with(';') {
            continue;
        }
        if line.starts_with([' ', '\t']) {
            continue;
        }
        if let Some(name) = trimmed.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
            let name = name.trim().to_string();
            sections.entry(name.clone()).or_default();
            current = Some(name);
            continue;
        }
        let Some(section) = &current else { continue };
        let split = trimmed.find(['=', ':']);
        if let Some(i) = split {
            let key = trimmed[..i].trim().to_ascii_lowercase();
            let value = trimmed[i + 1..].trim().to_string();
            if let Some(s) = sections.get_mut(section) {
                s.insert(key, value);
            }
        }
    }
    sections
}

/// The settings of profile `name`, from the credentials file's `[name]` and the
/// config file's `[profile name]` (`[default]` for the default profile); keys in the
/// credentials file win. `None` when neither file has the profile.
pub fn resolve(
    name: &str,
    credentials: Option<&str>,
    config: Option<&str>,
) -> Option<ProfileSettings> {
    let creds = credentials.map(parse_ini).and_then(|mut s| s.remove(name));
    let conf = config.map(parse_ini).and_then(|mut s| {
        s.remove(&format!("profile {name}"))
            .or_else(|| (name == "default").then(|| s.remove("default")).flatten())
    });
    if creds.is_none() && conf.is_none() {
        return None;
    }
    let get = |key: &str| {
        let non_empty =
            |m: &BTreeMap<String, String>| m.get(key).filter(|v| !v.is_empty()).cloned();
        creds
            .as_ref()
            .and_then(non_empty)
            .or_else(|| conf.as_ref().and_then(non_empty))
    };
    Some(ProfileSettings {
        access_key_id: get("aws_access_key_id"),
        secret_access_key: get("aws_secret_access_key"),
        session_token: get("aws_session_token"),
        region: get("region"),
        endpoint_url: get("endpoint_url"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CREDENTIALS: &str = "\
# comment
[default]
aws_access_key_id = AKIDDEFAULT
aws_secret_access_key = secretdefault

[backup]
aws_access_key_id=AKIDBACKUP
aws_secret_access_key: secretbackup
aws_session_token = tok
";

    const CONFIG: &str = "\
[default]
region = eu-west-1

[profile backup]
region = eu-central-1
aws_access_key_id = AKIDFROMCONFIG
s3 =
    addressing_style = path
endpoint_url = https://s3.example.test

[profile configonly]
AWS_ACCESS_KEY_ID = AKIDCONFIGONLY
aws_secret_access_key = secretconfigonly

[backup]
region = not-a-profile-section
";

    #[test]
    fn credentials_win_over_config_and_sections_follow_boto3() {
        let p = resolve("backup", Some(CREDENTIALS), Some(CONFIG)).unwrap();
        assert_eq!(p.access_key_id.as_deref(), Some("AKIDBACKUP"));
        assert_eq!(p.secret_access_key.as_deref(), Some("secretbackup"));
        assert_eq!(p.session_token.as_deref(), Some("tok"));
        assert_eq!(p.region.as_deref(), Some("eu-central-1"));
        assert_eq!(p.endpoint_url.as_deref(), Some("https://s3.example.test"));

        let d = resolve("default", Some(CREDENTIALS), Some(CONFIG)).unwrap();
        assert_eq!(d.access_key_id.as_deref(), Some("AKIDDEFAULT"));
        assert_eq!(d.region.as_deref(), Some("eu-west-1"));

        let c = resolve("configonly", None, Some(CONFIG)).unwrap();
        assert_eq!(c.access_key_id.as_deref(), Some("AKIDCONFIGONLY"));
        assert_eq!(c.region, None);

        assert!(resolve("missing", Some(CREDENTIALS), Some(CONFIG)).is_none());
        assert!(resolve("backup", None, None).is_none());
        assert!(!format!("{p:?}").contains("secretbackup"));
    }
}
