//! api-versions: Stack Hub API profiles and the public-Azure Azure ML version.

use std::{fmt, str::FromStr};

use crate::Error;

/// Azure ML control plane (public ARM), `stable/2025-12-01`.
pub const AZURE_ML_API_VERSION: &str = "2025-12-01";

/// Resource providers whose version a Stack Hub profile pins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    /// Microsoft.Compute virtualMachines (not disks/snapshots).
    Compute,
    /// Microsoft.Compute disks and snapshots, which the profiles pin separately.
    ComputeDisks,
    /// Microsoft.Network NICs, public IPs, NSGs, virtual networks.
    Network,
    /// Microsoft.Storage resource provider (not the blob data plane).
    Storage,
}

/// Azure Stack Hub API profile (`profile/*.json` in azure-rest-api-specs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ApiProfile {
    #[default]
    V2020_09_01Hybrid,
    V2019_03_01Hybrid,
}

impl ApiProfile {
    pub fn api_version(self, provider: Provider) -> &'static str {
        match (self, provider) {
            (ApiProfile::V2020_09_01Hybrid, Provider::Compute) => "2020-06-01",
            (ApiProfile::V2020_09_01Hybrid, Provider::ComputeDisks) => "2019-07-01",
            (ApiProfile::V2020_09_01Hybrid, Provider::Network) => "2018-11-01",
            (ApiProfile::V2020_09_01Hybrid, Provider::Storage) => "2019-06-01",
            (ApiProfile::V2019_03_01Hybrid, Provider::Compute | Provider::ComputeDisks) => {
                "2017-03-30"
            }
            (ApiProfile::V2019_03_01Hybrid, Provider::Network) => "2017-10-01",
            (ApiProfile::V2019_03_01Hybrid, Provider::Storage) => "2017-10-01",
        }
    }

    /// Blob data-plane `x-ms-version` the profile pins.
    pub fn storage_data_plane_version(self) -> &'static str {
        match self {
            ApiProfile::V2020_09_01Hybrid => "2019-07-07",
            ApiProfile::V2019_03_01Hybrid => "2017-04-17",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ApiProfile::V2020_09_01Hybrid => "2020-09-01-hybrid",
            ApiProfile::V2019_03_01Hybrid => "2019-03-01-hybrid",
        }
    }
}

impl fmt::Display for ApiProfile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ApiProfile {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "2020-09-01-hybrid" => Ok(ApiProfile::V2020_09_01Hybrid),
            "2019-03-01-hybrid" => Ok(ApiProfile::V2019_03_01Hybrid),
            other => Err(Error::InvalidInput(format!(
                "unknown API profile {other:?} (known: 2020-09-01-hybrid, 2019-03-01-hybrid)"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_profile_pins_stack_hub_versions() {
        let p = ApiProfile::default();
        assert_eq!(p.name(), "2020-09-01-hybrid");
        assert_eq!(p.api_version(Provider::Compute), "2020-06-01");
        assert_eq!(p.api_version(Provider::ComputeDisks), "2019-07-01");
        assert_eq!(p.api_version(Provider::Network), "2018-11-01");
        assert_eq!(p.api_version(Provider::Storage), "2019-06-01");
        assert_eq!(p.storage_data_plane_version(), "2019-07-07");
    }

    #[test]
    fn older_profile_and_parsing() {
        let p: ApiProfile = "2019-03-01-hybrid".parse().unwrap();
        assert_eq!(p.api_version(Provider::Compute), "2017-03-30");
        assert_eq!(p.api_version(Provider::ComputeDisks), "2017-03-30");
        assert_eq!(p.api_version(Provider::Network), "2017-10-01");
        assert!("2021-01-01-hybrid".parse::<ApiProfile>().is_err());
    }
}
