//! Which registries the image preflight may connect to, and at which addresses (issue 25,
//! item 6). A DataJob's author names the image, so without a list the operator would
//! connect wherever a spec says (the cloud's metadata address `169.254.169.254`, a
//! Service inside the cluster, its own admin port), and what came back would tell the
//! author whether that host answered.
//!
//! The rules: a host is looked up only when it is on the list, the built-in
//! [`PUBLIC_REGISTRIES`] plus the hosts the platform engineer names
//! (`--preflight-registries`). A public registry is reached only at public addresses: a
//! loopback, link-local, private, shared (100.64/10) or otherwise special address is
//! refused, and so are names that only mean something inside a cluster or a site
//! (`*.svc`, `*.cluster.local`, `*.local`, `*.internal`, `localhost`, names without a
//! dot). A named host may be anywhere: the platform engineer said so. Pure: patterns,
//! addresses and the check of a URL; the connections are in `registry.rs`.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use reqwest::Url;

/// The registries every installation may look images up in: public registries and the
/// hosts they send clients to for tokens (`auth.docker.io`, `gitlab.com`) or manifests
/// (`registry.k8s.io` redirects to `*.pkg.dev`). `*` stands for exactly one DNS label.
/// docs/operations.md lists them (a test checks).
pub const PUBLIC_REGISTRIES: &[&str] = &[
    "docker.io",
    "index.docker.io",
    "registry-1.docker.io",
    "auth.docker.io",
    "ghcr.io",
    "quay.io",
    "registry.k8s.io",
    "gcr.io",
    "*.gcr.io",
    "*.pkg.dev",
    "public.ecr.aws",
    "*.dkr.ecr.*.amazonaws.com",
    "mcr.microsoft.com",
    "*.azurecr.io",
    "nvcr.io",
    "registry.gitlab.com",
    "gitlab.com",
];

/// An entry of the list that is not a registry host.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "{entry:?} is not a registry host (host, host:port or host:*, `*` standing for one DNS label): {why}"
)]
pub struct InvalidRegistry {
    pub entry: String,
    pub why: &'static str,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum HostPattern {
    /// Lower-case labels; `*` matches any one label.
    Name(Vec<String>),
    Ip(IpAddr),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PortPattern {
    /// No port: the scheme's (443, or 80 for a plain-HTTP loopback registry).
    Default,
    Exact(u16),
    /// `host:*`.
    Any,
}

/// One entry of the allow-list: `ghcr.io`, `registry.example.com:5000`, `127.0.0.1:*`,
/// `*.azurecr.io`, `[fd00::1]:5000`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistryHost {
    host: HostPattern,
    port: PortPattern,
}

impl FromStr for RegistryHost {
    type Err = InvalidRegistry;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |why| InvalidRegistry {
            entry: s.to_string(),
            why,
        };
        let entry = s.trim().to_ascii_lowercase();
        if entry.contains("://") || entry.contains('/') {
            return Err(bad("a host, not a URL or a path"));
        }
        let (host, port) = match entry.strip_prefix('[') {
            Some(rest) => {
                let (ip, after) = rest.split_once(']').ok_or_else(|| bad("no closing ]"))?;
                let port = match after {
                    "" => None,
                    p => Some(p.strip_prefix(':').ok_or_else(|| bad("junk after ]"))?),
                };
                let ip = Ipv6Addr::from_str(ip).map_err(|_| bad("not an IPv6 address"))?;
                (HostPattern::Ip(IpAddr::V6(ip)), port)
            }
            None => {
                let (host, port) = match entry.split_once(':') {
                    Some((h, p)) => (h, Some(p)),
                    None => (entry.as_str(), None),
                };
                (name_pattern(host).map_err(bad)?, port)
            }
        };
        let port = match port {
            None => PortPattern::Default,
            Some("*") => PortPattern::Any,
            Some(p) => match p.parse::<u16>() {
                Ok(n) if n > 0 && p.bytes().all(|b| b.is_ascii_digit()) => PortPattern::Exact(n),
                _ => return Err(bad("the port is not a number from 1 to 65535 or *")),
            },
        };
        Ok(RegistryHost { host, port })
    }
}

