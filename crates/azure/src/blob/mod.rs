//! Azure Blob Storage data plane (Stack Hub storage and Azure ML datastores): Shared Key and SAS
//! signing, paged listing as a stream, properties, streaming reads, single-request uploads.
//! `x-ms-version` is pinned to 2019-07-07.

mod client;
mod endpoint;
mod fingerprint;
mod list;
mod sign;

pub use client::{BlobApi, BlobAuth, BlobClient, BlobProperties, MAX_PUT_BLOB};
pub use endpoint::{BlobEndpoint, validate_container};
pub use fingerprint::{Fingerprint, Fingerprinter, fingerprint, first_with_md5};
pub use list::{BlobItem, BlobPage, normalize_etag, parse_http_date, parse_list_page};
pub use sign::{
    AccountKey, STORAGE_VERSION, SasPermissions, SasProtocol, SasResource, ServiceSas, rfc1123,
    shared_key_authorization, shared_key_string_to_sign,
};
