//! The address a DMSG server advertises when it is bound to an unspecified address
//! (`0.0.0.0:PORT`, `[::]:PORT`) and given no public address: zero-configuration LAN servers.
//!
//! The rule ([`choose`], documented in `docs/dmsg-operations.md`):
//!
//! 1. Candidates are the addresses of interfaces that are up (or report no state), that are
//!    not loopback, not link-local and of the bound family (`0.0.0.0` → IPv4 only; `::` →
//!    IPv4 and IPv6).
//! 2. They are ranked by, in order: being on the interface that carries the IPv4 default
//!    route (from `/proc/net/route`); IPv4 before IPv6; private-network addresses (RFC 1918,
//!    RFC 6598 shared space, IPv6 unique-local) before global ones; then interface name and
//!    address, so the choice is stable across restarts.
//! 3. With no candidate the loopback address of the family is advertised (and the caller
//!    warns: only this host can reach it).
//!
//! The ranking is pure; [`advertised`] reads the host's interfaces and routes.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// One interface address, as the ranking sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IfAddress {
    /// Interface name (`eth0`).
    pub iface: String,
    /// The address.
    pub ip: IpAddr,
    /// The interface is up (or reports no operational state).
    pub up: bool,
}

/// Where the advertised address came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The bound address itself (it was specified).
    Bound,
    /// An interface address chosen by the rule above.
    Interface,
    /// No interface qualified: the loopback address.
    Loopback,
}

/// Whether `ip` is in a private-network range: RFC 1918 (10/8, 172.16/12, 192.168/16), the
/// RFC 6598 shared space (100.64/10, carrier-grade NAT and overlay VPNs), IPv6 unique-local
/// (fc00::/7).
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_private() || (o[0] == 100 && (o[1] & 0xc0) == 64)
        }
        IpAddr::V6(v6) => (v6.segments()[0] & 0xfe00) == 0xfc00,
    }
}

fn is_link_local(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) == 0xfe80,
    }
}

/// Picks the address to advertise for a listener bound to the unspecified address `bound`
/// (its family decides which addresses qualify) among `addrs`; `default_iface` is the
/// interface of the IPv4 default route, if any. `None` when no address qualifies.
pub fn choose(addrs: &[IfAddress], default_iface: Option<&str>, bound: IpAddr) -> Option<IpAddr> {
    addrs
        .iter()
        .filter(|a| a.up && !a.ip.is_loopback() && !is_link_local(a.ip))
        .filter(|a| !a.ip.is_unspecified() && !a.ip.is_multicast())
        .filter(|a| bound.is_ipv6() || a.ip.is_ipv4())
        .min_by_key(|a| {
            (
                Some(a.iface.as_str()) != default_iface,
                a.ip.is_ipv6(),
                !is_private(a.ip),
                a.iface.clone(),
                a.ip,
            )
        })
        .map(|a| a.ip)
}

/// The interface of the IPv4 default route in `/proc/net/route` text (the first route whose
/// destination and mask are 0).
pub fn default_route_iface(proc_net_route: &str) -> Option<String> {
    proc_net_route.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (iface, dest, mask) = (f.first()?, f.get(1)?, f.get(7)?);
        (*dest == "00000000" && *mask == "00000000").then(|| (*iface).to_string())
    })
}

/// The host's interface addresses (empty when they cannot be read).
pub fn host_addresses() -> Vec<IfAddress> {
    match if_addrs::get_if_addrs() {
        Ok(list) => list
            .into_iter()
            .map(|i| IfAddress {
                up: matches!(
                    i.oper_status,
                    if_addrs::IfOperStatus::Up | if_addrs::IfOperStatus::Unknown
                ),
                ip: i.ip(),
                iface: i.name,
            })
            .collect(),
        Err(e) => {
            tracing::warn!(error = %e, "reading the network interfaces failed");
            Vec::new()
        }
    }
}

