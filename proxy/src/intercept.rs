//! Transparent interception: the pod's outbound TCP is redirected to the proxy by iptables,
//! and the proxy learns where each connection was going from the kernel.
//!
//! Two halves, as Linkerd splits them between `proxy-init` and the proxy:
//! - [`Interception`] is the init step (`vireo-proxy iptables`, an init container with
//!   `NET_ADMIN`): a NAT chain `VIREO_OUTPUT` on `OUTPUT` that redirects TCP to the proxy's
//!   port, except the proxy's own uid (its calls to backends must leave, not loop), loopback
//!   (the app calling the proxy or itself) and the ports and networks an operator skips.
//!   [`Interception::restore_input`] is pure — the rules as `iptables-restore` input, given
//!   what `iptables-save` shows — so the rules are unit-tested and re-running the step changes
//!   nothing; [`apply`] is the I/O edge.
//! - [`original_dst`] is the proxy's side: `SO_ORIGINAL_DST` of an accepted connection, or
//!   `None` when it was not redirected (the app called the proxy itself: explicit mode).

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::process::{Command, Stdio};

pub use vireo_types::intercept::{Cidr, Ports};

/// The chain the rules live in; the only one this step writes, besides one jump on `OUTPUT`.
pub const CHAIN: &str = "VIREO_OUTPUT";

/// The jump from `OUTPUT` into [`CHAIN`], as `iptables-save` prints it.
const JUMP: &str = "-A OUTPUT -p tcp -j VIREO_OUTPUT";

/// Which address family's tables the rules are for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    fn restore(self) -> &'static str {
        match self {
            Family::V4 => "iptables-restore",
            Family::V6 => "ip6tables-restore",
        }
    }
    fn save(self) -> &'static str {
        match self {
            Family::V4 => "iptables-save",
            Family::V6 => "ip6tables-save",
        }
    }
}

/// What the init step installs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interception {
    /// The uid the proxy runs as: its own connections are not redirected.
    pub proxy_uid: u32,
    /// The proxy's data port (`listen:` with `transparent: true`).
    pub proxy_port: u16,
    pub skip_ports: Vec<Ports>,
    pub skip_networks: Vec<Cidr>,
}

impl Interception {
    /// The `iptables-restore --noflush` input for `family`, given the nat table as
    /// `iptables-save -t nat` prints it now. Declaring the chain empties it, so the chain's
    /// rules are always exactly these; the jump from `OUTPUT` is added only if it is missing.
    /// Running the step twice therefore leaves the same rules as running it once.
    pub fn restore_input(&self, family: Family, saved_nat: &str) -> String {
        let mut out = String::from("*nat\n");
        let _ = writeln!(out, ":{CHAIN} - [0:0]");
        let _ = writeln!(
            out,
            "-A {CHAIN} -m owner --uid-owner {} -j RETURN",
            self.proxy_uid
        );
        let _ = writeln!(out, "-A {CHAIN} -o lo -j RETURN");
        for p in &self.skip_ports {
            let ports = if p.first == p.last {
                p.first.to_string()
            } else {
                format!("{}:{}", p.first, p.last)
            };
            let _ = writeln!(out, "-A {CHAIN} -p tcp --dport {ports} -j RETURN");
        }
        for n in &self.skip_networks {
            if n.addr.is_ipv4() == (family == Family::V4) {
                let _ = writeln!(out, "-A {CHAIN} -d {}/{} -j RETURN", n.addr, n.prefix);
            }
        }
        let _ = writeln!(
            out,
            "-A {CHAIN} -p tcp -j REDIRECT --to-ports {}",
            self.proxy_port
        );
        if !saved_nat.lines().any(|l| l.trim() == JUMP) {
            out.push_str(JUMP);
            out.push('\n');
        }
        out.push_str("COMMIT\n");
        out
    }
}

