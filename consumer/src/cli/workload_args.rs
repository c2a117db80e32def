//! Checks of the workload flags (`PAYLOAD_BYTES`, `SWEEP`, `STEP`, `WARMUP`, `CAPACITY_P99`)
//! at start-up, each refusal saying what was wrong and how it is written right.

use super::Args;
use crate::sweep::{Plan, Sweep};
use anyhow::{bail, Result};
use edge::payload::{self, format_size};

/// `PAYLOAD_BYTES`: a size with a binary unit (limits depend on the kinds, see `Args::plan`).
pub(crate) fn size(text: &str) -> Result<usize, String> {
    payload::parse_size(text).map_err(|e| e.to_string())
}

impl Args {
    /// Refuses a request padding that an enabled kind cannot carry.
    fn check_request_size(&self, what: &'static str, size: usize) -> Result<()> {
        if self.enable_method {
            if let Err(e) = payload::check_method(what, size) {
                if self.enable_message && payload::check_message(what, size).is_ok() {
                    bail!(
                        "{e} (EnableMethod=false measures messages alone, up to {} of padding)",
                        format_size(payload::MAX_MESSAGE_PADDING)
                    );
                }
                bail!("{e}");
            }
        }
        if self.enable_message {
            payload::check_message(what, size)?;
        }
        Ok(())
    }

    /// The sweep `SWEEP`, `STEP`, `WARMUP` and `CAPACITY_P99` ask for, if any, once every size
    /// is checked against the enabled kinds' limits.
    pub fn plan(&self) -> Result<Option<Plan>> {
        self.check_request_size("PAYLOAD_BYTES", self.payload_bytes)?;
        let Some(sweep) = &self.sweep else {
            return Ok(None);
        };
        let d = |d| humantime::format_duration(d).to_string();
        if self.step.is_zero() {
            bail!("STEP must be longer than zero, for example --step 30s");
        }
        if self.step < self.warmup {
            bail!(
                "STEP ({}) is shorter than WARMUP ({}): each step is measured for STEP after a warm-up of WARMUP, and a warm-up longer than the measurement wastes the run; for example --step 30s --warmup 5s",
                d(self.step),
                d(self.warmup)
            );
        }
        if self.capacity_p99.is_zero() {
            bail!("CAPACITY_P99 must be longer than zero, for example --capacity-p99 50ms");
        }
        match sweep {
            Sweep::Rate(_) if self.rate != 0.0 => bail!(
                "EXCHANGE_RATE ({}) and SWEEP {} both set the rate: a rate sweep sets it per step; for a payload sweep at a fixed rate write --rate 50 --sweep payload=0,1KiB,16KiB",
                self.rate,
                sweep.axis()
            ),
            Sweep::Payload(_) if self.payload_bytes != 0 => bail!(
                "PAYLOAD_BYTES ({}) and SWEEP payload=… both set the request size: leave PAYLOAD_BYTES unset for a payload sweep, for example --sweep payload=0,1KiB,16KiB",
                format_size(self.payload_bytes)
            ),
            Sweep::Payload(sizes) => {
                for &s in sizes {
                    self.check_request_size("a SWEEP payload step", s)?;
                }
            }
            Sweep::Rate(_) => {}
        }
        Ok(Some(Plan::new(
            sweep.clone(),
            self.rate,
            self.payload_bytes,
            self.step,
            self.warmup,
            self.capacity_p99,
        )))
    }
}
