//! Security policy of workloads, as the server proxy enforces it:
//! AuthorizationPolicy ([`authorization`]), RequestAuthentication (JWT,
//! [`authentication`]) and local rate limits ([`rate_limit`]), and the
//! address blocks they name ([`cidr`]).

pub mod authentication;
pub mod authorization;
pub mod cidr;
pub mod rate_limit;

pub use authentication::*;
pub use authorization::*;
pub use cidr::Cidr;
pub use rate_limit::*;