/// Why the rules could not be installed.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(
        "cannot run {command}: {source} (is the iptables package installed? the image needs it)"
    )]
    Spawn {
        command: String,
        source: std::io::Error,
    },
    #[error("{command} failed ({status}): {stderr} (the init step needs the NET_ADMIN and NET_RAW capabilities)")]
    Failed {
        command: String,
        status: std::process::ExitStatus,
        stderr: String,
    },
}

/// Installs the rules for `family` and returns what it fed `iptables-restore`. `variant` picks
/// the binaries' variant: `""` for `iptables-restore`, `"-legacy"` or `"-nft"` for theirs.
pub fn apply(rules: &Interception, family: Family, variant: &str) -> Result<String, ApplyError> {
    let name = |base: &str| match base.split_once('-') {
        Some((tool, verb)) if !variant.is_empty() => format!("{tool}{variant}-{verb}"),
        _ => base.to_string(),
    };
    let save = name(family.save());
    let saved = run(Command::new(&save).args(["-t", "nat"]), &save, None)?;
    let input = rules.restore_input(family, &saved);
    let restore = name(family.restore());
    run(
        Command::new(&restore).args(["--noflush", "--wait", "5"]),
        &restore,
        Some(&input),
    )?;
    Ok(input)
}

fn run(cmd: &mut Command, name: &str, stdin: Option<&str>) -> Result<String, ApplyError> {
    use std::io::Write;
    let spawn = |source| ApplyError::Spawn {
        command: name.to_string(),
        source,
    };
    let mut child = cmd
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(spawn)?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes()).map_err(spawn)?;
    }
    let out = child.wait_with_output().map_err(spawn)?;
    if !out.status.success() {
        return Err(ApplyError::Failed {
            command: name.to_string(),
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Where an accepted connection was going before iptables redirected it to the proxy; `None`
/// if it was not redirected (it was addressed to the proxy itself) or the kernel does not say
/// (no conntrack entry). One `getsockopt` per connection, never per request.
pub fn original_dst(stream: &tokio::net::TcpStream) -> Option<SocketAddr> {
    let local = stream.local_addr().ok()?;
    let sock = socket2::SockRef::from(stream);
    let dst = if local.is_ipv4() {
        sock.original_dst_v4()
    } else {
        sock.original_dst_v6()
    };
    let dst = dst.ok()?.as_socket()?;
    // A connection made to the proxy's own address has itself as its "original" destination:
    // relaying it there would loop.
    (dst != local).then_some(dst)
}

/// TEST-NET-1 and the IPv6 documentation prefix (RFC 5737, RFC 3849): addresses no network
/// routes to anyone.
const PROBES: [SocketAddr; 2] = [
    SocketAddr::new(
        std::net::IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1)),
        1,
    ),
    SocketAddr::new(
        std::net::IpAddr::V6(std::net::Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)),
        1,
    ),
];

/// How long the start-up probe waits: a redirect to the proxy's own listener completes in
/// microseconds; a SYN into a pod network that drops it is what the wait is for.
const PROBE_WAIT: std::time::Duration = std::time::Duration::from_millis(200);

/// How long to look for the probe's connection on the proxy's own listeners once it succeeded.
const PROBE_FIND: std::time::Duration = std::time::Duration::from_millis(100);

/// What the start-up probe found.
#[derive(Debug, Default)]
pub struct Probe {
    /// This process's own connection landed on its own listener: its traffic is redirected to
    /// itself, and every backend call would loop.
    pub looped: bool,
    /// A probe connection succeeded elsewhere: something else (another mesh's redirect, an
    /// egress proxy) takes this pod's traffic. Worth a warning, not a refusal.
    pub elsewhere: bool,
    /// Connections the app made that were accepted while looking: to be served, not lost.
    pub early: Vec<std::net::TcpStream>,
}

