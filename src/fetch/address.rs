//! Where deputy may fetch from. Two checks:
//!
//! * the URL policy, at registration and again before every fetch: `https`
//!   only, except `http` to a loopback host when loopback is allowed;
//! * the address policy, on every address the host resolves to, after name
//!   resolution and before connecting (OWASP SSRF Prevention Cheat Sheet:
//!   validate the address connected to, not the name). Special-purpose
//!   addresses (RFC 6890 and the IANA IPv4/IPv6 special-purpose address
//!   registries) are refused: deputy fetches only from the public Internet,
//!   as the SSRF section of the OAuth Client ID Metadata Document draft asks.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use url::{Host, Url};

/// The fetch policy. `allow_loopback` is for development only: it admits
/// loopback addresses, and `http` to a loopback host. It is driven by the
/// setting `allow_loopback_fetch` ([`Policy::from_settings`] is the one
/// place that reads it), for every outbound fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Policy {
    pub allow_loopback: bool,
}

/// Why a URL or an address was refused (logged, never sent).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("not a URL")]
    NotAUrl,
    #[error("not https (http only to a loopback host, in development)")]
    Scheme,
    #[error("no host")]
    NoHost,
    #[error("credentials in the URL")]
    Credentials,
    #[error("loopback address")]
    Loopback,
    #[error("private address (RFC 1918)")]
    Private,
    #[error("shared address space, carrier-grade NAT (RFC 6598)")]
    SharedAddressSpace,
    #[error("link-local address (RFC 3927, RFC 4291)")]
    LinkLocal,
    #[error("unique-local address (RFC 4193)")]
    UniqueLocal,
    #[error("unspecified address")]
    Unspecified,
    #[error("'this network' address (RFC 791)")]
    ThisNetwork,
    #[error("broadcast address (RFC 919)")]
    Broadcast,
    #[error("multicast address (RFC 5771, RFC 4291)")]
    Multicast,
    #[error("documentation address (RFC 5737, RFC 3849, RFC 9637)")]
    Documentation,
    #[error("benchmarking address (RFC 2544)")]
    Benchmarking,
    #[error("IETF protocol assignment address (RFC 6890, RFC 2928)")]
    ProtocolAssignments,
    /// 6to4 (RFC 3056) and local-use NAT64 (RFC 8215): where they lead
    /// cannot be checked here.
    #[error("tunnel address")]
    Tunnel,
    #[error("reserved address")]
    Reserved,
    #[error("http host resolved to a non-loopback address")]
    HttpNotLoopback,
}

impl Policy {
    pub fn from_settings(settings: &crate::config::Settings) -> Policy {
        Policy {
            allow_loopback: settings.allow_loopback_fetch,
        }
    }

    /// The URL policy: what registration accepts and what a fetch starts
    /// from. The addresses behind the host are checked at fetch time.
    pub fn check_url(&self, uri: &str) -> Result<Url, Refusal> {
        let url = Url::parse(uri).map_err(|_not_a_url| Refusal::NotAUrl)?;
        let host = url.host().ok_or(Refusal::NoHost)?;
        if matches!(&host, Host::Domain(d) if d.is_empty()) {
            return Err(Refusal::NoHost);
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(Refusal::Credentials);
        }
        match url.scheme() {
            "https" => Ok(url),
            "http" if self.allow_loopback && is_loopback_host(&host) => Ok(url),
            _ => Err(Refusal::Scheme),
        }
    }

