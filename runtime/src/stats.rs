//! Container statistics in runc's `events` JSON shape (`runc/types/events.go`), converted from
//! what libcgroups reads. Field names and omissions follow runc's, because tools parse them.

use std::collections::{BTreeMap, HashMap};

use libcgroups::stats::{BlkioDeviceStat, MemoryData, Stats};
use serde::Serialize;

fn is_zero(n: &u64) -> bool {
    *n == 0
}

#[derive(Debug, Default, Serialize, PartialEq)]
pub struct RuncStats {
    pub cpu: Cpu,
    pub memory: Memory,
    pub pids: Pids,
    pub blkio: Blkio,
    pub hugetlb: BTreeMap<String, Hugetlb>,
    pub intel_rdt: Empty,
    pub network_interfaces: Option<Vec<()>>,
}

#[derive(Debug, Default, Serialize, PartialEq)]
pub struct Empty {}

#[derive(Debug, Default, Serialize, PartialEq)]
pub struct Cpu {
    pub usage: CpuUsage,
    pub throttling: Throttling,
}

#[derive(Debug, Default, Serialize, PartialEq)]
pub struct CpuUsage {
    #[serde(skip_serializing_if = "is_zero")]
    pub total: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub percpu: Vec<u64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub percpu_kernel: Vec<u64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub percpu_user: Vec<u64>,
    pub kernel: u64,
    pub user: u64,
}

#[derive(Debug, Default, Serialize, PartialEq)]
pub struct Throttling {
    #[serde(skip_serializing_if = "is_zero")]
    pub periods: u64,
    #[serde(rename = "throttledPeriods", skip_serializing_if = "is_zero")]
    pub throttled_periods: u64,
    #[serde(rename = "throttledTime", skip_serializing_if = "is_zero")]
    pub throttled_time: u64,
}

#[derive(Debug, Default, Serialize, PartialEq)]
pub struct MemoryEntry {
    pub limit: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub usage: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub max: u64,
    pub failcnt: u64,
}

#[derive(Debug, Default, Serialize, PartialEq)]
pub struct Memory {
    #[serde(skip_serializing_if = "is_zero")]
    pub cache: u64,
    pub usage: MemoryEntry,
    pub swap: MemoryEntry,
    pub kernel: MemoryEntry,
    #[serde(rename = "kernelTCP")]
    pub kernel_tcp: MemoryEntry,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub raw: BTreeMap<String, u64>,
}

#[derive(Debug, Default, Serialize, PartialEq)]
pub struct Pids {
    #[serde(skip_serializing_if = "is_zero")]
    pub current: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub limit: u64,
}

#[derive(Debug, Default, Serialize, PartialEq)]
pub struct BlkioEntry {
    #[serde(skip_serializing_if = "is_zero")]
    pub major: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub minor: u64,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub op: String,
    #[serde(skip_serializing_if = "is_zero")]
    pub value: u64,
}

#[derive(Debug, Default, Serialize, PartialEq)]
pub struct Blkio {
    #[serde(
        rename = "ioServiceBytesRecursive",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub io_service_bytes_recursive: Vec<BlkioEntry>,
    #[serde(rename = "ioServicedRecursive", skip_serializing_if = "Vec::is_empty")]
    pub io_serviced_recursive: Vec<BlkioEntry>,
    #[serde(rename = "ioQueueRecursive", skip_serializing_if = "Vec::is_empty")]
    pub io_queued_recursive: Vec<BlkioEntry>,
    #[serde(
        rename = "ioServiceTimeRecursive",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub io_service_time_recursive: Vec<BlkioEntry>,
    #[serde(rename = "ioWaitTimeRecursive", skip_serializing_if = "Vec::is_empty")]
    pub io_wait_time_recursive: Vec<BlkioEntry>,
    #[serde(rename = "ioMergedRecursive", skip_serializing_if = "Vec::is_empty")]
    pub io_merged_recursive: Vec<BlkioEntry>,
    #[serde(rename = "ioTimeRecursive", skip_serializing_if = "Vec::is_empty")]
    pub io_time_recursive: Vec<BlkioEntry>,
    #[serde(rename = "sectorsRecursive", skip_serializing_if = "Vec::is_empty")]
    pub sectors_recursive: Vec<BlkioEntry>,
}

#[derive(Debug, Default, Serialize, PartialEq)]
pub struct Hugetlb {
    #[serde(skip_serializing_if = "is_zero")]
    pub usage: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub max: u64,
    pub failcnt: u64,
}

fn memory_entry(data: &MemoryData) -> MemoryEntry {
    MemoryEntry {
        limit: data.limit,
        usage: data.usage,
        max: data.max_usage,
        failcnt: data.fail_count,
    }
}