/// Whether this process's own outbound connections are being redirected to the proxy: called
/// at start-up in transparent mode, once the data port listens (`listeners`, non-blocking),
/// before any worker accepts. The rules exempt the proxy by uid; a proxy running as another uid
/// (a wrong `runAsUser`, an operator running it by hand) would send each backend call back to
/// itself, and every relay would loop until file descriptors ran out. A connection to a probe
/// address that succeeds was redirected; it is this proxy's loop only if it arrives on one of
/// `listeners` from the probe's own address.
pub fn probe(listeners: &[&std::net::TcpListener]) -> Probe {
    use socket2::{Protocol, Socket, Type};
    let mut found = Probe::default();
    let v6 = listeners
        .iter()
        .any(|l| l.local_addr().is_ok_and(|a| a.is_ipv6()));
    for target in PROBES.iter().filter(|t| t.is_ipv4() || v6) {
        let Ok(socket) = Socket::new(
            socket2::Domain::for_address(*target),
            Type::STREAM,
            Some(Protocol::TCP),
        ) else {
            continue;
        };
        if socket
            .connect_timeout(&(*target).into(), PROBE_WAIT)
            .is_err()
        {
            continue;
        }
        let Some(local) = socket.local_addr().ok().and_then(|a| a.as_socket()) else {
            continue;
        };
        let deadline = std::time::Instant::now() + PROBE_FIND;
        // Bounded: PROBE_FIND, in 1 ms rounds over every listener's backlog.
        while std::time::Instant::now() < deadline && !found.looped {
            for listener in listeners {
                while let Ok((stream, peer)) = listener.accept() {
                    if peer == local {
                        found.looped = true;
                    } else {
                        found.early.push(stream);
                    }
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        if found.looped {
            return found;
        }
        found.elsewhere = true;
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_probe_finds_no_loop_without_interception() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let found = probe(&[&listener]);
        // Whatever this machine's network does with TEST-NET-1, it does not bring the probe
        // back to this listener; nothing is lost from its backlog either.
        assert!(!found.looped);
        assert!(found.early.is_empty());
    }

    fn rules() -> Interception {
        Interception {
            proxy_uid: 2102,
            proxy_port: 4140,
            skip_ports: vec!["25".parse().unwrap(), "4567-4568".parse().unwrap()],
            skip_networks: vec![
                "169.254.169.254/32".parse().unwrap(),
                "fd00::/8".parse().unwrap(),
            ],
        }
    }

    #[test]
    fn the_chain_redirects_everything_but_the_proxy_loopback_and_what_is_skipped() {
        let empty = "*nat\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n";
        assert_eq!(
            rules().restore_input(Family::V4, empty),
            "*nat\n\
             :VIREO_OUTPUT - [0:0]\n\
             -A VIREO_OUTPUT -m owner --uid-owner 2102 -j RETURN\n\
             -A VIREO_OUTPUT -o lo -j RETURN\n\
             -A VIREO_OUTPUT -p tcp --dport 25 -j RETURN\n\
             -A VIREO_OUTPUT -p tcp --dport 4567:4568 -j RETURN\n\
             -A VIREO_OUTPUT -d 169.254.169.254/32 -j RETURN\n\
             -A VIREO_OUTPUT -p tcp -j REDIRECT --to-ports 4140\n\
             -A OUTPUT -p tcp -j VIREO_OUTPUT\n\
             COMMIT\n"
        );
        // Each family gets only its own networks.
        let v6 = rules().restore_input(Family::V6, empty);
        assert!(v6.contains("-d fd00::/8 -j RETURN") && !v6.contains("169.254"));
    }

    #[test]
    fn a_second_run_does_not_add_a_second_jump() {
        let saved = "*nat\n:OUTPUT ACCEPT [0:0]\n:VIREO_OUTPUT - [0:0]\n-A OUTPUT -p tcp -j VIREO_OUTPUT\n-A VIREO_OUTPUT -p tcp -j REDIRECT --to-ports 4140\nCOMMIT\n";
        let again = rules().restore_input(Family::V4, saved);
        assert!(!again.contains("-A OUTPUT"));
        assert!(again.starts_with("*nat\n:VIREO_OUTPUT - [0:0]\n"));
    }
}
