//! Egress rules for provider calls (Vault's `disable_strict_networking`,
//! `allowed_ipv4_addresses`, `allowed_ipv6_addresses`, `allowed_ports`).
//!
//! By default a destination may reach only public addresses (every IANA
//! special-purpose range — loopback and private ranges included — is refused)
//! on ports 80 and 443. An allow-list for an address family replaces the
//! default for that family; `allowed_ports` replaces the default ports.
//! Addresses are judged in their canonical form: an IPv4-mapped or
//! IPv4-compatible IPv6 address is its IPv4 address, and an IPv6 address that
//! embeds IPv4 addresses (NAT64, 6to4, Teredo, SIIT, ISATAP) must also pass
//! the IPv4 rules for each of them. Link-local metadata addresses
//! (169.254.0.0/16, `fd00:ec2::254`, and their embeddings) stay closed
//! whatever the allow-lists say: only `disable_strict_networking` opens them. The
//! rules apply to the resolved addresses of every connection to the provider's
//! API, endpoint overrides included: [`EgressResolver`] filters DNS answers for
//! reqwest, and [`EgressPolicy::check_url`] resolves and checks before a
//! connection for clients that cannot take a resolver (and for IP literals).
//! The fields are read as [`Networking`] with the rest of a destination's
//! config, once per call (see `typed.rs`).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use serde::Deserialize;

use super::SyncError;
use super::fields;

/// An address range, `addr/prefix`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn parse(s: &str) -> Result<Self, String> {
        let bad = || format!("invalid CIDR address: {s}");
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a.trim(), Some(p.trim())),
            None => (s.trim(), None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(bad)?,
            None => max,
        };
        Ok(Cidr { addr, prefix })
    }

    const fn v4(a: u8, b: u8, c: u8, d: u8, prefix: u8) -> Self {
        Cidr {
            addr: IpAddr::V4(Ipv4Addr::new(a, b, c, d)),
            prefix,
        }
    }

    const fn v6(segments: [u16; 8], prefix: u8) -> Self {
        let [a, b, c, d, e, f, g, h] = segments;
        Cidr {
            addr: IpAddr::V6(Ipv6Addr::new(a, b, c, d, e, f, g, h)),
            prefix,
        }
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// IANA special-purpose address registries (IPv4 and IPv6), plus multicast.
const SPECIAL_PURPOSE: &[Cidr] = &[
    Cidr::v4(0, 0, 0, 0, 8),
    Cidr::v4(10, 0, 0, 0, 8),
    Cidr::v4(100, 64, 0, 0, 10),
    Cidr::v4(127, 0, 0, 0, 8),
    Cidr::v4(169, 254, 0, 0, 16),
    Cidr::v4(172, 16, 0, 0, 12),
    Cidr::v4(192, 0, 0, 0, 24),
    Cidr::v4(192, 0, 2, 0, 24),
    Cidr::v4(192, 31, 196, 0, 24),
    Cidr::v4(192, 52, 193, 0, 24),
    Cidr::v4(192, 88, 99, 0, 24),
    Cidr::v4(192, 168, 0, 0, 16),
    Cidr::v4(192, 175, 48, 0, 24),
    Cidr::v4(198, 18, 0, 0, 15),
    Cidr::v4(198, 51, 100, 0, 24),
    Cidr::v4(203, 0, 113, 0, 24),
    Cidr::v4(224, 0, 0, 0, 4),
    Cidr::v4(240, 0, 0, 0, 4),
    Cidr::v6([0, 0, 0, 0, 0, 0, 0, 0], 128),
    Cidr::v6([0, 0, 0, 0, 0, 0, 0, 1], 128),
    Cidr::v6([0, 0, 0, 0, 0, 0xffff, 0, 0], 96),
    Cidr::v6([0x64, 0xff9b, 0, 0, 0, 0, 0, 0], 96),
    Cidr::v6([0x64, 0xff9b, 1, 0, 0, 0, 0, 0], 48),
    Cidr::v6([0x100, 0, 0, 0, 0, 0, 0, 0], 64),
    Cidr::v6([0x2001, 0, 0, 0, 0, 0, 0, 0], 23),
    Cidr::v6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32),
    Cidr::v6([0x2002, 0, 0, 0, 0, 0, 0, 0], 16),
    Cidr::v6([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7),
    Cidr::v6([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10),
    Cidr::v6([0xff00, 0, 0, 0, 0, 0, 0, 0], 8),
];

/// The cloud providers' instance metadata services: IPv4 link-local and
/// AWS's IPv6 endpoint. They hand out the server's own credentials, so only
/// `disable_strict_networking` lets a destination reach them.
const METADATA: &[Cidr] = &[
    Cidr::v4(169, 254, 0, 0, 16),
    Cidr::v6([0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254], 128),
];

/// The address a connection to `ip` really reaches: an IPv4-mapped
/// (`::ffff:a.b.c.d`) or IPv4-compatible (`::a.b.c.d`) address is that IPv4
/// address (`::` and `::1` stay IPv6).
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None if u128::from(v6) >> 32 == 0 && u128::from(v6) > 1 => {
                IpAddr::V4(Ipv4Addr::from(low32(v6)))
            }
            None => ip,
        },
        v4 => v4,
    }
}

