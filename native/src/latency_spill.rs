//! Run latencies past a budget written out of a part's tallies as sorted runs
//! (`meta_supervisor/tally/latency_runs.py`): so a part's latencies do not grow with its file.
//!
//! Python hands over an open file (its descriptor, where to write from, and how many latencies the
//! part may hold): once the part holds more, every agent's latencies are sorted and appended to the
//! file as one run of that agent, `(byte offset, count)` in `Tally::latency_runs`, and the agent's
//! vector starts empty again. The file is unnamed (made by Python in the build's spill folder).

use crate::tallies::Tally;
use std::fs::File;
use std::os::fd::BorrowedFd;
use std::os::unix::fs::FileExt;

/// Latencies written at a time (64 kB).
const CHUNK: usize = 8192;

pub struct LatencySpill {
    file: File,
    /// where the next run is written, and after the read: where the file ends
    pub at: u64,
    budget: usize,
    resident: usize,
}

impl LatencySpill {
    /// `(fd, at, budget)` of `read_part`'s `latencies` argument (the descriptor is duplicated).
    pub fn new((fd, at, budget): (i32, u64, usize)) -> std::io::Result<Self> {
        // SAFETY: the descriptor is open for the call (Python holds it); it is only duplicated here
        let owned = unsafe { BorrowedFd::borrow_raw(fd) }.try_clone_to_owned()?;
        Ok(LatencySpill {
            file: File::from(owned),
            at,
            budget: budget.max(1),
            resident: 0,
        })
    }

    /// A run span was counted (it may have added a latency): past the budget, spill them all.
    pub fn added(&mut self, agents: &mut [Tally]) -> std::io::Result<()> {
        self.resident += 1;
        if self.resident > self.budget {
            self.spill(agents)?;
        }
        Ok(())
    }

    fn spill(&mut self, agents: &mut [Tally]) -> std::io::Result<()> {
        let mut bytes = Vec::with_capacity(CHUNK * 8);
        for tally in agents.iter_mut() {
            if tally.latencies.is_empty() {
                continue;
            }
            tally.latencies.sort_unstable();
            let start = self.at;
            for chunk in tally.latencies.chunks(CHUNK) {
                bytes.clear();
                for value in chunk {
                    bytes.extend_from_slice(&value.to_le_bytes());
                }
                self.file.write_all_at(&bytes, self.at)?;
                self.at += bytes.len() as u64;
            }
            tally.latency_runs.push((start, tally.latencies.len() as u64));
            tally.latencies.clear();
        }
        self.resident = 0;
        Ok(())
    }
}
