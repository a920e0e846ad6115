//! Which address a request came from when deputy sits behind proxies.
//!
//! The per-address limits, the login throttle, the failure budget and the
//! audit trail key on the client's address. Behind a load balancer the TCP
//! peer is the balancer, so every client would share one budget; but
//! `X-Forwarded-For` is written by whoever sends the request, so it is
//! believed only as far as the proxies deputy was told to trust
//! (`trusted_proxies`).
//!
//! The walk: start at the peer. While the current hop is a trusted proxy,
//! step to the entry it appended to `X-Forwarded-For` (the right-most one not
//! yet looked at). The first hop that is not a trusted proxy is the client.
//! Entries to the left of it were written by the client itself and are never
//! read, so a client cannot spoof its way past the budget. An entry that is
//! not an address stops the walk at the last good hop (a trusted proxy: the
//! request is then counted against that proxy, not against a name the sender
//! chose); so does a header that is not text. No header, or only trusted
//! hops in it, also ends at the last good hop.
//!
//! Pure: no HTTP types (`http::cookies::address` reads the headers).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// An address block: an address and how many of its leading bits count.
/// Written `10.0.0.0/8`, `fd00::/8`, or a bare address (all bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// The block holds `ip`. An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`,
    /// what a dual-stack listener reports for IPv4 peers) is its IPv4 address.
    pub fn contains(&self, ip: IpAddr) -> bool {
        masked(ip.to_canonical(), self.prefix) == self.network
    }
}

/// `ip` with every bit past the first `prefix` cleared (`prefix` is at most
/// the address's width; a wider one keeps every bit).
fn masked(ip: IpAddr, prefix: u8) -> IpAddr {
    let clear = |width: u32| width.saturating_sub(u32::from(prefix));
    match ip {
        IpAddr::V4(v4) => {
            let mask = u32::MAX.checked_shl(clear(32)).unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(u32::from(v4) & mask))
        }
        IpAddr::V6(v6) => {
            let mask = u128::MAX.checked_shl(clear(128)).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask))
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl FromStr for Cidr {
    type Err = String;

    /// Strict: the address as `std` parses it, a prefix of at most 32 (IPv4)
    /// or 128 (IPv6) bits, and no bits set past the prefix (`10.0.0.1/8` is
    /// most likely a typo, and silently widening it would trust more than
    /// was written).
    fn from_str(s: &str) -> Result<Cidr, String> {
        let s = s.trim();
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let network: IpAddr = addr
            .parse()
            .map_err(|_not_an_address| format!("`{s}` is not an IP address or CIDR block"))?;
        // An IPv4-mapped IPv6 block is the IPv4 block it maps.
        let (network, mapped_bits) = match network {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => (IpAddr::V4(v4), 96),
                None => (network, 0),
            },
            v4 => (v4, 0),
        };
        let max: u8 = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => prefix_length(p)
                .and_then(|p| p.checked_sub(mapped_bits))
                .filter(|p| *p <= max)
                .ok_or_else(|| {
                    format!(
                        "`{s}` has a prefix length that is not {mapped_bits} to {}",
                        u16::from(max) + u16::from(mapped_bits)
                    )
                })?,
        };
        let base = masked(network, prefix);
        if base != network {
            return Err(format!(
                "`{s}` has bits set past its prefix (the block is {base}/{prefix})"
            ));
        }
        Ok(Cidr { network, prefix })
    }
}

/// A prefix length written as plain decimal digits (not `+8`, `08` or `8 `).
fn prefix_length(p: &str) -> Option<u8> {
    let plain =
        !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) && (p == "0" || !p.starts_with('0'));
    plain.then(|| p.parse().ok()).flatten()
}

/// The `trusted_proxies` setting: the peers whose `X-Forwarded-For` entries
/// deputy believes. Empty (the default): nobody's; the peer is the client.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<Cidr>);

