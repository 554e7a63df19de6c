//! The stateful update rules on the device: ZO-SGD momentum and ZO-Adam moments of the lora
//! and prefix families' fp32 trained tensors, kept beside them in device memory and updated
//! by one kernel per tensor, bit for bit with the host's
//! [`crate::perturb::step_rule::Moments`]. Like the host's, they are not checkpointed:
//! replaying the seed log rebuilds them.

use super::buffer::{DBuf, View};
use super::device::CudaDevice;
use super::kernels::update::{moments_update, MomentViews, UpdateDirs};
use super::DType;
use crate::perturb::step_rule::{direction_coefs, RuleCoefs, StepRule};
use crate::perturb::{Dist, StepRecord};
use crate::{Error, Result};

/// One trained tensor of an update: its RNG tensor id, fp32 data and element count.
pub struct Trained<'a> {
    pub tensor_id: u32,
    pub data: View<'a>,
    pub n: usize,
}

struct TensorMoments {
    /// (role, tensor id), as the host keys them.
    key: (u32, u32),
    n: usize,
    m: DBuf,
    v: Option<DBuf>,
}

/// A family's optimizer state on the device: the moments of each trained tensor and the
/// update count.
#[derive(Default)]
pub struct DeviceMoments {
    updates: u64,
    tensors: Vec<TensorMoments>,
}

impl DeviceMoments {
    /// One update of `rule` on `tensors` (all drawn under `role`), each decayed first by
    /// `decay = Some(λ)`. Moments start at zero on a tensor's first update. Call
    /// [`DeviceMoments::finish_update`] once after all of a step's calls.
    #[allow(clippy::too_many_arguments)]
    pub fn apply(
        &mut self,
        dev: &CudaDevice,
        rule: StepRule,
        tensors: &[Trained<'_>],
        role: u32,
        dist: Dist,
        rec: &StepRecord,
        decay: Option<f32>,
    ) -> Result<()> {
        let k = RuleCoefs::new(rule, rec.lr, self.updates)?;
        let dirs = UpdateDirs::upload(dev, &direction_coefs(rec))?;
        for t in tensors {
            let key = (role, t.tensor_id);
            let at = match self.tensors.iter().position(|m| m.key == key) {
                Some(i) if self.tensors[i].n != t.n => {
                    return Err(Error::Data(format!(
                        "optimizer moments of tensor {} hold {} elements but the tensor has {}",
                        t.tensor_id, self.tensors[i].n, t.n
                    )))
                }
                Some(i) => i,
                None => {
                    let zeros = || DBuf::zeros(dev, DType::F32, t.n.max(1));
                    self.tensors.push(TensorMoments {
                        key,
                        n: t.n,
                        m: zeros()?,
                        v: if k.adam { Some(zeros()?) } else { None },
                    });
                    self.tensors.len() - 1
                }
            };
            let mom = &self.tensors[at];
            let views = MomentViews {
                m: mom.m.view(),
                v: mom.v.as_ref().map(DBuf::view),
            };
            moments_update(
                dev,
                t.data,
                views,
                t.n,
                t.tensor_id,
                role,
                dist,
                &k,
                &dirs,
                decay,
            )?;
        }
        // The dirs buffer must outlive the launches.
        dev.synchronize()
    }

    /// Ends a step's update: Adam's t advances.
    pub fn finish_update(&mut self) {
        self.updates += 1;
    }
}
