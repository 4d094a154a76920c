//! The /etc/hosts and /etc/resolv.conf a container gets, as BuildKit writes them.

use crate::spec::Network;

/// BuildKit's hostname for build containers.
pub const DEFAULT_HOSTNAME: &str = "buildkitsandbox";

/// Public resolvers used when the host has none that work from inside the container.
const FALLBACK_NAMESERVERS: [&str; 2] = ["8.8.8.8", "8.8.4.4"];

/// /etc/hosts: tab-separated, exactly as BuildKit's `initHostsFile`, then the extra hosts
/// (`add-hosts`) as `IP<tab>host` lines.
pub fn hosts_file(hostname: &str, extra: &[(String, String)]) -> String {
    let hostname = if hostname.is_empty() {
        DEFAULT_HOSTNAME
    } else {
        hostname
    };
    let mut out =
        format!("127.0.0.1\tlocalhost {hostname}\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    for (host, ip) in extra {
        out.push_str(&format!("{ip}\t{host}\n"));
    }
    out
}

/// /etc/resolv.conf from the host's. With host networking it is the host's as is (a local
/// resolver such as 127.0.0.53 is reachable); otherwise loopback nameservers are dropped
/// and, if none remain, public ones are added, like BuildKit's "legacy network" transform.
pub fn resolv_conf(host: &str, network: Network) -> String {
    let is_nameserver = |l: &str| l.split_whitespace().next() == Some("nameserver");
    let has_nameserver = host.lines().any(is_nameserver);
    if network == Network::Host && has_nameserver {
        let mut out = host.to_string();
        if !out.ends_with('\n') {
            out.push('\n');
        }
        return out;
    }
    let mut out = String::new();
    let mut kept = 0;
    for line in host.lines() {
        if is_nameserver(line) {
            let addr = line.split_whitespace().nth(1).unwrap_or("");
            if is_loopback(addr) {
                continue;
            }
            kept += 1;
        }
        out.push_str(line);
        out.push('\n');
    }
    if kept == 0 {
        for ns in FALLBACK_NAMESERVERS {
            out.push_str(&format!("nameserver {ns}\n"));
        }
    }
    out
}

fn is_loopback(addr: &str) -> bool {
    addr.parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_matches_buildkit() {
        assert_eq!(
            hosts_file("", &[]),
            "127.0.0.1\tlocalhost buildkitsandbox\n::1\tlocalhost ip6-localhost ip6-loopback\n"
        );
        assert!(hosts_file("box", &[]).starts_with("127.0.0.1\tlocalhost box\n"));
        assert!(hosts_file("", &[("db".into(), "10.0.0.5".into())]).ends_with("\n10.0.0.5\tdb\n"));
    }

    #[test]
    fn resolv_conf_per_network() {
        let host = "search example.org\nnameserver 127.0.0.53\noptions edns0";
        assert_eq!(
            resolv_conf(host, Network::Host),
            "search example.org\nnameserver 127.0.0.53\noptions edns0\n"
        );
        assert_eq!(
            resolv_conf(host, Network::None),
            "search example.org\noptions edns0\nnameserver 8.8.8.8\nnameserver 8.8.4.4\n"
        );
        let real = "nameserver 10.0.0.1\n";
        assert_eq!(resolv_conf(real, Network::None), real);
        assert_eq!(
            resolv_conf("", Network::Host),
            "nameserver 8.8.8.8\nnameserver 8.8.4.4\n"
        );
    }
}
