//! Ports the sandbox chooses for the processes it starts (the replicas and HAProxy), whose
//! configuration has to name a concrete port before the process can bind it.
//!
//! A chosen port is held (this process listens on it) from the moment it is chosen until just
//! before the process that binds it starts. Choosing by binding port 0 and letting go at once
//! is not enough: the operating system may hand the same port to the next choice, or to an
//! emulator listening on port 0, and then the second process to bind it fails with "address
//! in use". Holding leaves only the moment between letting go and the child's own bind.

use anyhow::{Context as _, Result};
use std::net::{IpAddr, SocketAddr, TcpListener};

/// A port chosen for a process that has not started yet.
#[derive(Debug)]
pub(super) struct HeldPort {
    addr: SocketAddr,
    /// The listener that keeps the port from being chosen again; `None` when the port was
    /// given (not 0), since the caller chose it and nothing here picks it.
    listener: Option<TcpListener>,
}

impl HeldPort {
    /// A free port on `ip`, the operating system's choice, held until [`HeldPort::release`].
    pub(super) fn free_on(ip: IpAddr) -> Result<Self> {
        let listener =
            TcpListener::bind((ip, 0)).with_context(|| format!("finding a free port on {ip}"))?;
        Ok(Self {
            addr: listener.local_addr()?,
            listener: Some(listener),
        })
    }

    /// `addr` itself, or a free port on its address (held) when its port is 0.
    pub(super) fn concrete(addr: SocketAddr) -> Result<Self> {
        if addr.port() == 0 {
            Self::free_on(addr.ip())
        } else {
            Ok(Self {
                addr,
                listener: None,
            })
        }
    }

    /// The address, for a configuration.
    pub(super) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Lets the port go, for the process about to bind it, and says which it was.
    pub(super) fn release(self) -> SocketAddr {
        drop(self.listener);
        self.addr
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn held_ports_are_not_chosen_again_until_released() {
        let loopback = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let held: Vec<HeldPort> = (0..64)
            .map(|_| HeldPort::free_on(loopback).unwrap())
            .collect();
        let mut ports: Vec<u16> = held.iter().map(|p| p.addr().port()).collect();
        ports.sort_unstable();
        ports.dedup();
        assert_eq!(ports.len(), 64, "a held port was chosen twice");
        // While held, nobody else can listen there; once released, the process it was chosen
        // for can.
        let first = held.into_iter().next().unwrap();
        assert!(TcpListener::bind(first.addr()).is_err());
        let addr = first.release();
        TcpListener::bind(addr).expect("a released port can be bound");
    }

    #[test]
    fn a_given_port_is_kept_as_given_and_not_held() {
        let given: SocketAddr = "127.0.0.1:18089".parse().unwrap();
        let port = HeldPort::concrete(given).unwrap();
        assert_eq!(port.addr(), given);
        assert!(port.listener.is_none());
        assert_eq!(
            HeldPort::concrete("127.0.0.1:0".parse().unwrap())
                .unwrap()
                .addr()
                .ip(),
            given.ip()
        );
    }
}