impl TrustedProxies {
    /// Parse every entry; the first that is no address or block is the error.
    pub fn parse<'a>(entries: impl IntoIterator<Item = &'a str>) -> Result<Self, String> {
        entries
            .into_iter()
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .map(Cidr::from_str)
            .collect::<Result<Vec<_>, _>>()
            .map(TrustedProxies)
    }

    /// Nobody is trusted: the peer is always the client.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn trusts(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|c| c.contains(ip))
    }

    /// The client's address: `peer`, unless it is a trusted proxy; then the
    /// right-most `X-Forwarded-For` entry that is not (see the module
    /// documentation). `forwarded` is the header's values in the order they
    /// came, `None` for a value that is not text.
    pub fn client<'a, I>(&self, peer: IpAddr, forwarded: I) -> IpAddr
    where
        I: IntoIterator<Item = Option<&'a str>>,
        I::IntoIter: DoubleEndedIterator,
    {
        if !self.trusts(peer) {
            return peer;
        }
        let mut hop = peer;
        for value in forwarded.into_iter().rev() {
            let Some(value) = value else {
                return hop;
            };
            for entry in value.rsplit(',') {
                let Some(ip) = entry_address(entry) else {
                    return hop;
                };
                hop = ip;
                if !self.trusts(hop) {
                    return hop;
                }
            }
        }
        hop
    }
}

/// `Debug` as the setting is written in text (`"127.0.0.1/32, 10.0.0.0/8"`),
/// so `Settings`' debug output reads back as the same settings.
impl fmt::Debug for TrustedProxies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.to_string(), f)
    }
}

impl fmt::Display for TrustedProxies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, c) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{c}")?;
        }
        Ok(())
    }
}

