//! Transparent interception's vocabulary, shared by the proxy's init step
//! (`vireo-proxy iptables`) and the injector, which reads the same values from pod
//! annotations (`vireo.dev/skip-outbound-ports`, `vireo.dev/skip-outbound-networks`): one
//! parser, so a value the injector accepts is one the init step accepts.

use std::net::IpAddr;

/// A network left alone: `10.0.0.0/8`, `fd00::/8`, `169.254.169.254/32`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl std::str::FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (ip, prefix) = s.split_once('/').unwrap_or((s, ""));
        let addr: IpAddr = ip
            .parse()
            .map_err(|_| format!("{s:?}: not an IP network like 10.0.0.0/8"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = if prefix.is_empty() {
            max
        } else {
            prefix
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{s:?}: the prefix length must be 0..={max}"))?
        };
        Ok(Cidr { addr, prefix })
    }
}

/// Destination ports left alone: one port or an inclusive range (`25`, `4567-4568`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ports {
    pub first: u16,
    pub last: u16,
}

impl std::str::FromStr for Ports {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?}: not a port (1-65535) or a range like 4567-4568");
        let port = |p: &str| p.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(bad);
        let (first, last) = match s.split_once('-') {
            Some((a, b)) => (port(a)?, port(b)?),
            None => (port(s)?, port(s)?),
        };
        if first > last {
            return Err(bad());
        }
        Ok(Ports { first, last })
    }
}

/// Parses a comma-separated list (`25,4567-4568`), naming the first item that is wrong.
pub fn parse_list<T: std::str::FromStr<Err = String>>(s: &str) -> Result<Vec<T>, String> {
    s.split(',')
        .map(str::trim)
        .filter(|i| !i.is_empty())
        .map(str::parse)
        .collect()
}

impl std::fmt::Display for Ports {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}-{}", self.first, self.last)
        }
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_ports_and_networks_say_what_is_wrong() {
        assert_eq!(
            "10.0.0.0/8".parse::<Cidr>().unwrap().prefix,
            8,
            "a network parses"
        );
        assert_eq!("10.1.2.3".parse::<Cidr>().unwrap().prefix, 32);
        assert!("10.0.0.0/33"
            .parse::<Cidr>()
            .unwrap_err()
            .contains("0..=32"));
        assert!("web/8".parse::<Cidr>().unwrap_err().contains("not an IP"));
        assert!("0".parse::<Ports>().is_err());
        assert!("9-8".parse::<Ports>().is_err());
        assert!("x".parse::<Ports>().unwrap_err().contains("range"));
        assert_eq!(
            "80-81".parse::<Ports>().unwrap(),
            Ports {
                first: 80,
                last: 81
            }
        );
    }

    #[test]
    fn lists_parse_and_print_back() {
        let ports: Vec<Ports> = parse_list("25, 4567-4568,").unwrap();
        let text: Vec<String> = ports.iter().map(ToString::to_string).collect();
        assert_eq!(text, ["25", "4567-4568"]);
        assert!(parse_list::<Ports>("25,smtp")
            .unwrap_err()
            .contains("\"smtp\""));
        let nets: Vec<Cidr> = parse_list("10.0.0.0/8,fd00::/8").unwrap();
        assert_eq!(nets[1].to_string(), "fd00::/8");
    }
}
