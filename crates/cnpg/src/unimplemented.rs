//! The one UNIMPLEMENTED answer for methods barrelman does not serve (yet).
//!
//! The message names the method so that it differs from tonic's answer for an unknown
//! path (UNIMPLEMENTED with an empty message): a caller can tell "routed, not served"
//! from "no such method".

use tonic::Status;

/// UNIMPLEMENTED for `service.method`, with why: `advertised` says whether the method
/// is in the service's GetCapabilities (then it is simply not written yet).
pub(crate) fn unimplemented(service: &str, method: &str, advertised: bool) -> Status {
    if advertised {
        Status::unimplemented(format!(
            "{service}.{method} is not implemented by barrelman yet"
        ))
    } else {
        Status::unimplemented(format!(
            "{service}.{method} is not implemented: the plugin does not advertise it"
        ))
    }
}