fn low32(v6: Ipv6Addr) -> u32 {
    // Truncation keeps the low 32 bits, which is the point.
    (u128::from(v6) & 0xffff_ffff) as u32
}

/// The IPv4 addresses an IPv6 address carries to a translator or tunnel:
/// NAT64 (`64:ff9b::/96`; `64:ff9b:1::/48` at each RFC 6052 position), SIIT
/// (`::ffff:0:a.b.c.d`), 6to4 (`2002:AABB:CCDD::/48`), Teredo (`2001::/32`:
/// the server, and the client's inverted address) and ISATAP (interface
/// identifier `[02]00:5efe:a.b.c.d`). Connections to it end at those IPv4
/// addresses, so they obey the IPv4 rules too.
pub fn embedded_v4(v6: Ipv6Addr) -> Vec<Ipv4Addr> {
    let o = v6.octets();
    let s = v6.segments();
    let v4 = |a: u8, b: u8, c: u8, d: u8| Ipv4Addr::new(a, b, c, d);
    let mut out = Vec::new();
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] || s[..6] == [0, 0, 0, 0, 0xffff, 0] {
        out.push(Ipv4Addr::from(low32(v6)));
    }
    if s[..3] == [0x64, 0xff9b, 1] {
        // RFC 6052 layouts for prefixes of 48, 56, 64 and 96 bits (octet 8 is zero).
        out.push(v4(o[6], o[7], o[9], o[10]));
        out.push(v4(o[7], o[9], o[10], o[11]));
        out.push(v4(o[9], o[10], o[11], o[12]));
        out.push(Ipv4Addr::from(low32(v6)));
    }
    if s[0] == 0x2002 {
        out.push(v4(o[2], o[3], o[4], o[5]));
    }
    if s[..2] == [0x2001, 0] {
        out.push(v4(o[4], o[5], o[6], o[7]));
        out.push(Ipv4Addr::from(!low32(v6)));
    }
    if s[4] & 0xfcff == 0 && s[5] == 0x5efe {
        out.push(Ipv4Addr::from(low32(v6)));
    }
    out
}

const DEFAULT_PORTS: &[u16] = &[80, 443];

/// The egress rules of one destination.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct EgressPolicy {
    pub disabled: bool,
    pub allowed_v4: Vec<Cidr>,
    pub allowed_v6: Vec<Cidr>,
    pub allowed_ports: Vec<u16>,
}

/// Why a connection was refused; surfaces as a `CLIENT_SIDE_ERROR`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EgressRefused(pub String);

impl fmt::Display for EgressRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "egress refused: {}", self.0)
    }
}

impl std::error::Error for EgressRefused {}

impl From<EgressRefused> for SyncError {
    fn from(e: EgressRefused) -> Self {
        SyncError::ClientSide(e.to_string())
    }
}