/// A host name or IPv4 address, normalized as a URL's host is (so that `127.1` is
/// `127.0.0.1`, as it would be when connecting).
fn name_pattern(host: &str) -> Result<HostPattern, &'static str> {
    if host.is_empty() {
        return Err("no host");
    }
    let labels: Vec<&str> = host.split('.').collect();
    if labels.contains(&"*") {
        let ok = |l: &&str| {
            *l == "*"
                || (!l.is_empty()
                    && l.len() <= 63
                    && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    && !l.starts_with('-')
                    && !l.ends_with('-'))
        };
        return match labels.iter().all(ok) {
            true => Ok(HostPattern::Name(
                labels.iter().map(|l| l.to_string()).collect(),
            )),
            false => Err("a label is not a DNS label or *"),
        };
    }
    if host.contains('*') {
        return Err("`*` stands for a whole label");
    }
    let url = Url::parse(&format!("https://{host}/")).map_err(|_| "not a host name")?;
    match url.host() {
        Some(url::Host::Domain(d)) => Ok(HostPattern::Name(
            d.split('.').map(str::to_string).collect(),
        )),
        Some(url::Host::Ipv4(ip)) => Ok(HostPattern::Ip(IpAddr::V4(ip))),
        Some(url::Host::Ipv6(ip)) => Ok(HostPattern::Ip(IpAddr::V6(ip))),
        None => Err("not a host name"),
    }
}

impl RegistryHost {
    fn matches_host(&self, host: &url::Host<&str>) -> bool {
        match (&self.host, host) {
            (HostPattern::Name(pattern), url::Host::Domain(d)) => {
                let labels: Vec<&str> = d.split('.').collect();
                labels.len() == pattern.len()
                    && pattern.iter().zip(&labels).all(|(p, l)| p == "*" || p == l)
            }
            (HostPattern::Ip(p), url::Host::Ipv4(ip)) => *p == IpAddr::V4(*ip),
            (HostPattern::Ip(p), url::Host::Ipv6(ip)) => *p == IpAddr::V6(*ip),
            _ => false,
        }
    }

    fn matches(&self, url: &Url) -> bool {
        let port = match self.port {
            PortPattern::Default => url.port().is_none(),
            PortPattern::Exact(p) => url.port_or_known_default() == Some(p),
            PortPattern::Any => true,
        };
        port && url.host().is_some_and(|h| self.matches_host(&h))
    }
}

/// Why a URL is not looked at. Every refusal reads the same to the DataJob's author as a
/// registry that did not answer; the log (debug) says which.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Refused {
    #[error("{0} is not on the preflight's registry list (--preflight-registries)")]
    NotListed(String),
    #[error(
        "{0} is a name or address inside the cluster or this host, and not named in --preflight-registries"
    )]
    Internal(String),
    #[error("{0}: only https, or http to a loopback registry")]
    Scheme(String),
}

/// The allow-list: where the image preflight may connect.
#[derive(Clone, Debug)]
pub struct Registries {
    /// Public addresses only.
    public: Vec<RegistryHost>,
    /// Named by the platform engineer: any address.
    named: Vec<RegistryHost>,
    /// Everything (`kubectl datajob plan`, where the user's own machine connects).
    anywhere: bool,
}

impl Registries {
    /// [`PUBLIC_REGISTRIES`] (at public addresses) and `named` (at any address).
    pub fn new(named: Vec<RegistryHost>) -> Self {
        Registries {
            public: PUBLIC_REGISTRIES
                .iter()
                .filter_map(|r| r.parse().ok())
                .collect(),
            named,
            anywhere: false,
        }
    }

    /// Any registry at any address. For `kubectl datajob plan`: there the user's own
    /// machine connects, with the user's own network and rights, as `docker pull` would.
    pub fn anywhere() -> Self {
        Registries {
            public: Vec::new(),
            named: Vec::new(),
            anywhere: true,
        }
    }

    /// A list with other public entries (tests: a loopback name standing for a public one).
    #[cfg(test)]
    pub(crate) fn with_public(public: Vec<RegistryHost>, named: Vec<RegistryHost>) -> Self {
        Registries {
            public,
            named,
            anywhere: false,
        }
    }

    /// May `url` be requested? Names are checked again at resolution ([`Self::any_address`]).
    pub(crate) fn check(&self, url: &Url) -> Result<(), Refused> {
        let shown = || {
            let host = url.host_str().unwrap_or_default();
            match url.port() {
                Some(p) => format!("{host}:{p}"),
                None => host.to_string(),
            }
        };
        let Some(host) = url.host() else {
            return Err(Refused::NotListed(shown()));
        };
        if url.scheme() != scheme_for(&host) {
            return Err(Refused::Scheme(url.to_string()));
        }
        if self.anywhere || self.named.iter().any(|r| r.matches(url)) {
            return Ok(());
        }
        if !self.public.iter().any(|r| r.matches(url)) {
            return Err(Refused::NotListed(shown()));
        }
        let public = match host {
            url::Host::Domain(d) => !internal_name(d),
            url::Host::Ipv4(ip) => is_public(IpAddr::V4(ip)),
            url::Host::Ipv6(ip) => is_public(IpAddr::V6(ip)),
        };
        match public {
            true => Ok(()),
            false => Err(Refused::Internal(shown())),
        }
    }

