#![allow(dead_code)] // each test binary uses a different part

pub mod azurite;
pub mod fake;
pub mod sim;
