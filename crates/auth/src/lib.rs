//! `vireo-auth`: who may call the control plane, and what they may do.
//!
//! | module | what lives here |
//! |---|---|
//! | [`role`] | The roles (`viewer`, `operator`, `approver`, `proxy`, `ingest`, `admin`), the permissions an endpoint can need, and which role grants which. |
//! | [`policy`] | The endpoint table: every route of the API with the permission it needs, or public. The server checks each request against it; the README's table is this one; anything not in it is refused (fail closed). |
//! | [`token`] | API tokens: minted from the OS's CSPRNG, shown once, stored as SHA-256. |
//! | [`principal`] | The authenticated caller: a name (the actor on timelines and in evidence), its roles and how it proved itself. |
//! | [`oidc`] | OIDC ID tokens (JWT) from one configured issuer: discovery, the JWKS cached and re-fetched on an unknown key id, `iss`/`aud`/`exp` checked, claims mapped to roles. |
//! | [`remote`] | A trusted authenticating proxy's `X-Remote-User`/`X-Remote-Group`, believed only from configured source addresses. |
//!
//! Nothing here touches a database or a server: the store keeps token records, the server
//! runs the checks as a layer. The policy and the role table are plain data so they can be
//! tested, printed and compared with the README.

pub mod oidc;
pub mod policy;
pub mod principal;
pub mod remote;
pub mod role;
pub mod token;

pub use principal::{Principal, Via};
pub use role::{Permission, Role, Roles};