    /// May `name` resolve to any address (it was named, or everything is allowed), or
    /// only to public ones? Asked by the resolver for every connection.
    pub(crate) fn any_address(&self, name: &str) -> bool {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        let host = match name.parse::<IpAddr>() {
            Ok(IpAddr::V4(ip)) => url::Host::Ipv4(ip),
            Ok(IpAddr::V6(ip)) => url::Host::Ipv6(ip),
            Err(_) => url::Host::Domain(name.as_str()),
        };
        self.anywhere || self.named.iter().any(|r| r.matches_host(&host))
    }
}

/// Registries on this host speak plain HTTP (as containerd assumes for them too); all
/// others HTTPS.
fn scheme_for(host: &url::Host<&str>) -> &'static str {
    match is_loopback(host) {
        true => "http",
        false => "https",
    }
}

/// `localhost`, `127.0.0.1` or `[::1]`: a registry on this host.
pub(crate) fn is_loopback(host: &url::Host<&str>) -> bool {
    match host {
        url::Host::Domain(d) => *d == "localhost",
        url::Host::Ipv4(ip) => *ip == Ipv4Addr::LOCALHOST,
        url::Host::Ipv6(ip) => *ip == Ipv6Addr::LOCALHOST,
    }
}

/// Names that mean something only inside a cluster, a site or this host.
fn internal_name(name: &str) -> bool {
    let name = name.trim_end_matches('.');
    !name.contains('.')
        || ["localhost", "local", "internal", "svc", "home.arpa"]
            .iter()
            .any(|suffix| name == *suffix || name.ends_with(&format!(".{suffix}")))
}

