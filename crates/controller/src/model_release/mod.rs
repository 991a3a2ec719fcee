//! The ModelRelease controller: pure `desired`/`decide`; the I/O joins them in the runtime.

pub mod decide;
pub mod desired;

#[cfg(test)]
mod tests;
