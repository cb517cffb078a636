//! The one table of the mesh's kinds. Every per-kind list of the operator
//! is generated from it: the compiler's [`Kind`](crate::compile::Kind) and
//! its [`Input`](crate::compile::Input) fields, the loader of objects into
//! an input (golden tests, `plexus analyze`-style tools), and the
//! configuration controller's watches, object counts and status writers
//! (`mesh_config`). A new kind is one row here (and its conversion in
//! `compile/`).
//!
//! `for_each_kind!(m)` calls the macro `m` with the rows
//! `Variant => input_field: Type`.

#[macro_export]
macro_rules! for_each_kind {
    ($m:ident) => {
        $m! {
            VirtualService => virtual_services: plexus_crds::virtual_service::VirtualService,
            DestinationRule => destination_rules: plexus_crds::destination_rule::DestinationRule,
            Gateway => gateways: plexus_crds::gateway::Gateway,
            ServiceEntry => service_entries: plexus_crds::service_entry::ServiceEntry,
            TrafficSplit => traffic_splits: plexus_crds::traffic_split::TrafficSplit,
            ServiceProfile => service_profiles: plexus_crds::service_profile::ServiceProfile,
            PeerAuthentication => peer_authentications: plexus_crds::peer_authentication::PeerAuthentication,
            AuthorizationPolicy => authorization_policies: plexus_crds::authorization_policy::AuthorizationPolicy,
            RequestAuthentication => request_authentications: plexus_crds::request_authentication::RequestAuthentication,
            RateLimitPolicy => rate_limit_policies: plexus_crds::rate_limit_policy::RateLimitPolicy,
            Telemetry => telemetries: plexus_crds::telemetry::Telemetry,
        }
    };
}