/// The networking fields of a destination's config, as the engine sends them.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Networking {
    #[serde(default, deserialize_with = "fields::or_default")]
    pub allowed_ipv4_addresses: Vec<String>,
    #[serde(default, deserialize_with = "fields::or_default")]
    pub allowed_ipv6_addresses: Vec<String>,
    #[serde(default, deserialize_with = "fields::or_default")]
    pub allowed_ports: Vec<u16>,
    #[serde(default, deserialize_with = "fields::or_default")]
    pub disable_strict_networking: bool,
}

impl Networking {
    /// The fields' names, as in a destination's config.
    pub const FIELDS: [&'static str; 4] = [
        "allowed_ipv4_addresses",
        "allowed_ipv6_addresses",
        "allowed_ports",
        "disable_strict_networking",
    ];
}

impl TryFrom<Networking> for EgressPolicy {
    type Error = SyncError;

    fn try_from(n: Networking) -> Result<Self, SyncError> {
        let cidrs = |field: &str, items: &[String]| -> Result<Vec<Cidr>, SyncError> {
            items
                .iter()
                .map(|s| Cidr::parse(s).map_err(|e| SyncError::ClientSide(format!("{field}: {e}"))))
                .collect()
        };
        Ok(EgressPolicy {
            disabled: n.disable_strict_networking,
            allowed_v4: cidrs("allowed_ipv4_addresses", &n.allowed_ipv4_addresses)?,
            allowed_v6: cidrs("allowed_ipv6_addresses", &n.allowed_ipv6_addresses)?,
            allowed_ports: n.allowed_ports,
        })
    }
}

impl EgressPolicy {
    /// Whether the rules let a connection reach `ip` (any port).
    ///
    /// An IPv4-mapped or IPv4-compatible IPv6 address is its IPv4 address. An
    /// IPv6 address that embeds IPv4 addresses (NAT64, 6to4, Teredo, SIIT,
    /// ISATAP: see [`embedded_v4`]) must pass the IPv6 rules and, for every
    /// address embedded, the IPv4 rules. Link-local metadata addresses
    /// ([`METADATA`]) are refused whatever the allow-lists say.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), EgressRefused> {
        if self.disabled {
            return Ok(());
        }
        let ip = canonical(ip);
        let embedded = match ip {
            IpAddr::V6(v6) => embedded_v4(v6),
            IpAddr::V4(_) => Vec::new(),
        };
        let inner = embedded.iter().map(|v4| IpAddr::V4(*v4));
        if let Some(meta) = std::iter::once(ip)
            .chain(inner.clone())
            .find(|a| METADATA.iter().any(|c| c.contains(*a)))
        {
            let via = if meta == ip {
                String::new()
            } else {
                format!(" (embedded in {ip})")
            };
            return Err(EgressRefused(format!(
                "{meta}{via} is a link-local metadata address: no allow-list opens it, only \
                 disable_strict_networking"
            )));
        }
        self.check_family(ip)?;
        for v4 in inner {
            self.check_family(v4).map_err(|e| {
                EgressRefused(format!("{} (the IPv4 address embedded in {ip})", e.0))
            })?;
        }
        Ok(())
    }

    /// The allow-list of `ip`'s family, else the special-purpose ranges.
    fn check_family(&self, ip: IpAddr) -> Result<(), EgressRefused> {
        let allow_list = if ip.is_ipv4() {
            &self.allowed_v4
        } else {
            &self.allowed_v6
        };
        if !allow_list.is_empty() {
            return if allow_list.iter().any(|c| c.contains(ip)) {
                Ok(())
            } else {
                Err(EgressRefused(format!(
                    "{ip} is not in the destination's allowed_{}_addresses",
                    if ip.is_ipv4() { "ipv4" } else { "ipv6" }
                )))
            };
        }
        if SPECIAL_PURPOSE.iter().any(|c| c.contains(ip)) {
            return Err(EgressRefused(format!(
                "{ip} is a special-purpose (loopback, private or reserved) address; allow it with \
                 allowed_ipv4_addresses / allowed_ipv6_addresses or set disable_strict_networking"
            )));
        }
        Ok(())
    }

    pub fn check_port(&self, port: u16) -> Result<(), EgressRefused> {
        if self.disabled {
            return Ok(());
        }
        let ports = if self.allowed_ports.is_empty() {
            DEFAULT_PORTS
        } else {
            &self.allowed_ports
        };
        if ports.contains(&port) {
            Ok(())
        } else {
            Err(EgressRefused(format!(
                "port {port} is not allowed (allowed: {ports:?}); set allowed_ports or disable_strict_networking"
            )))
        }
    }

    /// Checks `url`'s port, and its host when that is an address (a literal
    /// never reaches a resolver). Host names are checked where they are
    /// resolved for the connection, by [`EgressResolver`]: a check that
    /// resolved them here could be answered differently from the lookup the
    /// connection then makes (DNS rebinding).
    pub fn check_url(&self, url: &url::Url) -> Result<(), SyncError> {
        let host = url
            .host_str()
            .ok_or_else(|| SyncError::ClientSide(format!("the URL {url} has no host")))?;
        let port = url
            .port_or_known_default()
            .ok_or_else(|| SyncError::ClientSide(format!("the URL {url} has no port")))?;
        self.check_port(port)?;
        if self.disabled {
            return Ok(());
        }
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = host.parse::<IpAddr>() {
            self.check_ip(ip)?;
        }
        Ok(())
    }
}