    /// The address policy for one resolved (or literal) address.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), Refusal> {
        match ip {
            IpAddr::V4(a) => self.check_v4(a),
            IpAddr::V6(a) => self.check_v6(a),
        }
    }

    fn check_v4(&self, a: Ipv4Addr) -> Result<(), Refusal> {
        use Refusal::*;
        let refusal = match a.octets() {
            [0, 0, 0, 0] => Unspecified,
            [0, ..] => ThisNetwork,
            [127, ..] if self.allow_loopback => return Ok(()),
            [127, ..] => Loopback,
            [10, ..] => Private,
            [172, b, ..] if (16..=31).contains(&b) => Private,
            [192, 168, ..] => Private,
            [100, b, ..] if (64..=127).contains(&b) => SharedAddressSpace,
            [169, 254, ..] => LinkLocal,
            [192, 0, 0, _] => ProtocolAssignments,
            [192, 0, 2, _] | [198, 51, 100, _] | [203, 0, 113, _] => Documentation,
            [198, 18 | 19, ..] => Benchmarking,
            [255, 255, 255, 255] => Broadcast,
            [224..=239, ..] => Multicast,
            [240..=255, ..] => Reserved,
            _ => return Ok(()),
        };
        Err(refusal)
    }

    fn check_v6(&self, a: Ipv6Addr) -> Result<(), Refusal> {
        use Refusal::*;
        if a.is_unspecified() {
            return Err(Unspecified);
        }
        if a.is_loopback() {
            return if self.allow_loopback {
                Ok(())
            } else {
                Err(Loopback)
            };
        }
        // Forms that carry an IPv4 address are judged by that address:
        // IPv4-mapped ::ffff:0:0/96 and IPv4-compatible ::/96 (RFC 4291
        // §2.5.5), and the NAT64 well-known prefix 64:ff9b::/96 (RFC 6052),
        // which a NAT64 gateway forwards to the IPv4 address inside.
        let s = a.segments();
        let o = a.octets();
        let embedded = Ipv4Addr::new(o[12], o[13], o[14], o[15]);
        if a.to_ipv4_mapped().is_some() || s[..6] == [0; 6] || s[..6] == [0x64, 0xff9b, 0, 0, 0, 0]
        {
            return self.check_v4(embedded);
        }
        let refusal = match (s[0], s[1]) {
            (0x64, 0xff9b) if s[2] == 1 => Tunnel,
            (x, _) if x & 0xfe00 == 0xfc00 => UniqueLocal,
            (x, _) if x & 0xffc0 == 0xfe80 => LinkLocal,
            (x, _) if x & 0xff00 == 0xff00 => Multicast,
            (0x2001, 0x0db8) => Documentation,
            (0x3fff, y) if y & 0xf000 == 0 => Documentation,
            (0x2001, y) if y < 0x0200 => ProtocolAssignments,
            (0x2002, _) => Tunnel,
            // Global unicast 2000::/3; everything else (site-local fec0::/10,
            // discard-only 100::/64, unassigned space) is not the Internet.
            (x, _) if x & 0xe000 == 0x2000 => return Ok(()),
            _ => Reserved,
        };
        Err(refusal)
    }

    /// Check every address a host resolved to: all must pass, or none is
    /// used (a name that mixes public and internal addresses is refused).
    /// `loopback_only` is set for `http` URLs, which may only reach loopback.
    pub fn check_resolved(
        &self,
        addrs: &[IpAddr],
        loopback_only: bool,
    ) -> Result<(), (IpAddr, Refusal)> {
        for ip in addrs {
            self.check_ip(*ip).map_err(|why| (*ip, why))?;
            if loopback_only && !is_loopback_ip(*ip) {
                return Err((*ip, Refusal::HttpNotLoopback));
            }
        }
        Ok(())
    }
}

/// The address of an IP-literal host, which is connected to without any
/// name resolution (so it is checked directly).
pub fn literal_ip(url: &Url) -> Option<IpAddr> {
    match url.host()? {
        Host::Ipv4(a) => Some(IpAddr::V4(a)),
        Host::Ipv6(a) => Some(IpAddr::V6(a)),
        Host::Domain(_) => None,
    }
}

fn is_loopback_host(host: &Host<&str>) -> bool {
    match host {
        Host::Domain(d) => d.eq_ignore_ascii_case("localhost"),
        Host::Ipv4(a) => a.is_loopback(),
        Host::Ipv6(a) => a.is_loopback(),
    }
}