/// An address on the public internet: not loopback, link-local, private, shared,
/// unspecified, broadcast, multicast, documentation or reserved; IPv4 inside IPv6
/// (mapped, compatible, NAT64, 6to4) is judged as the IPv4 address.
pub(crate) fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(a == 0
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_multicast()
        || a >= 240
        || (a == 100 && (64..128).contains(&b))
        || (a == 192 && b == 0 && (c == 0 || c == 2))
        || (a == 198 && (b == 18 || b == 19))
        || (a == 198 && b == 51 && c == 100)
        || (a == 203 && b == 0 && c == 113))
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    let embedded =
        |hi: u16, lo: u16| Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8);
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    // IPv4-compatible (::a.b.c.d) and NAT64 (64:ff9b::a.b.c.d).
    if s[..6] == [0; 6] || s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return !ip.is_unspecified() && !ip.is_loopback() && is_public_v4(embedded(s[6], s[7]));
    }
    // 6to4: 2002:a.b.c.d::/48.
    if s[0] == 0x2002 {
        return is_public_v4(embedded(s[1], s[2]));
    }
    !(ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (s[0] & 0xffc0) == 0xfe80
        || (s[0] & 0xffc0) == 0xfec0
        || (s[0] & 0xfe00) == 0xfc00
        || (s[0] == 0x2001 && s[1] == 0x0db8)
        || (s[0] == 0x0100 && s[1..4] == [0, 0, 0]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    fn hosts(list: &[&str]) -> Vec<RegistryHost> {
        list.iter().map(|h| h.parse().unwrap()).collect()
    }

    #[test]
    fn entries_are_hosts_with_an_optional_port_or_star() {
        for ok in [
            "ghcr.io",
            " Registry.Example.com:5000 ",
            "127.0.0.1:*",
            "*.azurecr.io",
            "*.dkr.ecr.*.amazonaws.com",
            "[fd00::1]:5000",
            "[::1]",
        ] {
            assert!(ok.parse::<RegistryHost>().is_ok(), "{ok}");
        }
        for bad in [
            "",
            "https://ghcr.io",
            "ghcr.io/acme",
            "ghcr.io:",
            "ghcr.io:0",
            "ghcr.io:99999",
            "ghcr.io:+1",
            "gh*.io",
            "*..io",
            "fd00::1",
            "[fd00::1",
            "[nope]:1",
            "[::1]x",
        ] {
            let e = bad.parse::<RegistryHost>().unwrap_err();
            assert!(
                e.to_string().contains("is not a registry host"),
                "{bad}: {e}"
            );
        }
        for name in PUBLIC_REGISTRIES {
            assert!(name.parse::<RegistryHost>().is_ok(), "{name}");
        }
        // Spelled as a URL's host is: `127.1` is the loopback address it connects to.
        assert_eq!(
            "127.1:5000".parse::<RegistryHost>().unwrap(),
            "127.0.0.1:5000".parse().unwrap()
        );
    }

    #[test]
    fn the_public_registries_are_allowed_at_their_default_port_only() {
        let r = Registries::new(Vec::new());
        for ok in [
            "https://index.docker.io/v2/library/busybox/manifests/latest",
            "https://auth.docker.io/token?service=registry.docker.io",
            "https://ghcr.io/v2/acme/churn/manifests/1.4.2",
            "https://GHCR.IO:443/v2/x/manifests/1",
            "https://eu.gcr.io/v2/p/x/manifests/1",
            "https://europe-west1-docker.pkg.dev/v2/p/r/x/manifests/1",
            "https://123456789012.dkr.ecr.eu-west-1.amazonaws.com/v2/x/manifests/1",
            "https://acme.azurecr.io/v2/x/manifests/1",
        ] {
            assert_eq!(r.check(&url(ok)), Ok(()), "{ok}");
        }
        for refused in [
            "https://ghcr.io:8443/v2/x/manifests/1",
            "http://ghcr.io/v2/x/manifests/1",
            "https://gcr.io.evil.example/v2/x/manifests/1",
            "https://a.b.gcr.io/v2/x/manifests/1",
            "https://bucket.s3.amazonaws.com/v2/x/manifests/1",
            "https://registry.example.com/v2/x/manifests/1",
            "https://169.254.169.254/v2/x/manifests/1",
            "https://10.0.0.7/v2/x/manifests/1",
            "http://127.0.0.1:5000/v2/x/manifests/1",
            "https://registry.kube-system.svc.cluster.local:5000/v2/x/manifests/1",
            "https://metadata.google.internal/v2/x/manifests/1",
        ] {
            assert!(r.check(&url(refused)).is_err(), "{refused}");
        }
    }

    #[test]
    fn named_hosts_may_be_internal_and_public_ones_may_not() {
        let named = Registries::new(hosts(&[
            "127.0.0.1:5000",
            "registry.kube-system.svc.cluster.local:*",
            "10.0.0.7",
            "*.corp.example",
        ]));
        for ok in [
            "http://127.0.0.1:5000/v2/x/manifests/1",
            "https://registry.kube-system.svc.cluster.local:5000/v2/x/manifests/1",
            "https://10.0.0.7/v2/x/manifests/1",
            "https://eu.corp.example/v2/x/manifests/1",
        ] {
            assert_eq!(named.check(&url(ok)), Ok(()), "{ok}");
        }
        for refused in [
            "http://127.0.0.1:5001/v2/x/manifests/1",
            "https://10.0.0.7:5000/v2/x/manifests/1",
            "https://10.0.0.8/v2/x/manifests/1",
            "https://corp.example/v2/x/manifests/1",
        ] {
            assert!(named.check(&url(refused)).is_err(), "{refused}");
        }
        assert!(named.any_address("registry.kube-system.svc.cluster.local"));
        assert!(named.any_address("eu.corp.example."));
        assert!(!named.any_address("ghcr.io"));
        // A public entry that is an internal name or address is still refused.
        let odd = Registries::with_public(
            hosts(&[
                "localhost:*",
                "registry",
                "172.16.0.1",
                "[fe80::1]",
                "x.svc",
            ]),
            Vec::new(),
        );
        for refused in [
            "http://localhost:5000/v2/x/manifests/1",
            "https://registry/v2/x/manifests/1",
            "https://172.16.0.1/v2/x/manifests/1",
            "https://[fe80::1]/v2/x/manifests/1",
            "https://x.svc/v2/x/manifests/1",
        ] {
            assert!(
                matches!(odd.check(&url(refused)), Err(Refused::Internal(_))),
                "{refused}"
            );
        }
        assert!(!odd.any_address("localhost"));
        let any = Registries::anywhere();
        assert_eq!(
            any.check(&url("http://127.0.0.1:9/v2/x/manifests/1")),
            Ok(())
        );
        assert_eq!(any.check(&url("https://169.254.169.254/v2/")), Ok(()));
        assert!(any.any_address("10.1.2.3"));
    }

    #[test]
    fn special_addresses_are_not_public() {
        for internal in [
            "127.0.0.1",
            "127.8.9.10",
            "0.0.0.0",
            "0.1.2.3",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "100.127.255.255",
            "192.0.0.170",
            "198.18.0.1",
            "224.0.0.1",
            "240.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "fe80::1",
            "fd00:ec2::254",
            "fc00::1",
            "fec0::1",
            "ff02::1",
            "::ffff:169.254.169.254",
            "::ffff:10.0.0.1",
            "::10.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "2002:a9fe:a9fe::1",
            "2001:db8::1",
        ] {
            assert!(!is_public(internal.parse().unwrap()), "{internal}");
        }
        for public in [
            "140.82.112.33",
            "172.32.0.1",
            "100.128.0.1",
            "8.8.8.8",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
        ] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
    }

    #[test]
    fn the_operations_guide_lists_the_public_registries() {
        let doc = include_str!("../../../docs/operations.md");
        for name in PUBLIC_REGISTRIES {
            assert!(
                doc.contains(&format!("`{name}`")),
                "docs/operations.md does not list {name}"
            );
        }
    }
}
