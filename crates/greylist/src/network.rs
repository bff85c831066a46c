//! IP networks in CIDR notation, for allowlists and for grouping clients into the networks greylisting remembers.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use crate::error::{Error, ErrorKind};

/// An IPv4 or IPv6 network: an address with its host bits cleared, and a prefix length.
///
/// IPv4-mapped IPv6 addresses (`::ffff:192.0.2.1`) are IPv4 addresses here, both when building a network and when
/// testing membership, because a dual-stack listener reports IPv4 clients that way.
///
/// ```
/// use couchmail_greylist::Network;
///
/// let network: Network = "192.0.2.77/24".parse().unwrap();
/// assert_eq!(network.to_string(), "192.0.2.0/24");
/// assert!(network.contains("192.0.2.1".parse().unwrap()));
/// assert!(network.contains("::ffff:192.0.2.1".parse().unwrap()));
/// assert!(!network.contains("192.0.3.1".parse().unwrap()));
/// assert_eq!("2001:db8::1".parse::<Network>().unwrap().to_string(), "2001:db8::1/128");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Network {
    address: IpAddr,
    prefix_len: u8,
}

impl Network {
    /// The network of `prefix_len` bits that holds `address`; fails if the prefix is longer than the address.
    ///
    /// An IPv4-mapped address takes an IPv6 prefix length of 96 or more and becomes the IPv4 network of 96 bits
    /// less (`::ffff:192.0.2.0/120` is `192.0.2.0/24`); a shorter prefix would reach outside the mapped range.
    pub fn new(address: IpAddr, prefix_len: u8) -> Result<Network, Error> {
        let canonical = address.to_canonical();
        let prefix_len = match (address, canonical) {
            (IpAddr::V6(_), IpAddr::V4(_)) => prefix_len.checked_sub(96).ok_or_else(|| {
                Error::new(
                    ErrorKind::InvalidConfig,
                    format!("prefix length {prefix_len} of ipv4-mapped {address} reaches outside ::ffff:0:0/96"),
                )
            })?,
            _ => prefix_len,
        };
        let address = canonical;
        let max_len = max_prefix_len(address);
        if prefix_len > max_len {
            return Err(Error::new(
                ErrorKind::InvalidConfig,
                format!("prefix length {prefix_len} is longer than the {max_len} bits of {address}"),
            ));
        }
        Ok(Network { address: mask(address, prefix_len), prefix_len })
    }

    /// The network of `address` (made canonical) with `prefix_len` cut to the address's length.
    pub(crate) fn clamped(address: IpAddr, prefix_len: u8) -> Network {
        let address = address.to_canonical();
        let prefix_len = prefix_len.min(max_prefix_len(address));
        Network { address: mask(address, prefix_len), prefix_len }
    }

    /// The network's first address.
    pub fn address(&self) -> IpAddr {
        self.address
    }

    /// The number of leading bits that are fixed.
    pub fn prefix_len(&self) -> u8 {
        self.prefix_len
    }

    /// Whether `address` lies in this network.
    pub fn contains(&self, address: IpAddr) -> bool {
        let address = address.to_canonical();
        address.is_ipv4() == self.address.is_ipv4() && mask(address, self.prefix_len) == self.address
    }
}

/// The length of `address` in bits: a bare address is a network of one.
fn max_prefix_len(address: IpAddr) -> u8 {
    if address.is_ipv4() { 32 } else { 128 }
}

/// Clears the host bits of `address`; `prefix_len` is at most the address's length.
fn mask(address: IpAddr, prefix_len: u8) -> IpAddr {
    match address {
        IpAddr::V4(address) => {
            let bits = u32::from(address);
            let kept = u32::MAX.checked_shl(32 - u32::from(prefix_len)).unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(bits & kept))
        }
        IpAddr::V6(address) => {
            let bits = u128::from(address);
            let kept = u128::MAX.checked_shl(128 - u32::from(prefix_len)).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(bits & kept))
        }
    }
}

/// Reads `address/prefix_len`, or a bare address as a network of one.
impl FromStr for Network {
    type Err = Error;

    fn from_str(text: &str) -> Result<Network, Error> {
        let invalid = || Error::new(ErrorKind::InvalidConfig, format!("{text:?} is not an ip address or network"));
        let (address, prefix_len) = match text.trim().split_once('/') {
            Some((address, prefix_len)) => {
                let prefix_len: u8 = prefix_len.parse().map_err(|_| invalid())?;
                (address.parse::<IpAddr>().map_err(|_| invalid())?, Some(prefix_len))
            }
            None => (text.trim().parse::<IpAddr>().map_err(|_| invalid())?, None),
        };
        Network::new(address, prefix_len.unwrap_or_else(|| max_prefix_len(address)))
    }
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.address, self.prefix_len)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn network(text: &str) -> Network {
        text.parse().unwrap()
    }

    #[test]
    fn clears_host_bits() {
        assert_eq!(network("192.0.2.255/24").to_string(), "192.0.2.0/24");
        assert_eq!(network("10.1.2.3/0").to_string(), "0.0.0.0/0");
        assert_eq!(network("10.1.2.3/32").to_string(), "10.1.2.3/32");
        assert_eq!(network("2001:db8:1:2:3:4:5:6/64").to_string(), "2001:db8:1:2::/64");
        assert_eq!(network("2001:db8::1/0").to_string(), "::/0");
        assert_eq!(network("::ffff:192.0.2.9/120").to_string(), "192.0.2.0/24");
        assert_eq!(network("::ffff:192.0.2.9").to_string(), "192.0.2.9/32");
    }

    #[test]
    fn refuses_what_is_not_a_network() {
        for text in [
            "",
            "192.0.2.0/33",
            "2001:db8::/129",
            "192.0.2/24",
            "example.com",
            "192.0.2.0/",
            "1.2.3.4/-1",
            "::ffff:192.0.2.9/24",
        ] {
            assert!(text.parse::<Network>().is_err(), "{text:?} parsed");
        }
    }

    #[test]
    fn tests_membership_per_family() {
        let v4 = network("192.0.2.0/24");
        assert!(v4.contains("192.0.2.200".parse().unwrap()));
        assert!(!v4.contains("192.0.1.200".parse().unwrap()));
        assert!(!v4.contains("::".parse().unwrap()));
        let everything_v6 = network("::/0");
        assert!(everything_v6.contains("2001:db8::1".parse().unwrap()));
        assert!(!everything_v6.contains("192.0.2.1".parse().unwrap()));
    }

    proptest! {
        #[test]
        fn a_network_holds_the_address_it_was_built_from(bits in any::<u128>(), prefix_len in 0u8..=128, v4 in any::<bool>()) {
            let (address, prefix_len) = if v4 {
                (IpAddr::V4(Ipv4Addr::from(bits as u32)), prefix_len % 33)
            } else {
                (IpAddr::V6(Ipv6Addr::from(bits)), prefix_len)
            };
            // An IPv4-mapped address is an IPv4 one here, with its own prefix rule (tested above).
            prop_assume!(address.to_canonical() == address);
            let network = Network::new(address, prefix_len).unwrap();
            prop_assert!(network.contains(address));
            prop_assert_eq!(network.to_string().parse::<Network>().unwrap(), network);
        }
    }
}
