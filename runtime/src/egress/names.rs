//! The addresses the sandbox's resolver hands out: one IPv4 and one IPv6 address per allowed
//! name, from ranges nothing else uses, so that every connection the sandbox opens can be tied
//! back to the name it asked for. They stay stable for the sandbox's life; the real addresses
//! behind a name are looked up again for every connection.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Mutex;

use mxc_translate::compile::capture::{NAME_POOL_V4, NAME_POOL_V6};

/// Name <-> address, allocated on first lookup.
#[derive(Debug, Default)]
pub struct AddressBook {
    inner: Mutex<Book>,
}

#[derive(Debug, Default)]
struct Book {
    by_name: HashMap<String, u32>,
    names: Vec<String>,
}

/// How many names one sandbox may look up (the IPv4 pool's size, less the network address).
const CAPACITY: usize = (1 << (32 - 12)) - 2;

fn v4(index: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(NAME_POOL_V4.network()) + 1 + index)
}

fn v6(index: u32) -> Ipv6Addr {
    Ipv6Addr::from(u128::from(NAME_POOL_V6.network()) + 1 + u128::from(index))
}

impl AddressBook {
    /// The sandbox-side addresses of `name` (normalised), allocating them the first time;
    /// `None` once the pool is exhausted.
    pub fn addresses(&self, name: &str) -> Option<(Ipv4Addr, Ipv6Addr)> {
        let mut book = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let index = match book.by_name.get(name) {
            Some(index) => *index,
            None => {
                if book.names.len() >= CAPACITY {
                    return None;
                }
                let index = book.names.len() as u32;
                book.names.push(name.to_string());
                book.by_name.insert(name.to_string(), index);
                index
            }
        };
        Some((v4(index), v6(index)))
    }

    /// The name an address was handed out for.
    pub fn name(&self, address: IpAddr) -> Option<String> {
        let index = match address {
            IpAddr::V4(a) if NAME_POOL_V4.contains(&a) => {
                u32::from(a).checked_sub(u32::from(NAME_POOL_V4.network()) + 1)?
            }
            IpAddr::V6(a) if NAME_POOL_V6.contains(&a) => {
                u32::try_from(u128::from(a).checked_sub(u128::from(NAME_POOL_V6.network()) + 1)?)
                    .ok()?
            }
            _ => return None,
        };
        let book = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        book.names.get(index as usize).cloned()
    }

    /// Whether `address` is in one of the name pools (handed out or not).
    pub fn in_pool(address: IpAddr) -> bool {
        match address {
            IpAddr::V4(a) => NAME_POOL_V4.contains(&a),
            IpAddr::V6(a) => NAME_POOL_V6.contains(&a),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_and_reversible() {
        let book = AddressBook::default();
        let (a4, a6) = book.addresses("a.example.com").unwrap();
        let (b4, b6) = book.addresses("b.example.com").unwrap();
        assert_ne!(a4, b4);
        assert_ne!(a6, b6);
        assert_eq!(book.addresses("a.example.com").unwrap(), (a4, a6));
        assert_eq!(book.name(a4.into()).as_deref(), Some("a.example.com"));
        assert_eq!(book.name(b6.into()).as_deref(), Some("b.example.com"));
        assert!(AddressBook::in_pool(a4.into()) && AddressBook::in_pool(b6.into()));
        let unused = Ipv4Addr::from(u32::from(b4) + 1);
        assert!(AddressBook::in_pool(unused.into()) && book.name(unused.into()).is_none());
        assert!(book.name("198.18.0.1".parse().unwrap()).is_none());
    }
}