fn blkio_entries(stats: &[BlkioDeviceStat]) -> Vec<BlkioEntry> {
    stats
        .iter()
        .map(|s| BlkioEntry {
            major: s.major,
            minor: s.minor,
            op: s.op_type.clone().unwrap_or_default(),
            value: s.value,
        })
        .collect()
}

fn sorted(map: &HashMap<String, u64>) -> BTreeMap<String, u64> {
    map.iter().map(|(k, v)| (k.clone(), *v)).collect()
}

impl From<&Stats> for RuncStats {
    fn from(stats: &Stats) -> RuncStats {
        let usage = &stats.cpu.usage;
        let throttling = &stats.cpu.throttling;
        let memory = &stats.memory;
        let blkio = &stats.blkio;
        RuncStats {
            cpu: Cpu {
                usage: CpuUsage {
                    total: usage.usage_total,
                    percpu: usage.per_core_usage_total.clone(),
                    percpu_kernel: usage.per_core_usage_kernel.clone(),
                    percpu_user: usage.per_core_usage_user.clone(),
                    kernel: usage.usage_kernel,
                    user: usage.usage_user,
                },
                throttling: Throttling {
                    periods: throttling.periods,
                    throttled_periods: throttling.throttled_periods,
                    throttled_time: throttling.throttled_time,
                },
            },
            memory: Memory {
                cache: memory.cache,
                usage: memory_entry(&memory.memory),
                swap: memory_entry(&memory.memswap),
                kernel: memory_entry(&memory.kernel),
                kernel_tcp: memory_entry(&memory.kernel_tcp),
                raw: sorted(&memory.stats),
            },
            pids: Pids {
                current: stats.pids.current,
                limit: stats.pids.limit,
            },
            blkio: Blkio {
                io_service_bytes_recursive: blkio_entries(&blkio.service_bytes),
                io_serviced_recursive: blkio_entries(&blkio.serviced),
                io_queued_recursive: blkio_entries(&blkio.queued),
                io_service_time_recursive: blkio_entries(&blkio.service_time),
                io_wait_time_recursive: blkio_entries(&blkio.wait_time),
                io_merged_recursive: blkio_entries(&blkio.merged),
                io_time_recursive: blkio_entries(&blkio.time),
                sectors_recursive: blkio_entries(&blkio.sectors),
            },
            hugetlb: stats
                .hugetlb
                .iter()
                .map(|(size, h)| {
                    (
                        size.clone(),
                        Hugetlb {
                            usage: h.usage,
                            max: h.max_usage,
                            failcnt: h.fail_count,
                        },
                    )
                })
                .collect(),
            intel_rdt: Empty {},
            network_interfaces: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_and_serialises_like_runc() {
        let mut stats = Stats::default();
        stats.cpu.usage.usage_total = 11718235;
        stats.cpu.usage.per_core_usage_total = vec![7615008, 4103227];
        stats.memory.memory = MemoryData {
            usage: 1003520,
            max_usage: 2768896,
            fail_count: 0,
            limit: 9223372036854771712,
        };
        stats.memory.kernel_tcp.limit = 9223372036854771712;
        stats.memory.stats.insert("rss".into(), 53248);
        stats.pids.current = 1;
        stats.blkio.service_bytes.push(BlkioDeviceStat {
            major: 8,
            minor: 0,
            op_type: Some("Read".into()),
            value: 4096,
        });
        let converted = RuncStats::from(&stats);
        let data = &serde_json::to_value(&converted).unwrap();
        assert_eq!(data["cpu"]["usage"]["total"], 11718235);
        assert_eq!(data["cpu"]["usage"]["percpu"][1], 4103227);
        assert_eq!(data["cpu"]["usage"]["kernel"], 0);
        assert_eq!(data["cpu"]["throttling"], serde_json::json!({}));
        assert_eq!(data["memory"]["usage"]["usage"], 1003520);
        assert_eq!(data["memory"]["usage"]["max"], 2768896);
        assert_eq!(data["memory"]["usage"]["failcnt"], 0);
        assert_eq!(
            data["memory"]["kernelTCP"],
            serde_json::json!({"limit": 9223372036854771712u64, "failcnt": 0})
        );
        assert_eq!(data["memory"]["raw"]["rss"], 53248);
        assert_eq!(data["pids"], serde_json::json!({"current": 1}));
        assert_eq!(
            data["blkio"]["ioServiceBytesRecursive"][0],
            serde_json::json!({"major": 8, "op": "Read", "value": 4096})
        );
        assert_eq!(data["hugetlb"], serde_json::json!({}));
        assert_eq!(data["intel_rdt"], serde_json::json!({}));
        assert!(data["network_interfaces"].is_null());
    }
}