/// Host name lookups for provider connections: the system's resolver, or one
/// a test supplies (through [`ConnectorEnv`](super::ConnectorEnv)).
#[derive(Clone, Default)]
pub enum Dns {
    #[default]
    System,
    Custom(Arc<dyn Lookup>),
}

/// A host name resolver (see [`Dns::Custom`]).
#[async_trait::async_trait]
pub trait Lookup: Send + Sync {
    async fn lookup(&self, host: &str) -> std::io::Result<Vec<IpAddr>>;
}

impl Dns {
    pub fn custom(lookup: impl Lookup + 'static) -> Self {
        Dns::Custom(Arc::new(lookup))
    }

    /// The addresses of `host`.
    pub async fn lookup(&self, host: &str) -> std::io::Result<Vec<IpAddr>> {
        match self {
            Dns::System => Ok(tokio::net::lookup_host((host, 0))
                .await?
                .map(|a| a.ip())
                .collect()),
            Dns::Custom(lookup) => lookup.lookup(host).await,
        }
    }
}

impl fmt::Debug for Dns {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Dns::System => "Dns::System",
            Dns::Custom(_) => "Dns::Custom",
        })
    }
}

/// The same resolver: both the system's, or the very same custom one.
impl PartialEq for Dns {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Dns::System, Dns::System) => true,
            (Dns::Custom(a), Dns::Custom(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

impl Eq for Dns {}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The resolver of every provider connection, whatever the client (reqwest,
/// the AWS SDK's HTTP client): it looks the name up once and hands the
/// connection only the addresses the rules allow, so the connection goes
/// exactly where the check allowed (no check-then-connect gap).
#[derive(Clone)]
pub struct EgressResolver {
    pub policy: Arc<EgressPolicy>,
    pub dns: Dns,
}

impl fmt::Debug for EgressResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EgressResolver")
            .field("policy", &self.policy)
            .field("dns", &self.dns)
            .finish()
    }
}

impl EgressResolver {
    /// The allowed addresses of `host`; an [`EgressRefused`] when none is.
    pub async fn resolve(&self, host: &str) -> Result<Vec<IpAddr>, BoxError> {
        let resolved = self.dns.lookup(host).await?;
        let mut refusal = None;
        let allowed: Vec<IpAddr> = resolved
            .into_iter()
            .filter(|ip| match self.policy.check_ip(*ip) {
                Ok(()) => true,
                Err(e) => {
                    refusal = Some(e);
                    false
                }
            })
            .collect();
        if allowed.is_empty() {
            let e =
                refusal.unwrap_or_else(|| EgressRefused(format!("{host} resolves to no address")));
            return Err(Box::new(e));
        }
        Ok(allowed)
    }
}

impl reqwest::dns::Resolve for EgressResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let resolver = self.clone();
        Box::pin(async move {
            let allowed = EgressResolver::resolve(&resolver, name.as_str()).await?;
            let addrs = allowed.into_iter().map(|ip| SocketAddr::new(ip, 0));
            Ok(Box::new(addrs) as reqwest::dns::Addrs)
        })
    }
}

