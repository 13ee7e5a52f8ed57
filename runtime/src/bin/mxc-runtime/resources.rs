//! Resource updates as `runc update` takes them: a JSON file (`-r FILE`, `-r -` for stdin) in
//! the OCI `LinuxResources` shape, or flags. As in runc, a zero means "leave unchanged".

use libcontainer::oci_spec::runtime::{
    LinuxBlockIo, LinuxCpu, LinuxMemory, LinuxPids, LinuxResources,
};
use serde_json::Value;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ResourcesError {
    #[error("invalid resources JSON: {0}")]
    Json(String),
    #[error(
        "invalid size {0:?}: use bytes or a number with a unit (k, m, g, t), or -1 for unlimited"
    )]
    Size(String),
}

/// The flags of `runc update`. Sizes are already parsed to bytes; -1 means unlimited.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResourceFlags {
    pub blkio_weight: Option<u16>,
    pub cpu_period: Option<u64>,
    pub cpu_quota: Option<i64>,
    pub cpu_rt_period: Option<u64>,
    pub cpu_rt_runtime: Option<i64>,
    pub cpu_shares: Option<u64>,
    pub cpuset_cpus: Option<String>,
    pub cpuset_mems: Option<String>,
    pub memory: Option<i64>,
    pub memory_reservation: Option<i64>,
    pub memory_swap: Option<i64>,
    pub pids_limit: Option<i64>,
}

impl ResourceFlags {
    pub fn is_empty(&self) -> bool {
        *self == ResourceFlags::default()
    }

    pub fn to_resources(&self) -> LinuxResources {
        let mut resources = LinuxResources::default();
        if self.memory.is_some() || self.memory_reservation.is_some() || self.memory_swap.is_some()
        {
            let mut memory = LinuxMemory::default();
            memory.set_limit(self.memory);
            memory.set_reservation(self.memory_reservation);
            memory.set_swap(self.memory_swap);
            resources.set_memory(Some(memory));
        }
        let cpu_given = self.cpu_period.is_some()
            || self.cpu_quota.is_some()
            || self.cpu_rt_period.is_some()
            || self.cpu_rt_runtime.is_some()
            || self.cpu_shares.is_some()
            || self.cpuset_cpus.is_some()
            || self.cpuset_mems.is_some();
        if cpu_given {
            let mut cpu = LinuxCpu::default();
            cpu.set_period(self.cpu_period);
            cpu.set_quota(self.cpu_quota);
            cpu.set_realtime_period(self.cpu_rt_period);
            cpu.set_realtime_runtime(self.cpu_rt_runtime);
            cpu.set_shares(self.cpu_shares);
            cpu.set_cpus(self.cpuset_cpus.clone());
            cpu.set_mems(self.cpuset_mems.clone());
            resources.set_cpu(Some(cpu));
        }
        if let Some(limit) = self.pids_limit {
            let mut pids = LinuxPids::default();
            pids.set_limit(limit);
            resources.set_pids(Some(pids));
        }
        if let Some(weight) = self.blkio_weight {
            let mut blkio = LinuxBlockIo::default();
            blkio.set_weight(Some(weight));
            resources.set_block_io(Some(blkio));
        }
        resources
    }
}

/// Parses the JSON of `runc update -r`, dropping zero values (runc leaves those unchanged).
pub fn resources_from_json(bytes: &[u8]) -> Result<LinuxResources, ResourcesError> {
    let mut value: Value =
        serde_json::from_slice(bytes).map_err(|e| ResourcesError::Json(e.to_string()))?;
    if !value.is_object() {
        return Err(ResourcesError::Json("expected a JSON object".into()));
    }
    for section in ["memory", "cpu", "pids", "blockIO"] {
        if let Some(Value::Object(fields)) = value.get_mut(section) {
            fields.retain(|_, v| !(v.as_i64() == Some(0) || v.as_str() == Some("")));
        }
    }
    if let Some(Value::Object(pids)) = value.get("pids") {
        if pids.is_empty() {
            value.as_object_mut().expect("object").remove("pids");
        }
    }
    serde_json::from_value(value).map_err(|e| ResourcesError::Json(e.to_string()))
}

/// Parses a size as `runc update --memory` does: bytes, or a number with a binary unit
/// (`512m`, `1G`, `64KiB`); `-1` means unlimited.
pub fn parse_size(raw: &str) -> Result<i64, ResourcesError> {
    let err = || ResourcesError::Size(raw.to_string());
    let s = raw.trim();
    if s == "-1" {
        return Ok(-1);
    }
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let number: f64 = number.parse().map_err(|_| err())?;
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        _ => return Err(err()),
    };
    let bytes = number * multiplier as f64;
    if !bytes.is_finite() || bytes < 0.0 || bytes > i64::MAX as f64 {
        return Err(err());
    }
    Ok(bytes as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1048576"), Ok(1048576));
        assert_eq!(parse_size("512m"), Ok(512 << 20));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("64KiB"), Ok(64 << 10));
        assert_eq!(parse_size("1.5k"), Ok(1536));
        assert_eq!(parse_size("-1"), Ok(-1));
        assert!(parse_size("lots").is_err());
        assert!(parse_size("12q").is_err());
        assert!(parse_size("-5").is_err());
    }

    #[test]
    fn flags_build_only_what_was_given() {
        let flags = ResourceFlags {
            memory: Some(64 << 20),
            pids_limit: Some(20),
            cpu_quota: Some(50000),
            ..Default::default()
        };
        let r = flags.to_resources();
        assert_eq!(r.memory().unwrap().limit(), Some(64 << 20));
        assert_eq!(r.memory().unwrap().swap(), None);
        assert_eq!(r.pids().unwrap().limit(), 20);
        assert_eq!(r.cpu().as_ref().unwrap().quota(), Some(50000));
        assert_eq!(r.cpu().as_ref().unwrap().shares(), None);
        assert!(r.block_io().is_none());
        assert!(ResourceFlags::default().is_empty());
        assert!(ResourceFlags::default().to_resources().memory().is_none());
    }

    #[test]
    fn json_zero_values_mean_unchanged() {
        let json = br#"{"memory":{"limit":33554432,"reservation":0,"swap":0,"kernel":0,"kernelTCP":0},
            "cpu":{"shares":0,"quota":0,"period":0,"realtimeRuntime":0,"realtimePeriod":0,"cpus":"","mems":""},
            "blockIO":{"weight":0},"pids":{"limit":0}}"#;
        let r = resources_from_json(json).unwrap();
        assert_eq!(r.memory().unwrap().limit(), Some(33554432));
        assert_eq!(r.memory().unwrap().reservation(), None);
        assert!(r.pids().is_none());
        let cpu = r.cpu().as_ref().unwrap();
        assert_eq!(cpu.quota(), None);
        assert_eq!(cpu.cpus(), &None);
        assert_eq!(r.block_io().as_ref().unwrap().weight(), None);
        assert!(resources_from_json(b"[]").is_err());
        assert!(resources_from_json(b"{").is_err());
    }
}
