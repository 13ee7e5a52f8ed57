//! Reading which nftables tables a network namespace holds, with their comments, over netlink
//! (no `nft` process): how a container finds the egress proxy that already serves a namespace
//! it shares with others.

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_DUMP, NLM_F_REQUEST,
};
use netlink_packet_netfilter::nftables::{NfTablesMessage, TableAttribute, TableMessage};
use netlink_packet_netfilter::{
    NetfilterHeader, NetfilterMessage, NetfilterMessageInner, NetfilterProtoFamily,
};
use netlink_sys::{constants::NETLINK_NETFILTER, Socket};

use super::{netns, NetworkError};

/// One `inet` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    pub name: String,
    pub comment: Option<String>,
}

/// The `inet` tables in the network namespace of `pid`.
pub fn inet_tables(pid: i32) -> Result<Vec<Table>, NetworkError> {
    netns::in_netns(pid, dump)
}

fn dump() -> std::io::Result<Vec<Table>> {
    let mut socket = Socket::new(NETLINK_NETFILTER)?;
    socket.bind_auto()?;
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    let mut request = NetlinkMessage::new(
        header,
        NetlinkPayload::from(NetfilterMessage::new(
            NetfilterHeader::new(NetfilterProtoFamily::Inet, 0, 0),
            NfTablesMessage::GetTable(TableMessage {
                attributes: Vec::new(),
            }),
        )),
    );
    request.finalize();
    let mut buf = vec![0; request.header.length as usize];
    request.serialize(&mut buf);
    socket.send(&buf, 0)?;

    let mut tables = Vec::new();
    let mut reply = vec![0u8; 65536];
    loop {
        let n = socket.recv(&mut &mut reply[..], 0)?;
        let mut data = &reply[..n];
        while !data.is_empty() {
            let message = NetlinkMessage::<NetfilterMessage>::deserialize(data).map_err(|e| {
                std::io::Error::other(format!("an unreadable nftables table message: {e}"))
            })?;
            let length = (message.header.length as usize + 3) & !3;
            match message.payload {
                NetlinkPayload::Done(_) => return Ok(tables),
                NetlinkPayload::Error(error) => {
                    return Err(match error.code {
                        Some(code) => std::io::Error::from_raw_os_error(-code.get()),
                        None => std::io::Error::other("an empty netlink error"),
                    })
                }
                NetlinkPayload::InnerMessage(NetfilterMessage {
                    inner:
                        NetfilterMessageInner::NfTables(NfTablesMessage::NewTable(TableMessage {
                            attributes,
                        })),
                    ..
                }) => tables.extend(table(&attributes)),
                _ => {}
            }
            if length == 0 || length >= data.len() {
                break;
            }
            data = &data[length..];
        }
    }
}

fn table(attributes: &[TableAttribute]) -> Option<Table> {
    let mut name = None;
    let mut comment = None;
    for attribute in attributes {
        match attribute {
            TableAttribute::Name(text) => name = Some(text.clone()),
            TableAttribute::UserData(bytes) => comment = user_comment(bytes),
            _ => {}
        }
    }
    Some(Table {
        name: name?,
        comment,
    })
}

/// The comment in a table's user data: type-length-value records (libnftnl's `nftnl_udata`),
/// the comment being type 0, NUL-terminated.
fn user_comment(mut bytes: &[u8]) -> Option<String> {
    const COMMENT: u8 = 0;
    while let [kind, length, rest @ ..] = bytes {
        let value = rest.get(..usize::from(*length))?;
        if *kind == COMMENT {
            let text = value.strip_suffix(&[0]).unwrap_or(value);
            return String::from_utf8(text.to_vec()).ok();
        }
        bytes = &rest[usize::from(*length)..];
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_comment_is_found_among_the_user_data() {
        let mut data = vec![3, 2, 9, 9, 0, 4];
        data.extend(b"abc\0");
        assert_eq!(user_comment(&data).as_deref(), Some("abc"));
        assert_eq!(user_comment(&[3, 2, 9, 9]), None);
        assert_eq!(user_comment(&[0, 9, 1]), None, "truncated");
    }
}