impl aws_smithy_runtime_api::client::dns::ResolveDns for EgressResolver {
    fn resolve_dns<'a>(
        &'a self,
        name: &'a str,
    ) -> aws_smithy_runtime_api::client::dns::DnsFuture<'a> {
        use aws_smithy_runtime_api::client::dns::{DnsFuture, ResolveDnsError};
        DnsFuture::new(async move {
            EgressResolver::resolve(self, name)
                .await
                .map_err(ResolveDnsError::new)
        })
    }
}

/// The egress refusal behind a client's error, if that is what it is.
pub fn refusal<'e>(err: &'e (dyn std::error::Error + 'static)) -> Option<&'e EgressRefused> {
    cause(err)
}

/// The first error of type `T` in `err`'s chain of sources (`err` included).
pub fn cause<'e, T: std::error::Error + 'static>(
    err: &'e (dyn std::error::Error + 'static),
) -> Option<&'e T> {
    let mut source = Some(err);
    while let Some(s) = source {
        if let Some(found) = s.downcast_ref::<T>() {
            return Some(found);
        }
        source = s.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    /// The rules of a destination's networking fields.
    fn policy(fields: Value) -> Result<EgressPolicy, SyncError> {
        EgressPolicy::try_from(serde_json::from_value::<Networking>(fields).unwrap())
    }

    #[test]
    fn default_refuses_special_purpose_and_odd_ports() {
        let p = EgressPolicy::default();
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "192.168.1.1",
            "169.254.169.254",
            "::1",
            "fd00::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(p.check_ip(ip.parse().unwrap()).is_err(), "{ip}");
        }
        for ip in ["8.8.8.8", "2606:4700::1111"] {
            assert!(p.check_ip(ip.parse().unwrap()).is_ok(), "{ip}");
        }
        assert!(p.check_port(443).is_ok());
        assert!(p.check_port(8200).is_err());
    }

    #[test]
    fn allow_lists_and_disable_switch() {
        let p = policy(json!({
            "allowed_ipv4_addresses": ["127.0.0.0/8"],
            "allowed_ports": [8080],
        }))
        .unwrap();
        assert!(p.check_ip("127.0.0.1".parse().unwrap()).is_ok());
        assert!(p.check_ip("8.8.8.8".parse().unwrap()).is_err());
        assert!(p.check_port(8080).is_ok());
        assert!(p.check_port(443).is_err());
        let off = policy(json!({"disable_strict_networking": true})).unwrap();
        assert!(off.check_ip("127.0.0.1".parse().unwrap()).is_ok());
        assert!(off.check_port(1).is_ok());
        assert!(policy(json!({"allowed_ipv4_addresses": ["300.1.1.1/8"]})).is_err());
    }

    fn refused(p: &EgressPolicy, ip: &str) -> bool {
        p.check_ip(ip.parse().unwrap()).is_err()
    }

    #[test]
    fn embedded_ipv4_is_checked_in_its_canonical_form() {
        // IPv4-compatible and IPv4-mapped addresses are their IPv4 address.
        let p = EgressPolicy::default();
        for ip in [
            "::127.0.0.1",
            "::10.0.0.1",
            "::ffff:10.0.0.1",
            "::a9fe:a9fe",
        ] {
            assert!(refused(&p, ip), "{ip}");
        }
        assert!(!refused(&p, "::ffff:8.8.8.8"));
        // A v6 allow-list that covers the translation prefixes: the IPv4
        // address inside still obeys the IPv4 rules.
        let p = policy(json!({"allowed_ipv6_addresses": ["::/0"]})).unwrap();
        for ip in [
            "::127.0.0.1",        // IPv4-compatible
            "::ffff:0:127.0.0.1", // SIIT IPv4-translated
            "64:ff9b::127.0.0.1", // NAT64 (well-known prefix)
            "64:ff9b::10.1.2.3",
            "64:ff9b:1:7f00:0:100::", // NAT64 (local-use prefix, /48 layout)
            "2002:7f00:1::1",         // 6to4 of 127.0.0.1
            "2002:c0a8:101::",        // 6to4 of 192.168.1.1
            "2001:0:808:808::80ff:fffe", // Teredo, client 127.0.0.1
            "2001:0:a00:1::f7f7:f7f7", // Teredo, server 10.0.0.1
            "2001:db8:1::5efe:10.0.0.1", // ISATAP
            "2606:4700::200:5efe:c0a8:101",
        ] {
            assert!(refused(&p, ip), "{ip}");
        }
        for ip in [
            "64:ff9b::8.8.8.8",
            "2002:808:808::1",
            "2606:4700::1111",
            "::1",
        ] {
            assert!(!refused(&p, ip), "{ip}");
        }
        // ... and an IPv4 allow-list decides for the embedded address too.
        let p = policy(json!({"allowed_ipv6_addresses": ["::/0"],
                              "allowed_ipv4_addresses": ["10.0.0.0/8"]}))
        .unwrap();
        assert!(refused(&p, "64:ff9b::8.8.8.8"));
        assert!(!refused(&p, "64:ff9b::10.0.0.1"));
        assert!(!refused(&p, "::ffff:10.0.0.1"));
    }

    #[test]
    fn allow_lists_never_reopen_link_local_metadata() {
        let p = policy(json!({"allowed_ipv4_addresses": ["0.0.0.0/0"],
                              "allowed_ipv6_addresses": ["::/0"]}))
        .unwrap();
        for ip in [
            "169.254.169.254",
            "169.254.170.2",
            "fd00:ec2::254",
            "::ffff:169.254.169.254",
            "::169.254.169.254",
            "64:ff9b::169.254.169.254",
            "2002:a9fe:a9fe::",
            "2001:0:808:808::5601:5601",
            "2001:db8::5efe:169.254.169.254",
        ] {
            let err = p.check_ip(ip.parse().unwrap()).unwrap_err();
            assert!(err.0.contains("metadata"), "{ip}: {err}");
        }
        for ip in ["127.0.0.1", "10.0.0.1", "fd00::1", "fd00:ec2::253"] {
            assert!(!refused(&p, ip), "{ip}");
        }
        let off = policy(json!({"disable_strict_networking": true})).unwrap();
        for ip in [
            "169.254.169.254",
            "fd00:ec2::254",
            "64:ff9b::169.254.169.254",
        ] {
            assert!(!refused(&off, ip), "{ip}");
        }
    }

    #[tokio::test]
    async fn names_are_checked_when_resolved_for_the_connection() {
        let p = Arc::new(EgressPolicy::default());
        // A URL's port and address literal are checked at once...
        let err = p
            .check_url(&url::Url::parse("https://127.0.0.1/x").unwrap())
            .unwrap_err();
        assert!(matches!(err, SyncError::ClientSide(m) if m.contains("special-purpose")));
        let err = p
            .check_url(&url::Url::parse("http://localhost:9/x").unwrap())
            .unwrap_err();
        assert!(matches!(err, SyncError::ClientSide(m) if m.contains("port 9")));
        // ... a name by the resolver the connection uses.
        p.check_url(&url::Url::parse("https://localhost/x").unwrap())
            .unwrap();
        let resolver = EgressResolver {
            policy: p,
            dns: Dns::System,
        };
        let err = resolver.resolve("localhost").await.unwrap_err();
        let refused = refusal(err.as_ref()).unwrap();
        assert!(refused.0.contains("special-purpose"), "{refused}");
    }
}