/// The address to advertise for a listener bound to `bound`: `bound` itself unless its IP is
/// unspecified, else the host address [`choose`] picks (same port), else loopback.
pub fn advertised(bound: SocketAddr) -> (SocketAddr, Source) {
    if !bound.ip().is_unspecified() {
        return (bound, Source::Bound);
    }
    let route = std::fs::read_to_string("/proc/net/route").unwrap_or_default();
    let iface = default_route_iface(&route);
    match choose(&host_addresses(), iface.as_deref(), bound.ip()) {
        Some(ip) => (SocketAddr::new(ip, bound.port()), Source::Interface),
        None => {
            let lo = if bound.is_ipv4() {
                IpAddr::V4(Ipv4Addr::LOCALHOST)
            } else {
                IpAddr::V6(Ipv6Addr::LOCALHOST)
            };
            (SocketAddr::new(lo, bound.port()), Source::Loopback)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn a(iface: &str, ip: &str) -> IfAddress {
        IfAddress {
            iface: iface.into(),
            ip: ip.parse().unwrap(),
            up: true,
        }
    }

    const V4_ANY: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
    const V6_ANY: IpAddr = IpAddr::V6(Ipv6Addr::UNSPECIFIED);

    #[test]
    fn private_ranges() {
        for ip in [
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.1",
            "192.168.1.5",
            "100.64.0.1",
        ] {
            assert!(is_private(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "172.32.0.1",
            "8.8.8.8",
            "100.128.0.1",
            "2001:db8::1",
            "fe80::1",
        ] {
            assert!(!is_private(ip.parse().unwrap()), "{ip}");
        }
        assert!(is_private("fd12::1".parse().unwrap()));
    }

    #[test]
    fn the_default_route_interface_wins_even_when_public() {
        // A VPS: public eth0 with the default route, an idle-looking docker bridge.
        let addrs = [a("docker0", "172.17.0.1"), a("eth0", "203.0.113.9")];
        let got = choose(&addrs, Some("eth0"), V4_ANY);
        assert_eq!(got, Some("203.0.113.9".parse().unwrap()));
    }

    #[test]
    fn without_a_default_route_a_private_address_is_chosen() {
        // A LAN box (or a test namespace): no default route.
        let addrs = [
            a("lo", "127.0.0.1"),
            a("wg0", "198.51.100.4"),
            a("veth0", "10.77.0.2"),
            a("veth0", "fe80::1"),
        ];
        assert_eq!(
            choose(&addrs, None, V4_ANY),
            Some("10.77.0.2".parse().unwrap())
        );
    }

    #[test]
    fn family_and_state_filter() {
        let mut down = a("eth1", "192.168.0.2");
        down.up = false;
        let addrs = [down, a("eth0", "fd00::5")];
        assert_eq!(choose(&addrs, None, V4_ANY), None);
        assert_eq!(
            choose(&addrs, None, V6_ANY),
            Some("fd00::5".parse().unwrap())
        );
        let both = [a("eth0", "fd00::5"), a("eth0", "192.168.0.9")];
        assert_eq!(
            choose(&both, None, V6_ANY),
            Some("192.168.0.9".parse().unwrap()),
            "IPv4 first on a dual-stack listener"
        );
    }

    #[test]
    fn proc_net_route_default() {
        let text = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
                    eth0\t0000A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
                    eth0\t00000000\t0100A8C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n";
        assert_eq!(default_route_iface(text).as_deref(), Some("eth0"));
        assert_eq!(default_route_iface("Iface\tDestination\n"), None);
        assert_eq!(default_route_iface(""), None);
    }

    #[test]
    fn a_specified_bound_address_is_kept() {
        let b: SocketAddr = "127.0.0.1:8081".parse().unwrap();
        assert_eq!(advertised(b), (b, Source::Bound));
        let (any, src) = advertised("0.0.0.0:4242".parse().unwrap());
        assert_eq!(any.port(), 4242);
        assert!(!any.ip().is_unspecified(), "{src:?}");
    }

    proptest! {
        /// The choice is one of the qualifying inputs, independent of their order.
        #[test]
        fn choice_is_stable(
            raw in proptest::collection::vec((0u8..4, any::<[u8; 4]>(), any::<bool>()), 0..12),
            v6 in any::<bool>(),
        ) {
            let addrs: Vec<IfAddress> = raw.iter().map(|(i, o, up)| IfAddress {
                iface: format!("if{i}"),
                ip: IpAddr::V4(Ipv4Addr::from(*o)),
                up: *up,
            }).collect();
            let bound = if v6 { V6_ANY } else { V4_ANY };
            let got = choose(&addrs, Some("if1"), bound);
            let mut rev = addrs.clone();
            rev.reverse();
            prop_assert_eq!(got, choose(&rev, Some("if1"), bound));
            if let Some(ip) = got {
                prop_assert!(addrs.iter().any(|a| a.ip == ip && a.up));
                prop_assert!(!ip.is_loopback());
            }
        }

        /// Route text never makes the parser panic.
        #[test]
        fn route_parser_total(text in "[a-z0-9\t\n ]{0,400}") {
            if let Some(iface) = default_route_iface(&text) {
                prop_assert!(text.lines().skip(1).any(|l| l.split_whitespace().next() == Some(iface.as_str())));
            }
        }
    }
}
