//! The bug report: version, kernel, usbfs caps, the device and its stream, the plan, the
//! settings and every counter, as plain text to paste into an issue.

use crate::dma::human_bytes;

use super::SessionView;

/// Everything a bug report needs, as text. `settings` is the client's persisted settings
/// as JSON.
pub fn bug_report(view: &SessionView, settings: &str) -> String {
    let mut s = String::new();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_else(|_| "unknown".into());
    s.push_str(&format!("isoscope {}\nkernel: {}\n", env!("CARGO_PKG_VERSION"), kernel.trim()));
    let mb = crate::dma::MemoryLimit::from_sysfs(0).usbfs_memory_mb;
    s.push_str(&format!("usbfs_memory_mb: {}\n", mb.map_or("unreadable".into(), |m| m.to_string())));
    match &view.live {
        Some(l) => {
            let i = &l.info;
            s.push_str(&format!(
                "device: {}\nsimulated: {}\nusbfs caps: mmap {}\nstream: endpoint 0x{:02x}, {}, {:?} speed, interval {}, packet {} bytes\n{}\n",
                i.device.name,
                i.device.simulated,
                if i.device.can_mmap { "yes" } else { "no" },
                i.stream.endpoint,
                i.stream.format,
                i.stream.speed,
                i.stream.interval,
                i.stream.packet_len,
                l.summary
            ));
            s.push_str(&format!(
                "path: {}{}\nplan: {} URBs in flight + {} spare, {} packets each\nmemory: {} accounted, cap {}\n",
                i.path,
                i.fallback.as_deref().map_or(String::new(), |f| format!(" (fallback: {f})")),
                i.plan.urbs_in_flight,
                i.plan.spare_urbs,
                i.plan.packets_per_urb,
                human_bytes(i.memory.accounted_bytes()),
                human_bytes(i.limit.effective_bytes())
            ));
        }
        None => s.push_str("device: (not running)\n"),
    }
    s.push_str(&format!("settings: {settings}\n"));
    if let Some(st) = &view.stats {
        s.push_str(&format!("stats: {}\n", serde_json::to_string(st).unwrap_or_default()));
    }
    if let Some(m) = &view.monitor {
        s.push_str(&format!(
            "monitor: {}\nmonitor stats: {}\n",
            serde_json::to_string(&m.info).unwrap_or_default(),
            serde_json::to_string(&m.probe.stats()).unwrap_or_default()
        ));
    }
    if let Some(e) = &view.monitor_error {
        s.push_str(&format!("monitor error: {e}\n"));
    }
    if let Some(e) = &view.error {
        s.push_str(&format!("error: {}\n", e.message));
    }
    s
}
