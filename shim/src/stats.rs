//! Task statistics as containerd expects them from a Linux shim on cgroup v1: an
//! `io.containerd.cgroups.v1.Metrics` message (what `ctr task metrics` and the CRI decode),
//! filled from the engine's cgroup statistics.

use containerd_shim_protos::cgroups::metrics::{
    BlkIOEntry, BlkIOStat, CPUStat, CPUUsage, HugetlbStat, MemoryEntry, MemoryStat, Metrics,
    PidsStat, Throttle,
};
use mxc_runtime::{BlkioEntry, MemoryEntry as EngineMemoryEntry, RuncStats};

pub fn metrics(stats: &RuncStats) -> Metrics {
    let mut metrics = Metrics::new();

    let mut pids = PidsStat::new();
    pids.current = stats.pids.current;
    pids.limit = stats.pids.limit;
    metrics.pids = Some(pids).into();

    let mut usage = CPUUsage::new();
    usage.total = stats.cpu.usage.total;
    usage.kernel = stats.cpu.usage.kernel;
    usage.user = stats.cpu.usage.user;
    usage.per_cpu = stats.cpu.usage.percpu.clone();
    let mut throttle = Throttle::new();
    throttle.periods = stats.cpu.throttling.periods;
    throttle.throttled_periods = stats.cpu.throttling.throttled_periods;
    throttle.throttled_time = stats.cpu.throttling.throttled_time;
    let mut cpu = CPUStat::new();
    cpu.usage = Some(usage).into();
    cpu.throttling = Some(throttle).into();
    metrics.cpu = Some(cpu).into();

    let memory = &stats.memory;
    let raw = |key: &str| memory.raw.get(key).copied().unwrap_or_default();
    let mut mem = MemoryStat::new();
    mem.cache = memory.cache;
    mem.rss = raw("rss");
    mem.rss_huge = raw("rss_huge");
    mem.mapped_file = raw("mapped_file");
    mem.dirty = raw("dirty");
    mem.writeback = raw("writeback");
    mem.pg_pg_in = raw("pgpgin");
    mem.pg_pg_out = raw("pgpgout");
    mem.pg_fault = raw("pgfault");
    mem.pg_maj_fault = raw("pgmajfault");
    mem.inactive_anon = raw("inactive_anon");
    mem.active_anon = raw("active_anon");
    mem.inactive_file = raw("inactive_file");
    mem.active_file = raw("active_file");
    mem.unevictable = raw("unevictable");
    mem.hierarchical_memory_limit = raw("hierarchical_memory_limit");
    mem.hierarchical_swap_limit = raw("hierarchical_memsw_limit");
    mem.total_cache = raw("total_cache");
    mem.total_rss = raw("total_rss");
    mem.total_rss_huge = raw("total_rss_huge");
    mem.total_mapped_file = raw("total_mapped_file");
    mem.total_dirty = raw("total_dirty");
    mem.total_writeback = raw("total_writeback");
    mem.total_pg_pg_in = raw("total_pgpgin");
    mem.total_pg_pg_out = raw("total_pgpgout");
    mem.total_pg_fault = raw("total_pgfault");
    mem.total_pg_maj_fault = raw("total_pgmajfault");
    mem.total_inactive_anon = raw("total_inactive_anon");
    mem.total_active_anon = raw("total_active_anon");
    mem.total_inactive_file = raw("total_inactive_file");
    mem.total_active_file = raw("total_active_file");
    mem.total_unevictable = raw("total_unevictable");
    mem.usage = Some(memory_entry(&memory.usage)).into();
    mem.swap = Some(memory_entry(&memory.swap)).into();
    mem.kernel = Some(memory_entry(&memory.kernel)).into();
    mem.kernel_tcp = Some(memory_entry(&memory.kernel_tcp)).into();
    metrics.memory = Some(mem).into();

    let blkio = &stats.blkio;
    let mut io = BlkIOStat::new();
    io.io_service_bytes_recursive = blkio_entries(&blkio.io_service_bytes_recursive);
    io.io_serviced_recursive = blkio_entries(&blkio.io_serviced_recursive);
    io.io_queued_recursive = blkio_entries(&blkio.io_queued_recursive);
    io.io_service_time_recursive = blkio_entries(&blkio.io_service_time_recursive);
    io.io_wait_time_recursive = blkio_entries(&blkio.io_wait_time_recursive);
    io.io_merged_recursive = blkio_entries(&blkio.io_merged_recursive);
    io.io_time_recursive = blkio_entries(&blkio.io_time_recursive);
    io.sectors_recursive = blkio_entries(&blkio.sectors_recursive);
    metrics.blkio = Some(io).into();

    metrics.hugetlb = stats
        .hugetlb
        .iter()
        .map(|(pagesize, h)| {
            let mut stat = HugetlbStat::new();
            stat.pagesize = pagesize.clone();
            stat.usage = h.usage;
            stat.max = h.max;
            stat.failcnt = h.failcnt;
            stat
        })
        .collect();
    metrics
}

fn memory_entry(entry: &EngineMemoryEntry) -> MemoryEntry {
    let mut out = MemoryEntry::new();
    out.limit = entry.limit;
    out.usage = entry.usage;
    out.max = entry.max;
    out.failcnt = entry.failcnt;
    out
}

fn blkio_entries(entries: &[BlkioEntry]) -> Vec<BlkIOEntry> {
    entries
        .iter()
        .map(|e| {
            let mut out = BlkIOEntry::new();
            out.op = e.op.clone();
            out.major = e.major;
            out.minor = e.minor;
            out.value = e.value;
            out
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn carries_the_numbers_ctr_prints() {
        let mut stats = RuncStats::default();
        stats.pids.current = 3;
        stats.pids.limit = 100;
        stats.memory.usage.usage = 4096;
        stats.memory.usage.limit = 8192;
        stats.memory.raw.insert("total_rss".into(), 2048);
        stats.cpu.usage.total = 12345;
        let m = metrics(&stats);
        assert_eq!(m.pids.current, 3);
        assert_eq!(m.pids.limit, 100);
        assert_eq!(m.memory.usage.usage, 4096);
        assert_eq!(m.memory.usage.limit, 8192);
        assert_eq!(m.memory.total_rss, 2048);
        assert_eq!(m.cpu.usage.total, 12345);
    }
}