/// One `X-Forwarded-For` entry as an address: `192.0.2.1`, `2001:db8::1`,
/// and the forms some proxies write with a port, `192.0.2.1:4711` and
/// `[2001:db8::1]:4711` (or bracketed without one). Anything else (`unknown`,
/// an obfuscated identifier, an empty entry) is `None`.
fn entry_address(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    if let Ok(ip) = entry.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Some(rest) = entry.strip_prefix('[') {
        let (v6, after) = rest.split_once(']')?;
        let port_ok = after.is_empty()
            || after
                .strip_prefix(':')
                .is_some_and(|p| p.parse::<u16>().is_ok());
        if !port_ok {
            return None;
        }
        return v6.parse::<Ipv6Addr>().ok().map(IpAddr::V6);
    }
    let (v4, port) = entry.split_once(':')?;
    port.parse::<u16>().ok()?;
    v4.parse::<Ipv4Addr>().ok().map(IpAddr::V4)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn trusted(list: &str) -> TrustedProxies {
        TrustedProxies::parse(list.split(',')).unwrap()
    }

    /// The client for a peer and `X-Forwarded-For` header lines.
    fn client(list: &str, peer: &str, xff: &[&str]) -> String {
        trusted(list)
            .client(ip(peer), xff.iter().map(|v| Some(*v)))
            .to_string()
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_forwards() {
        assert_eq!(client("", "203.0.113.7", &["198.51.100.1"]), "203.0.113.7");
        assert_eq!(
            client("10.0.0.0/8", "203.0.113.7", &["198.51.100.1"]),
            "203.0.113.7"
        );
        // Even when the forwarded entry names a trusted proxy.
        assert_eq!(
            client("10.0.0.0/8", "203.0.113.7", &["10.1.1.1"]),
            "203.0.113.7"
        );
    }

    #[test]
    fn a_trusted_peer_gives_the_right_most_untrusted_entry() {
        assert_eq!(
            client("127.0.0.1", "127.0.0.1", &["198.51.100.1"]),
            "198.51.100.1"
        );
        assert_eq!(
            client("127.0.0.1", "127.0.0.1", &["192.0.2.9, 198.51.100.1"]),
            "198.51.100.1"
        );
    }

    #[test]
    fn a_chain_of_trusted_proxies_is_walked_through() {
        // client -> 10.0.0.5 (edge) -> 10.0.0.9 (internal) -> 127.0.0.1 -> deputy
        assert_eq!(
            client(
                "127.0.0.1, 10.0.0.0/8",
                "127.0.0.1",
                &["198.51.100.1, 10.0.0.5, 10.0.0.9"]
            ),
            "198.51.100.1"
        );
        // The same chain written as several header lines.
        assert_eq!(
            client(
                "127.0.0.1, 10.0.0.0/8",
                "127.0.0.1",
                &["198.51.100.1", "10.0.0.5", "10.0.0.9"]
            ),
            "198.51.100.1"
        );
        // Only proxies in the header: the left-most proxy is the last good hop.
        assert_eq!(
            client(
                "127.0.0.1, 10.0.0.0/8",
                "127.0.0.1",
                &["10.0.0.5, 10.0.0.9"]
            ),
            "10.0.0.5"
        );
        // A trusted peer that forwarded nothing.
        assert_eq!(client("127.0.0.1", "127.0.0.1", &[]), "127.0.0.1");
    }

    #[test]
    fn spoofed_left_most_entries_are_never_read() {
        // The client sent "X-Forwarded-For: 10.0.0.1, 192.0.2.200"; the proxy
        // appended the address it saw.
        for spoof in ["10.0.0.1, 192.0.2.200", "127.0.0.1", "garbage, , x"] {
            let header = format!("{spoof}, 203.0.113.50");
            assert_eq!(
                client("127.0.0.1, 10.0.0.0/8", "127.0.0.1", &[&header]),
                "203.0.113.50",
                "{spoof}"
            );
        }
    }

    #[test]
    fn a_malformed_entry_stops_at_the_last_good_hop() {
        let list = "127.0.0.1, 10.0.0.0/8";
        assert_eq!(client(list, "127.0.0.1", &["unknown"]), "127.0.0.1");
        assert_eq!(client(list, "127.0.0.1", &[""]), "127.0.0.1");
        assert_eq!(
            client(list, "127.0.0.1", &["198.51.100.1, , 10.0.0.5"]),
            "10.0.0.5"
        );
        assert_eq!(
            client(list, "127.0.0.1", &["198.51.100.1, 10.0.0.5, 999.1.1.1"]),
            "127.0.0.1"
        );
        assert_eq!(
            client(list, "127.0.0.1", &["198.51.100.1, _hidden"]),
            "127.0.0.1"
        );
        // A header value that is not text stops the walk where it stands.
        let t = trusted(list);
        let lines = [Some("198.51.100.1"), None, Some("10.0.0.5")];
        assert_eq!(t.client(ip("127.0.0.1"), lines).to_string(), "10.0.0.5");
    }

    #[test]
    fn ports_and_brackets_in_entries() {
        let list = "127.0.0.1";
        assert_eq!(
            client(list, "127.0.0.1", &["198.51.100.1:4711"]),
            "198.51.100.1"
        );
        assert_eq!(
            client(list, "127.0.0.1", &["[2001:db8::1]:4711"]),
            "2001:db8::1"
        );
        assert_eq!(client(list, "127.0.0.1", &["[2001:db8::1]"]), "2001:db8::1");
        for bad in [
            "198.51.100.1:port",
            "[2001:db8::1",
            "[198.51.100.1]x",
            "a:1",
        ] {
            assert_eq!(client(list, "127.0.0.1", &[bad]), "127.0.0.1", "{bad}");
        }
    }

    #[test]
    fn ipv6_proxies_and_clients() {
        let list = "::1, fd00::/8";
        assert_eq!(
            client(list, "::1", &["2001:db8::7, fd12::1"]),
            "2001:db8::7"
        );
        assert_eq!(client(list, "2001:db8::9", &["2001:db8::7"]), "2001:db8::9");
        // An IPv4 peer seen through a dual-stack listener.
        assert_eq!(
            client("127.0.0.1", "::ffff:127.0.0.1", &["198.51.100.1"]),
            "198.51.100.1"
        );
        assert_eq!(
            client("10.0.0.0/8", "::ffff:10.2.3.4", &["2001:db8::5"]),
            "2001:db8::5"
        );
    }

    #[test]
    fn cidr_matching() {
        let c: Cidr = "10.0.0.0/8".parse().unwrap();
        assert!(c.contains(ip("10.0.0.0")));
        assert!(c.contains(ip("10.255.255.255")));
        assert!(!c.contains(ip("11.0.0.0")));
        assert!(!c.contains(ip("::ffff:11.0.0.1")));
        assert!(c.contains(ip("::ffff:10.0.0.1")));
        assert!(!c.contains(ip("::a00:1")), "IPv4-compatible is not IPv4");
        let c: Cidr = "192.168.1.128/25".parse().unwrap();
        assert!(c.contains(ip("192.168.1.200")));
        assert!(!c.contains(ip("192.168.1.127")));
        let any4: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(any4.contains(ip("203.0.113.1")));
        assert!(!any4.contains(ip("2001:db8::1")));
        let any6: Cidr = "::/0".parse().unwrap();
        assert!(any6.contains(ip("2001:db8::1")));
        assert!(!any6.contains(ip("203.0.113.1")));
        let c: Cidr = "2001:db8:abcd::/48".parse().unwrap();
        assert!(c.contains(ip("2001:db8:abcd:ffff::1")));
        assert!(!c.contains(ip("2001:db8:abce::1")));
        let host: Cidr = "127.0.0.1".parse().unwrap();
        assert_eq!(host.to_string(), "127.0.0.1/32");
        assert!(host.contains(ip("127.0.0.1")));
        assert!(!host.contains(ip("127.0.0.2")));
        let mapped: Cidr = "::ffff:10.0.0.0/104".parse().unwrap();
        assert_eq!(mapped.to_string(), "10.0.0.0/8");
    }

    #[test]
    fn bad_blocks_are_refused_with_their_text() {
        for (text, message) in [
            (
                "10.0.0.0/33",
                "`10.0.0.0/33` has a prefix length that is not 0 to 32",
            ),
            (
                "::/129",
                "`::/129` has a prefix length that is not 0 to 128",
            ),
            (
                "10.0.0.0/",
                "`10.0.0.0/` has a prefix length that is not 0 to 32",
            ),
            (
                "10.0.0.0/+8",
                "`10.0.0.0/+8` has a prefix length that is not 0 to 32",
            ),
            (
                "10.0.0.0/08",
                "`10.0.0.0/08` has a prefix length that is not 0 to 32",
            ),
            (
                "10.0.0.0/8/8",
                "`10.0.0.0/8/8` has a prefix length that is not 0 to 32",
            ),
            (
                "::ffff:10.0.0.0/64",
                "`::ffff:10.0.0.0/64` has a prefix length that is not 96 to 128",
            ),
            ("10.0.0", "`10.0.0` is not an IP address or CIDR block"),
            (
                "localhost",
                "`localhost` is not an IP address or CIDR block",
            ),
            ("[::1]", "`[::1]` is not an IP address or CIDR block"),
            (
                "10.0.0.1/8",
                "`10.0.0.1/8` has bits set past its prefix (the block is 10.0.0.0/8)",
            ),
            (
                "fd00::1/8",
                "`fd00::1/8` has bits set past its prefix (the block is fd00::/8)",
            ),
        ] {
            assert_eq!(Cidr::from_str(text).unwrap_err(), message, "{text}");
        }
    }

    #[test]
    fn the_list_reads_and_prints_as_written() {
        let t = TrustedProxies::parse([" 127.0.0.1", "10.0.0.0/8 ", "", "::1"]).unwrap();
        assert_eq!(t.to_string(), "127.0.0.1/32, 10.0.0.0/8, ::1/128");
        assert_eq!(format!("{t:?}"), "\"127.0.0.1/32, 10.0.0.0/8, ::1/128\"");
        assert_eq!(TrustedProxies::parse(t.to_string().split(',')).unwrap(), t);
        assert!(TrustedProxies::parse([""]).unwrap().is_empty());
        assert_eq!(format!("{:?}", TrustedProxies::default()), "\"\"");
    }
}