fn is_loopback_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => a.is_loopback(),
        IpAddr::V6(a) => a.is_loopback() || a.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STRICT: Policy = Policy {
        allow_loopback: false,
    };
    const DEV: Policy = Policy {
        allow_loopback: true,
    };

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn every_special_purpose_ipv4_range_is_refused() {
        use Refusal::*;
        let cases = [
            ("0.0.0.0", Unspecified),
            ("0.1.2.3", ThisNetwork),
            ("10.0.0.1", Private),
            ("10.255.255.255", Private),
            ("172.16.0.1", Private),
            ("172.31.255.254", Private),
            ("192.168.1.1", Private),
            ("100.64.0.1", SharedAddressSpace),
            ("100.127.255.254", SharedAddressSpace),
            ("169.254.169.254", LinkLocal),
            ("192.0.0.8", ProtocolAssignments),
            ("192.0.2.1", Documentation),
            ("198.51.100.7", Documentation),
            ("203.0.113.9", Documentation),
            ("198.18.0.1", Benchmarking),
            ("198.19.255.1", Benchmarking),
            ("224.0.0.1", Multicast),
            ("239.255.255.250", Multicast),
            ("240.0.0.1", Reserved),
            ("255.255.255.255", Broadcast),
            ("127.0.0.1", Loopback),
            ("127.1.2.3", Loopback),
        ];
        for (a, why) in cases {
            assert_eq!(STRICT.check_ip(ip(a)), Err(why), "{a}");
        }
    }

    #[test]
    fn range_edges_stay_public() {
        for a in [
            "172.15.255.255",
            "172.32.0.1",
            "100.63.255.255",
            "100.128.0.1",
            "169.253.1.1",
            "192.0.1.1",
            "192.167.1.1",
            "198.17.1.1",
            "198.20.1.1",
            "11.0.0.1",
            "1.1.1.1",
            "93.184.216.34",
            "223.255.255.254",
        ] {
            assert_eq!(STRICT.check_ip(ip(a)), Ok(()), "{a}");
        }
    }

    #[test]
    fn special_purpose_ipv6_ranges_are_refused() {
        use Refusal::*;
        let cases = [
            ("::", Unspecified),
            ("::1", Loopback),
            ("fc00::1", UniqueLocal),
            ("fd12:3456::1", UniqueLocal),
            ("fe80::1", LinkLocal),
            ("febf::1", LinkLocal),
            ("fec0::1", Reserved),
            ("ff02::1", Multicast),
            ("2001:db8::1", Documentation),
            ("3fff::1", Documentation),
            ("2001::1", ProtocolAssignments),
            ("2001:1ff::1", ProtocolAssignments),
            ("2002:0a00:0001::1", Tunnel),
            ("64:ff9b:1::1", Tunnel),
            ("100::1", Reserved),
            ("4000::1", Reserved),
        ];
        for (a, why) in cases {
            assert_eq!(STRICT.check_ip(ip(a)), Err(why), "{a}");
        }
        for a in ["2606:4700::1111", "2a00:1450:4001::1", "2001:200::1"] {
            assert_eq!(STRICT.check_ip(ip(a)), Ok(()), "{a}");
        }
    }

    #[test]
    fn ipv4_inside_ipv6_is_judged_as_ipv4() {
        use Refusal::*;
        let cases = [
            ("::ffff:127.0.0.1", Loopback),
            ("::ffff:10.1.2.3", Private),
            ("::ffff:169.254.169.254", LinkLocal),
            ("::ffff:100.64.0.1", SharedAddressSpace),
            ("::ffff:0.0.0.0", Unspecified),
            ("::127.0.0.1", Loopback),
            ("::192.168.0.1", Private),
            ("::0.0.0.2", ThisNetwork),
            ("64:ff9b::10.0.0.1", Private),
            ("64:ff9b::127.0.0.1", Loopback),
        ];
        for (a, why) in cases {
            assert_eq!(STRICT.check_ip(ip(a)), Err(why), "{a}");
        }
        assert_eq!(STRICT.check_ip(ip("::ffff:93.184.216.34")), Ok(()));
        assert_eq!(STRICT.check_ip(ip("64:ff9b::93.184.216.34")), Ok(()));
    }

    #[test]
    fn loopback_only_with_the_development_setting() {
        for a in ["127.0.0.1", "127.9.9.9", "::1", "::ffff:127.0.0.1"] {
            assert_eq!(STRICT.check_ip(ip(a)), Err(Refusal::Loopback), "{a}");
            assert_eq!(DEV.check_ip(ip(a)), Ok(()), "{a}");
        }
        // The development setting opens loopback, nothing else.
        for a in [
            "10.0.0.1",
            "192.168.0.1",
            "169.254.169.254",
            "fd00::1",
            "0.0.0.0",
        ] {
            assert!(DEV.check_ip(ip(a)).is_err(), "{a}");
        }
    }

    #[test]
    fn resolved_sets_must_pass_whole() {
        let mixed = [ip("93.184.216.34"), ip("10.0.0.1")];
        assert_eq!(
            STRICT.check_resolved(&mixed, false),
            Err((ip("10.0.0.1"), Refusal::Private))
        );
        assert_eq!(STRICT.check_resolved(&mixed[..1], false), Ok(()));
        let local = [ip("127.0.0.1"), ip("::1"), ip("::ffff:127.0.0.2")];
        assert_eq!(DEV.check_resolved(&local, true), Ok(()));
        assert!(STRICT.check_resolved(&local, true).is_err());
        assert_eq!(
            DEV.check_resolved(&[ip("93.184.216.34")], true),
            Err((ip("93.184.216.34"), Refusal::HttpNotLoopback))
        );
    }

    #[test]
    fn url_policy_https_only_unless_loopback_http_in_development() {
        assert!(STRICT.check_url("https://keys.example/jwks").is_ok());
        // Literal addresses pass the URL policy; the address policy refuses
        // them at fetch time.
        assert!(STRICT.check_url("https://127.0.0.1:8443/jwks").is_ok());
        assert_eq!(
            STRICT.check_url("http://keys.example/jwks"),
            Err(Refusal::Scheme)
        );
        assert_eq!(
            STRICT.check_url("http://127.0.0.1:9/jwks"),
            Err(Refusal::Scheme)
        );
        for u in [
            "http://127.0.0.1:9/jwks",
            "http://localhost:9/jwks",
            "http://[::1]:9/jwks",
        ] {
            assert!(DEV.check_url(u).is_ok(), "{u}");
        }
        for (u, why) in [
            ("http://keys.example/jwks", Refusal::Scheme),
            ("http://192.0.2.1/jwks", Refusal::Scheme),
            ("file:///etc/passwd", Refusal::NoHost),
            ("ftp://127.0.0.1/jwks", Refusal::Scheme),
            ("gopher://127.0.0.1/", Refusal::Scheme),
            ("not a uri", Refusal::NotAUrl),
            ("https://user:pw@keys.example/jwks", Refusal::Credentials),
        ] {
            assert_eq!(DEV.check_url(u), Err(why), "{u}");
        }
    }

    #[test]
    fn literal_hosts_are_found() {
        let u = |s: &str| Url::parse(s).unwrap();
        assert_eq!(literal_ip(&u("https://127.0.0.1/")), Some(ip("127.0.0.1")));
        assert_eq!(
            literal_ip(&u("https://[::ffff:127.0.0.1]/")),
            Some(ip("::ffff:127.0.0.1"))
        );
        // WHATWG parsing turns these spellings into the address they mean.
        assert_eq!(literal_ip(&u("https://0x7f.1/")), Some(ip("127.0.0.1")));
        assert_eq!(literal_ip(&u("https://2130706433/")), Some(ip("127.0.0.1")));
        assert_eq!(literal_ip(&u("https://keys.example/")), None);
    }
}
